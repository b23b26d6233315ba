"""Evaluation: ChartQA relaxed accuracy, sandboxed PoT, routing analysis."""
