"""Train the auxiliary prior model (encoder + per-pixel Gaussian decoder) that defines P_L."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
