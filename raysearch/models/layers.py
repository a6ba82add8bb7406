"""Layers shared by the neural backbones."""

from __future__ import annotations

from torch import nn


def mlp_layers(sizes: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """RecBole's ``MLPLayers``: (dropout, linear, ReLU) for each consecutive pair of ``sizes``."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Dropout(dropout), nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)
