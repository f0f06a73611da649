"""Ingest, validate, crop/resize and split images into uint8 tensors plus a manifest."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
