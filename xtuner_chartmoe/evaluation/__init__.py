"""Evaluation: the chart benchmarks on one seam (:mod:`.benchmarks`),
ChartQA's relaxed accuracy, ChartMoE's reference scorer, sandboxed PoT,
routing analysis."""
