"""Model families (base VLM architectures) that ChartMoE's connector plugs into."""
