"""The knowledge-enhanced samplers' side information (``attribute``, ``social``): which ``Dataset.extras``
entry each needs, supplied by its pipeline (``raysearch.train.pipeline``: one training stage, as the default
pipeline) as a sampler parameter.

The side information is the dataset's (``dataset.item_attributes``, ``dataset.social_network``, read and
validated by ``raysearch.data.side_info`` into ``Dataset.extras``); a knowledge sampler asked for on a
dataset without it stops before anything is written, with one ``ConfigError`` naming the dataset key.
"""

from __future__ import annotations

from typing import Any

from raysearch.config import RunConfig
from raysearch.data.dataset import Dataset
from raysearch.errors import ConfigError

# sampler -> (the Dataset.extras entry and sampler parameter, what it is, the files that provide it)
SIDE_INFO = {
    "attribute": ("item_attributes", "item attributes",
                  "a u.item or item<TAB>attr[|attr...] file, e.g. dataset.item_attributes=u.item for ml-100k"),
    "social": ("social_network", "a social network",
               "a user<TAB>friend file, e.g. dataset.social_network=trustnetwork.txt for lastfm"),
}


def side_params(sampler: str, dataset: Dataset) -> dict[str, Any]:
    """The sampler parameter holding ``dataset``'s side information for ``sampler``; ``ConfigError`` naming
    the dataset key when the dataset has none."""
    key, what, files = SIDE_INFO[sampler]
    if key not in dataset.extras:
        raise ConfigError(f"dataset.{key}: sampler {sampler!r} draws negatives from {what}, and dataset "
                          f"{dataset.name!r} has none (set dataset.{key} to {files})")
    return {key: dataset.extras[key]}


def check_knowledge(cfg: RunConfig, dataset: Dataset, params: Any) -> None:
    """The pipelines' check (before the run directory is written): the dataset has the side information."""
    side_params(cfg.sampler.name, dataset)
