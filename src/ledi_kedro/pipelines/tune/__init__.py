"""Optuna search over LeDiFlow's settings (opt-in: not part of the default pipeline)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
