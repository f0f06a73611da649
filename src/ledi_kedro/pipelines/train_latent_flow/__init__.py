"""Train the latent sampler: a flow from N(0, I) to the prior encoder's codes."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
