"""Teacher assessment: the scorers (each module registers into `registry.SCORERS`), cost builders, probes.

Importing the package imports every scorer module, so the registry is full wherever any part of it is used."""
from . import feature_scores, lead, published, rankers, scores  # noqa: F401  (registration)
from .registry import SCORERS

__all__ = ["SCORERS"]
