"""Read an image source (IDX files, an image folder or a ``.tar.gz`` of one) into uint8 tensors.

Decoding and resizing run in worker processes. Workers are started with ``spawn`` (safe next to
threads that torch or Kedro may have started) and import only numpy and PIL.
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
import zlib
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Literal, Sequence

import numpy as np
from PIL import Image

from ..threads import thread_budget
from .idx import IdxFormatError, read_idx
from .images import (
    TOO_SMALL, DecodedImage, ImageSpec, Rejection, content_hash, decode_image, fit_to_resolution, pad_to, to_channels,
)

log = logging.getLogger(__name__)

# Validation folders count as held-out data: the project keeps two splits, train and test.
SPLIT_DIRS = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
SourceKind = Literal["fashion_mnist", "image_folder"]


class SourceError(ValueError):
    """The data source cannot be read; the message names the path and how to fix it."""


@dataclass(frozen=True)
class ImageRecord:
    """One accepted image; ``pixels`` is its row in :attr:`IngestResult.images`."""

    source: str
    split: str | None
    class_name: str | None
    width: int
    height: int
    mode: str
    sha256: str


@dataclass(frozen=True)
class RejectedImage:
    source: str
    reason: str
    detail: str


@dataclass
class IngestResult:
    """Accepted images (uint8, (N, C, H, W)) with one record each, and every rejected file."""

    images: np.ndarray
    records: list[ImageRecord]
    rejected: list[RejectedImage]
    class_names: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Item:
    source: str
    split: str | None
    class_name: str | None


def layout_of(parts: Sequence[str], split_layout: bool) -> tuple[str | None, str | None]:
    """(split, class) of a file from its path parts below the root.

    With a split layout the first folder is the split; the next folder, if the file is not
    directly inside it, is the class.
    """
    parts = list(parts)
    split = None
    if split_layout and len(parts) > 1 and parts[0].lower() in SPLIT_DIRS:
        split = SPLIT_DIRS[parts.pop(0).lower()]
    class_name = parts[0] if len(parts) > 1 else None
    return split, class_name


def _has_split_dirs(top_level_dirs: Iterable[str]) -> bool:
    return any(name.lower() in SPLIT_DIRS for name in top_level_dirs)


def _visible(parts: Sequence[str]) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


# ---------------------------------------------------------------- workers (module level: picklable)

def _decode_files(root: str, sources: list[str], spec: ImageSpec) -> list[DecodedImage | Rejection]:
    out: list[DecodedImage | Rejection] = []
    for rel in sources:
        try:
            data = (Path(root) / rel).read_bytes()
        except OSError as exc:
            out.append(Rejection("unreadable", f"cannot read file: {exc}"))
            continue
        out.append(decode_image(data, spec))
    return out


def _decode_blobs(blobs: list[bytes], spec: ImageSpec) -> list[DecodedImage | Rejection]:
    return [decode_image(b, spec) for b in blobs]


# ---------------------------------------------------------------- sources

def _folder_items(root: Path) -> list[_Item]:
    top_dirs = [p.name for p in root.iterdir() if p.is_dir()]
    split_layout = _has_split_dirs(top_dirs)
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = PurePosixPath(Path(dirpath, name).relative_to(root).as_posix())
            if not _visible(rel.parts):
                continue
            split, cls = layout_of(rel.parts, split_layout)
            items.append(_Item(str(rel), split, cls))
    return items


def _iter_archive(path: Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    """Stream (member name, bytes or None, error) from a tar archive without unpacking it to disk."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or not _visible(PurePosixPath(name).parts):
                    continue
                try:
                    fh = tar.extractfile(member)
                    yield name, (fh.read() if fh is not None else b""), None
                except (OSError, tarfile.TarError, EOFError) as exc:
                    yield name, None, f"archive member cannot be read: {exc}"
                    return
    except (OSError, tarfile.TarError, EOFError, TypeError, ValueError, zlib.error) as exc:
        # tarfile's stream reader raises TypeError/ValueError on some garbage headers
        raise SourceError(f"{path}: cannot read archive ({type(exc).__name__}: {exc})") from exc


