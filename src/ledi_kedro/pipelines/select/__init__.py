"""``select``: the evaluation's scoring on the validation split, for every decision about what ships."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
