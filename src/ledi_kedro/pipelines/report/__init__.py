"""One self-contained report (Markdown and HTML, images embedded) of a run."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
