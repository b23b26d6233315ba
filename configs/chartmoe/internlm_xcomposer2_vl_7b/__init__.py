"""Stage configs of xtuner-chartmoe (shipped as xtuner_chartmoe.configs)."""
