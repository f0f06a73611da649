"""Decode, validate and transform single images (PIL + numpy only, so worker processes start fast).

Every rejection carries a short machine-readable ``reason`` code and a human ``detail``.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

# Reason codes used in reports; kept stable because users grep reports for them.
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
CORRUPT = "truncated_or_corrupt"
UNSUPPORTED_MODE = "unsupported_mode"
TOO_SMALL = "too_small"
MULTI_FRAME = "animated_or_multi_frame"

# Modes we know how to bring to L or RGB; anything else (e.g. "F" float images) is rejected.
SUPPORTED_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB",
     "HSV", "I", "I;16", "I;16B", "I;16L", "I;16N"}
)


@dataclass(frozen=True)
class ImageSpec:
    """Target format of the stored tensors.

    Attributes:
        resolution: output height and width in pixels.
        channels: 1 (grey) or 3 (RGB).
        min_size: images whose shorter side is below this are rejected.
        small_images: what to do with an image whose crop is smaller than ``resolution``:
            ``pad`` (centre it on ``pad_value``) or ``resize`` (upsample).
        pad_value: grey level (0-255) used for padding.
    """

    resolution: int = 32
    channels: int = 1
    min_size: int = 8
    small_images: Literal["pad", "resize"] = "pad"
    pad_value: int = 0

    def __post_init__(self) -> None:
        if self.resolution <= 0:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.min_size < 1:
            raise ValueError(f"min_size must be at least 1, got {self.min_size}")
        if self.small_images not in ("pad", "resize"):
            raise ValueError(f"small_images must be 'pad' or 'resize', got {self.small_images!r}")
        if not 0 <= self.pad_value <= 255:
            raise ValueError(f"pad_value must be in 0..255, got {self.pad_value}")


@dataclass(frozen=True)
class DecodedImage:
    """A valid image: ``pixels`` is uint8 of shape (C, H, W) at the spec's resolution."""

    pixels: np.ndarray
    width: int
    height: int
    mode: str
    sha256: str


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer greyscale -> 8-bit L by scaling the full integer range."""
    arr = np.asarray(img)
    if arr.dtype == np.uint16 or img.mode.startswith("I;16"):
        scaled = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    else:  # mode "I": int32; PNG 16-bit greyscale often arrives like this
        hi = 65535 if arr.max(initial=0) > 255 else 255
        scaled = np.clip(arr.astype(np.float64) * (255.0 / hi), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled)


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert any supported mode to L (1 channel) or RGB (3); transparency is composited on white."""
    mode = img.mode
    if mode.startswith("I"):
        img = _to_8bit(img)
    elif mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("La", "RGBa"):
        img = img.convert(mode.replace("a", "A"))
    if img.mode in ("LA", "RGBA"):
        base = img.mode[:-1]
        background = Image.new(base, img.size, (255,) * len(base))  # a bare 255 would be red in RGB
        background.paste(img, mask=img.getchannel("A"))
        img = background
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def fit_to_resolution(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Centre-crop to a square, then antialiased resize (or pad) to ``spec.resolution``.

    Returns uint8 (C, H, W).
    """
    w, h = img.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    res = spec.resolution
    if side > res or (side < res and spec.small_images == "resize"):
        # PIL's resize filters are antialiased when downsampling (the support scales with the factor).
        img = img.resize((res, res), resample=Image.Resampling.BICUBIC, reducing_gap=None)
        arr = np.asarray(img)
    elif side < res:
        arr = pad_to(np.asarray(img), res, spec.pad_value)
    else:
        arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def pad_to(arr: np.ndarray, res: int, value: int) -> np.ndarray:
    """Centre ``arr`` (H, W[, C]) on a ``res`` x ``res`` canvas filled with ``value``."""
    h, w = arr.shape[:2]
    top, left = (res - h) // 2, (res - w) // 2
    pad = [(top, res - h - top), (left, res - w - left)] + [(0, 0)] * (arr.ndim - 2)
    return np.pad(arr, pad, mode="constant", constant_values=value)


def decode_image(data: bytes, spec: ImageSpec) -> DecodedImage | Rejection:
    """Decode encoded image bytes, validate them and bring them to ``spec``."""
    if len(data) == 0:
        return Rejection(EMPTY_FILE, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return Rejection(NOT_AN_IMAGE, "content is not a recognised image format")
    except Exception as exc:  # PIL raises many types for garbage headers
        return Rejection(NOT_AN_IMAGE, f"cannot open as an image: {exc}")
    fmt, mode, (width, height) = img.format, img.mode, img.size
    if getattr(img, "n_frames", 1) > 1:
        return Rejection(MULTI_FRAME, f"{fmt} with {img.n_frames} frames; only still images are used")
    try:
        img.load()  # decodes the pixel data; truncated or corrupt streams fail here
    except Exception as exc:
        return Rejection(CORRUPT, f"{fmt} data cannot be decoded: {exc}")
    if mode not in SUPPORTED_MODES:
        return Rejection(UNSUPPORTED_MODE, f"image mode {mode!r} is not supported")
    if min(width, height) < spec.min_size:
        return Rejection(TOO_SMALL, f"{width}x{height} is smaller than min_size={spec.min_size}")
    try:
        pixels = fit_to_resolution(to_channels(img, spec.channels), spec)
    except Exception as exc:
        return Rejection(CORRUPT, f"{fmt} ({mode}) cannot be converted: {exc}")
    return DecodedImage(pixels, width, height, mode, content_hash(data))
