"""The YAML configuration groups (dataset, model, sampler, trainer, search, experiments), shipped as package data."""
