"""Command-line tools of xtuner-chartmoe (shipped as xtuner_chartmoe.tools;
run them as `chartmoe <command>` or `python tools/<tool>.py`)."""