def _archive_layout(names: list[str]) -> tuple[bool, int]:
    """(split layout?, leading folders to strip) for archive member names.

    A single wrapping folder (``cifar10/train/...``) is stripped when the split folders sit in it.
    """
    parts = [PurePosixPath(n).parts for n in names]
    tops = {p[0] for p in parts if len(p) > 1}
    if _has_split_dirs(tops):
        return True, 0
    if len(tops) == 1 and all(len(p) > 1 for p in parts):
        seconds = {p[1] for p in parts if len(p) > 2}
        if _has_split_dirs(seconds):
            return True, 1
    return False, 0


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def _run_chunks(
    submit: Callable[..., list[DecodedImage | Rejection]],
    chunks: Iterable[tuple],
    num_workers: int,
    progress: Callable[[int], None],
) -> list[DecodedImage | Rejection]:
    """Run ``submit(*chunk)`` over chunks, in order, on a process pool (or inline for 1 worker)."""
    results: list[DecodedImage | Rejection] = []
    if num_workers <= 1:
        for chunk in chunks:
            results.extend(submit(*chunk))
            progress(len(results))
        return results
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future] = deque()
        for chunk in chunks:
            pending.append(pool.submit(submit, *chunk))
            while len(pending) >= 4 * num_workers:  # bound memory held by in-flight chunks
                results.extend(pending.popleft().result())
                progress(len(results))
        while pending:
            results.extend(pending.popleft().result())
            progress(len(results))
    return results


class _Progress:
    def __init__(self, label: str, every_s: float = 5.0):
        self.label, self.every_s = label, every_s
        self.start = self.last = time.perf_counter()

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            log.info("%s: %d images decoded (%.0f img/s)", self.label, done, done / (now - self.start))


def _collect(items: list[_Item], results: list[DecodedImage | Rejection], spec: ImageSpec,
             extra_rejected: list[RejectedImage], seconds: float) -> IngestResult:
    records, pixels, rejected = [], [], list(extra_rejected)
    for item, res in zip(items, results, strict=True):
        if isinstance(res, Rejection):
            rejected.append(RejectedImage(item.source, res.reason, res.detail))
        else:
            pixels.append(res.pixels)
            records.append(ImageRecord(item.source, item.split, item.class_name,
                                       res.width, res.height, res.mode, res.sha256))
    res_shape = (0, spec.channels, spec.resolution, spec.resolution)
    images = np.stack(pixels) if pixels else np.zeros(res_shape, dtype=np.uint8)
    class_names = sorted({r.class_name for r in records if r.class_name is not None})
    return IngestResult(images, records, rejected, class_names, seconds)


def ingest_image_folder(path: str | Path, spec: ImageSpec, num_workers: int = 0,
                        chunk_size: int = 256) -> IngestResult:
    """Decode every file under a folder, or every member of a tar archive, in parallel."""
    path = Path(path)
    workers = num_workers or thread_budget()  # 0: the process's CPU budget (core/threads.py)
    progress = _Progress(f"ingest {path.name}")
    start = time.perf_counter()
    if is_archive(path):
        items, blobs, unreadable = [], [], []
        for name, data, error in _iter_archive(path):
            if error is not None:
                unreadable.append(RejectedImage(name, "unreadable", error))
                continue
            items.append(name)
            blobs.append(data)
        split_layout, strip = _archive_layout(items)
        keyed = []
        for name in items:
            parts = PurePosixPath(name).parts[strip:]
            keyed.append(_Item(name, *layout_of(parts, split_layout)))
        chunks = ((blobs[i:i + chunk_size], spec) for i in range(0, len(blobs), chunk_size))
        results = _run_chunks(_decode_blobs, chunks, workers, progress)
        return _collect(keyed, results, spec, unreadable, time.perf_counter() - start)
    if not path.is_dir():
        raise SourceError(
            f"image_folder source {path} does not exist or is not a folder or .tar archive; "
            "set data_source.path to a folder of images or a .tar.gz of one"
        )
    items = _folder_items(path)
    sources = [it.source for it in items]
    chunks = ((str(path), sources[i:i + chunk_size], spec) for i in range(0, len(sources), chunk_size))
    results = _run_chunks(_decode_files, chunks, workers, progress)
    return _collect(items, results, spec, [], time.perf_counter() - start)


