"""Model families: the base VLMs that ChartMoE's connector plugs into."""
