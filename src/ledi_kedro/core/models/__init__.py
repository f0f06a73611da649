"""Networks: the DiT flow backbone, the auxiliary prior, the latent sampler and a KL autoencoder."""

from .autoencoder import AutoencoderConfig, KLAutoencoder
from .classifier import ClassifierConfig, DomainClassifier
from .dit import DIT_SIZES, DiT, DiTConfig
from .latent_flow import LatentFlow, LatentFlowConfig
from .prior import PriorConfig, PriorModel, reparameterize

__all__ = [
    "AutoencoderConfig", "KLAutoencoder", "ClassifierConfig", "DomainClassifier", "DIT_SIZES", "DiT", "DiTConfig",
    "LatentFlow", "LatentFlowConfig", "PriorConfig", "PriorModel", "reparameterize",
]
