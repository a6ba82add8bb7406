"""Backbones: one file each, one contract (``raysearch.models.base.Recommender``)."""

from raysearch.models import dmf, gmf, lightgcl, lightgcn, mf, neumf, ngcf  # noqa: F401  (register the backbones)
from raysearch.models.base import MODELS, Recommender, Representations, make_model, make_scorer
from raysearch.models.embeddings import DenseEmbeddings, EmbeddingTables

__all__ = ["MODELS", "DenseEmbeddings", "EmbeddingTables", "Recommender", "Representations", "make_model",
           "make_scorer"]
