"""Quality vs NFE for LeDiFlow and the Gaussian baseline, matched-quality speedup, straightness,
sanity rows, sample grids and the applications (interpolation, inpainting)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
