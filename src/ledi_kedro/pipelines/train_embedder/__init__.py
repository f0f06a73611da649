"""Train (or check) the quality judge once per data set: the embedding that every quality figure uses."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