def _decode_array_batch(images: np.ndarray, spec: ImageSpec) -> list[DecodedImage | Rejection]:
    """Validate and transform greyscale uint8 images (N, H, W) that need no decoding."""
    n, h, w = images.shape
    if min(h, w) < spec.min_size:
        return [Rejection(TOO_SMALL, f"{w}x{h} is smaller than min_size={spec.min_size}")] * n
    if h == w and (h == spec.resolution or (h < spec.resolution and spec.small_images == "pad")):
        # Square and no resampling needed: pad the whole batch at once.
        batch = pad_to(images.transpose(1, 2, 0), spec.resolution, spec.pad_value).transpose(2, 0, 1)
        batch = np.repeat(batch[:, None], spec.channels, axis=1)
    else:
        batch = np.stack([fit_to_resolution(to_channels(Image.fromarray(im), spec.channels), spec)
                          for im in images])
    return [DecodedImage(batch[i], w, h, "L", content_hash(images[i].tobytes())) for i in range(n)]


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise SourceError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install the data set with "
        "`sudo apt-get install dataset-fashion-mnist` (files go to "
        f"{DEFAULT_FASHION_MNIST_DIR}), or set data_source.path to a folder holding the four "
        "IDX files, or use data_source.kind: image_folder for your own images."
    )


def ingest_fashion_mnist(path: str | Path, spec: ImageSpec) -> IngestResult:
    """Read the four Fashion-MNIST IDX files; the file names give the train/test split."""
    root = Path(path)
    if not root.is_dir():
        raise SourceError(
            f"Fashion-MNIST folder {root} does not exist. Install the data set with "
            "`sudo apt-get install dataset-fashion-mnist`, or set data_source.path."
        )
    start = time.perf_counter()
    items: list[_Item] = []
    results: list[DecodedImage | Rejection] = []
    for split, (img_stem, lbl_stem) in FASHION_MNIST_FILES.items():
        img_path, lbl_path = _find_idx(root, img_stem), _find_idx(root, lbl_stem)
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IdxFormatError(f"{img_path}: expected uint8 images of shape (N, H, W), "
                                 f"got {images.dtype} {images.shape}")
        if labels.shape != (images.shape[0],):
            raise IdxFormatError(f"{lbl_path}: {labels.shape[0] if labels.ndim else 0} labels for "
                                 f"{images.shape[0]} images in {img_path.name}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
            raise IdxFormatError(f"{lbl_path}: labels outside 0..{len(FASHION_MNIST_CLASSES) - 1}")
        items.extend(_Item(f"{img_path.name}#{i}", split, FASHION_MNIST_CLASSES[label])
                     for i, label in enumerate(labels))
        results.extend(_decode_array_batch(images, spec))
    result = _collect(items, results, spec, [], time.perf_counter() - start)
    result.class_names = list(FASHION_MNIST_CLASSES)  # keep the official label order
    return result


def ingest(kind: SourceKind, path: str | Path, spec: ImageSpec, num_workers: int = 0) -> IngestResult:
    """Read any supported source into an :class:`IngestResult`."""
    if kind == "fashion_mnist":
        return ingest_fashion_mnist(path, spec)
    if kind == "image_folder":
        return ingest_image_folder(path, spec, num_workers=num_workers)
    raise SourceError(f"unknown data_source.kind {kind!r}; use 'fashion_mnist' or 'image_folder'")
