"""A pretrained diffusers ``AutoencoderKL`` (e.g. a Stable Diffusion VAE) from a local folder.

It offers the same ``encode`` / ``decode`` / ``encode_scaled`` / ``decode_scaled`` interface as
:class:`~ledi_kedro.core.models.autoencoder.KLAutoencoder`. Grey images are repeated to the
VAE's input channels on the way in and averaged back on the way out. Nothing is downloaded:
the folder must hold ``config.json`` and the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .autoencoder import ScaledLatents


class PretrainedAutoencoderError(RuntimeError):
    pass


class DiffusersAutoencoder(ScaledLatents, nn.Module):
    def __init__(self, path: str | Path, image_channels: int, scale: float | None = None):
        super().__init__()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise PretrainedAutoencoderError(
                f"{path}: no diffusers AutoencoderKL here (config.json is missing). Save one with "
                "`AutoencoderKL.save_pretrained(folder)` or download it on a machine with hub access.")
        try:
            from diffusers import AutoencoderKL
        except ImportError as exc:
            raise PretrainedAutoencoderError("the pretrained autoencoder needs `pip install diffusers`") from exc
        try:
            self.vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise PretrainedAutoencoderError(f"{path}: cannot load AutoencoderKL ({exc})") from exc
        cfg = self.vae.config
        self.image_channels = image_channels
        self.vae_channels = int(cfg.in_channels)
        self.latent_channels = int(cfg.latent_channels)
        self.downsampling = 2 ** (len(cfg.block_out_channels) - 1)
        self.register_buffer("scale", torch.tensor(float(scale if scale is not None else cfg.scaling_factor)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] != self.vae_channels:
            x = x.expand(-1, self.vae_channels, -1, -1) if x.shape[1] == 1 else x
        dist = self.vae.encode(x).latent_dist
        return dist.mean, dist.logvar

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        out = self.vae.decode(latent).sample
        if self.image_channels == 1 and out.shape[1] != 1:
            out = out.mean(dim=1, keepdim=True)
        return out
