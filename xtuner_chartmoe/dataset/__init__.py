"""Data: chart synthesis, validated LLaVA dataset, map-fns."""
from .llava_dataset import ChartLLaVADataset, load_records, record_problem

__all__ = ['ChartLLaVADataset', 'load_records', 'record_problem']
