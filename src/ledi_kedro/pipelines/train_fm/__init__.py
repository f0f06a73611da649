"""Train the image flow model twice: from the learned prior (`ledi`) and from N(0, I) (`gaussian`)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
