"""Thin Kedro nodes over :mod:`ledi_kedro.core.data`."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import polars as pl

from ledi_kedro.core.config import to_dict
from ledi_kedro.core.data.ingest import IngestResult, ingest
from ledi_kedro.core.data.splits import assign_splits
from ledi_kedro.params import PreprocessParams, SourceParams, parse

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


class BadImagesError(ValueError):
    """Raised under ``on_bad_image: fail``; lists every rejected file and why."""


class NoUsableImagesError(ValueError):
    """The source yielded no image that passed validation."""


def parse_params(raw: dict[str, Any]) -> PreprocessParams:
    return parse("preprocess", raw)


def parse_source(raw: dict[str, Any]) -> SourceParams:
    return parse("data_source", raw)


def ingest_images(data_source: dict[str, Any], params: dict[str, Any]) -> IngestResult:
    """Decode and validate every image of ``data_source``; apply the ``on_bad_image`` policy."""
    p, source = parse_params(params), parse_source(data_source)
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


def build_manifest(ingested: IngestResult, params: dict[str, Any]) -> pl.DataFrame:
    """One row per accepted image (in source order): id, source, split, its row in the split's tensor
    (``split_index``, a seeded shuffle), label, original size and mode, content hash."""
    p = parse_params(params)
    records = ingested.records
    splits = assign_splits([r.split for r in records], p.test_fraction, p.split_seed)
    label_of = {name: i for i, name in enumerate(ingested.class_names)}
    split_index = shuffled_split_index(splits, p.split_seed)
    return pl.DataFrame(
        {
            "id": np.arange(len(records), dtype=np.int64),
            "split": splits,
            "split_index": split_index,
            "source": [r.source for r in records],
            "label": [label_of.get(r.class_name) if r.class_name is not None else None for r in records],
            "class_name": [r.class_name for r in records],
            "width": [r.width for r in records],
            "height": [r.height for r in records],
            "mode": [r.mode for r in records],
            "sha256": [r.sha256 for r in records],
        },
        schema_overrides={"label": pl.Int32, "split_index": pl.Int64, "class_name": pl.String},
    )


def shuffled_split_index(splits: list[str], seed: int) -> np.ndarray:
    """Each image's row in its split's tensor: a seeded random order per split, so that sources
    sorted by class or file name never give class-sorted tensors (a prefix is then still a sample)."""
    labels = np.asarray(splits, dtype=object)
    out = np.zeros(len(splits), dtype=np.int64)
    for i, split in enumerate(SPLITS):
        members = np.flatnonzero(labels == split)
        out[members] = np.random.default_rng([seed, i]).permutation(len(members))
    return out


def build_split_tensors(ingested: IngestResult, manifest: pl.DataFrame) -> tuple[dict, dict]:
    """uint8 images (N, C, H, W) and int64 labels (-1: none) for the train and the test split, each
    in the manifest's ``split_index`` order (a seeded shuffle)."""
    out = []
    for split in SPLITS:
        rows = manifest.filter(pl.col("split") == split).sort("split_index")
        idx = rows["id"].to_numpy()
        out.append({
            "images": np.ascontiguousarray(ingested.images[idx]),
            "labels": rows["label"].fill_null(-1).to_numpy().astype(np.int64),
            "__metadata__": {"class_names": ingested.class_names, "split": split},
        })
    return out[0], out[1]


def build_report(ingested: IngestResult, manifest: pl.DataFrame,
                 data_source: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report (counts and every rejected file with its reason) and its flat numeric part,
    which DVC reads as metrics."""
    n_seen = len(ingested.records) + len(ingested.rejected)
    counts = manifest.group_by("split").len()
    per_split = dict(zip(counts["split"].to_list(), counts["len"].to_list(), strict=True))
    n_dup = int(manifest.height - manifest["sha256"].n_unique())
    if n_dup:
        log.warning("%d image(s) repeat the content of another image (same sha256)", n_dup)
    by_reason = dict(sorted(Counter(r.reason for r in ingested.rejected).items()))
    counts = {
        "n_images": manifest.height,
        "n_train": int(per_split.get("train", 0)),
        "n_test": int(per_split.get("test", 0)),
        "n_classes": len(ingested.class_names),
        "n_rejected": len(ingested.rejected),
        "n_duplicate_content": n_dup,
        "ingest_seconds": round(ingested.seconds, 3),
        "images_per_second": round(n_seen / ingested.seconds, 1) if ingested.seconds > 0 else None,
    }
    report = counts | {
        "rejected_by_reason": by_reason,
        "source": to_dict(parse_source(data_source)),
        "rejected": [{"source": r.source, "reason": r.reason, "detail": r.detail} for r in ingested.rejected],
    }
    return report, counts | {f"n_rejected_{reason}": n for reason, n in by_reason.items()}
