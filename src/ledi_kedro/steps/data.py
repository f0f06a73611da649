"""The images of a data source as the chain's train, validation and test tensors: decoded and validated (the
``on_bad_image`` policy), split (the source's split, else a seeded draw; validation carved out of train, stratified
by class) and put in a seeded random row order per split, so that a prefix of a split is still a sample of it."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Sequence

import numpy as np

from ledi_kedro.core.data.ingest import IngestResult, ingest
from ledi_kedro.core.data.splits import assign_splits, carve_validation, validation_count
from ledi_kedro.params import PreprocessParams, SourceParams

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# Each split's row-order stream (test keeps the stream it had before validation existed).
_ORDER_STREAM = {"train": 0, "test": 1, "validation": 2}


class BadImagesError(ValueError):
    """Raised under ``on_bad_image: fail``; lists every rejected file and why."""


class NoUsableImagesError(ValueError):
    """The source yielded no image that passed validation."""


def ingest_source(source: SourceParams, p: PreprocessParams) -> IngestResult:
    """Decode and validate every image of ``source``; apply the ``on_bad_image`` policy."""
    result = ingest(source.kind, source.path, p.image, num_workers=p.num_workers)
    n_ok, n_bad = len(result.records), len(result.rejected)
    rate = (n_ok + n_bad) / result.seconds if result.seconds > 0 else float("inf")
    log.info("Ingested %d images from %s in %.1f s (%.0f img/s); %d rejected",
             n_ok, source.path, result.seconds, rate, n_bad)
    if n_bad and p.on_bad_image == "fail":
        lines = "\n".join(f"  {r.source}: {r.reason} ({r.detail})" for r in result.rejected)
        raise BadImagesError(
            f"{n_bad} bad image(s) in {source.path} and preprocess.on_bad_image is 'fail':\n{lines}"
        )
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(Counter(r.reason for r in result.rejected).items()))
    if n_ok == 0:
        examples = "; ".join(f"{r.source}: {r.detail}" for r in result.rejected[:3])
        raise NoUsableImagesError(
            f"No usable image in {source.path} ({n_bad} file(s) rejected: {reasons or 'no files found'}"
            f"{'; e.g. ' + examples if examples else ''}). Check data_source.path, data_source.kind "
            "and preprocess.image.min_size."
        )
    if n_bad:
        log.warning("Skipped %d bad image(s) (%s); the preprocess report lists each", n_bad, reasons)
    return result


def shuffled_split_index(splits: Sequence[str], seed: int) -> np.ndarray:
    """Each image's row in its split's tensor: a seeded random order per split, so that sources
    sorted by class or file name never give class-sorted tensors (a prefix is then still a sample)."""
    labels = np.asarray(splits, dtype=object)
    out = np.zeros(len(splits), dtype=np.int64)
    for split in SPLITS:
        members = np.flatnonzero(labels == split)
        out[members] = np.random.default_rng([seed, _ORDER_STREAM[split]]).permutation(len(members))
    return out


def split_assignment(ingested: IngestResult, p: PreprocessParams) -> tuple[list[str], np.ndarray]:
    """Each image's split (the source's, else a seeded draw of ``test_fraction``; then ``validation_size``
    training images, at most ``max_validation_fraction`` of them, moved to validation, stratified by class) and
    its row in that split's tensor (a seeded shuffle), in source order."""
    splits = assign_splits([r.split for r in ingested.records], p.test_fraction, p.split_seed)
    n_train = sum(s == "train" for s in splits)
    n_validation = validation_count(n_train, p.validation_size, p.max_validation_fraction)
    if n_validation < p.validation_size:
        log.warning("preprocess.validation_size=%d: the validation split holds %d images, "
                    "max_validation_fraction=%g of the %d training images", p.validation_size, n_validation,
                    p.max_validation_fraction, n_train)
    splits = carve_validation(splits, image_labels(ingested), n_validation, p.split_seed)
    return splits, shuffled_split_index(splits, p.split_seed)


def image_labels(ingested: IngestResult) -> np.ndarray:
    """Each image's class index in ``ingested.class_names`` (int64; -1 where it has none), in source order."""
    label_of = {name: i for i, name in enumerate(ingested.class_names)}
    return np.array([label_of.get(r.class_name, -1) if r.class_name is not None else -1 for r in ingested.records],
                    dtype=np.int64)


def split_tensors(ingested: IngestResult, splits: Sequence[str],
                  split_index: np.ndarray) -> tuple[dict, dict, dict]:
    """uint8 images (N, C, H, W) and int64 labels (-1: none) of the train, the validation and the test split,
    each in its ``split_index`` order."""
    labels, which = image_labels(ingested), np.asarray(splits, dtype=object)
    out = []
    for split in SPLITS:
        members = np.flatnonzero(which == split)
        idx = members[np.argsort(split_index[members], kind="stable")]
        out.append({"images": np.ascontiguousarray(ingested.images[idx]), "labels": labels[idx],
                    "__metadata__": {"class_names": ingested.class_names, "split": split}})
    return out[0], out[1], out[2]
