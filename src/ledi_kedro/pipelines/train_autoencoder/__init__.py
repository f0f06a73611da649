"""Train the KL autoencoder (or use a pretrained one) and cache every split's latents."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
