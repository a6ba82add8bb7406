"""The data layer: readers (one per format), preprocessing, splits, the synthetic generator, the cached
loader and dataset statistics. ``load_dataset("gowalla")`` is the usual entry point."""

from raysearch.data.dataset import Dataset
from raysearch.data.describe import describe, describe_path, format_description, list_datasets
from raysearch.data.interactions import Interactions
from raysearch.data.loader import data_dirs, dataset_config, load_dataset
from raysearch.data.readers import READERS, RawData, Reader
from raysearch.data.splits import SPLITS, sample_negatives
from raysearch.data.synthetic import (  # registers the format
    SyntheticTruth,
    generate,
    synthetic_config,
    synthetic_dataset,
)
from raysearch.data.table import InteractionTable

__all__ = [
    "READERS",
    "SPLITS",
    "Dataset",
    "InteractionTable",
    "Interactions",
    "RawData",
    "Reader",
    "SyntheticTruth",
    "data_dirs",
    "dataset_config",
    "describe",
    "describe_path",
    "format_description",
    "generate",
    "list_datasets",
    "load_dataset",
    "sample_negatives",
    "synthetic_config",
    "synthetic_dataset",
]
