"""The Shapley core's short import path (``from mdap.evals.shapley import shapley_values``): everything here is
:mod:`mdap.evals.attribution.shapley`, where the core lives."""

from __future__ import annotations

from .attribution.shapley import (
    MAX_EXACT_PLAYERS,
    SampledShapley,
    ShapleyEstimate,
    ValueFn,
    banzhaf_values,
    interaction_indices,
    sampled_shapley_values,
    shapley_values,
)

__all__ = [
    "MAX_EXACT_PLAYERS",
    "SampledShapley",
    "ShapleyEstimate",
    "ValueFn",
    "banzhaf_values",
    "interaction_indices",
    "sampled_shapley_values",
    "shapley_values",
]
