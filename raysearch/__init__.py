"""raysearch: a Ray-based hyperparameter and scale study of negative sampling for implicit-feedback recommendation."""

__version__ = "0.1.0"
