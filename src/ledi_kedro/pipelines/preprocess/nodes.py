"""Thin Kedro nodes over :mod:`ledi_kedro.steps.data`, plus the manifest and the report."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import polars as pl

from ledi_kedro.core.config import to_dict
from ledi_kedro.core.data.ingest import IngestResult
from ledi_kedro.params import PreprocessParams, SourceParams, parse
from ledi_kedro.steps.data import (  # noqa: F401 - the errors are this pipeline's, re-exported for its users
    BadImagesError, NoUsableImagesError, image_labels, ingest_source, split_assignment, split_tensors,
)

log = logging.getLogger(__name__)


def parse_params(raw: dict[str, Any]) -> PreprocessParams:
    return parse("preprocess", raw)


def parse_source(raw: dict[str, Any]) -> SourceParams:
    return parse("data_source", raw)


def ingest_images(data_source: dict[str, Any], params: dict[str, Any]) -> IngestResult:
    """Decode and validate every image of ``data_source``; apply the ``on_bad_image`` policy
    (:func:`ledi_kedro.steps.data.ingest_source`)."""
    return ingest_source(parse_source(data_source), parse_params(params))


def build_manifest(ingested: IngestResult, params: dict[str, Any]) -> pl.DataFrame:
    """One row per accepted image (in source order): id, source, split, its row in the split's tensor
    (``split_index``, a seeded shuffle), label, original size and mode, content hash."""
    records = ingested.records
    splits, split_index = split_assignment(ingested, parse_params(params))
    labels = image_labels(ingested)
    return pl.DataFrame(
        {
            "id": np.arange(len(records), dtype=np.int64),
            "split": splits,
            "split_index": split_index,
            "source": [r.source for r in records],
            "label": [int(v) if v >= 0 else None for v in labels],
            "class_name": [r.class_name for r in records],
            "width": [r.width for r in records],
            "height": [r.height for r in records],
            "mode": [r.mode for r in records],
            "sha256": [r.sha256 for r in records],
        },
        schema_overrides={"label": pl.Int32, "split_index": pl.Int64, "class_name": pl.String},
    )


def build_split_tensors(ingested: IngestResult, manifest: pl.DataFrame) -> tuple[dict, dict, dict]:
    """uint8 images (N, C, H, W) and int64 labels (-1: none) for the train, the validation and the test split,
    each in the manifest's ``split_index`` order (a seeded shuffle; :func:`ledi_kedro.steps.data.split_tensors`)."""
    rows = manifest.sort("id")
    return split_tensors(ingested, rows["split"].to_list(), rows["split_index"].to_numpy())


def build_report(ingested: IngestResult, manifest: pl.DataFrame,
                 data_source: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report (counts and every rejected file with its reason) and its flat numeric part,
    which DVC reads as metrics."""
    counts = manifest.group_by("split").len()
    per_split = dict(zip(counts["split"].to_list(), counts["len"].to_list(), strict=True))
    n_dup = int(manifest.height - manifest["sha256"].n_unique())
    if n_dup:
        log.warning("%d image(s) repeat the content of another image (same sha256)", n_dup)
    by_reason = dict(sorted(Counter(r.reason for r in ingested.rejected).items()))
    counts = {
        "n_images": manifest.height,
        "n_train": int(per_split.get("train", 0)),
        "n_validation": int(per_split.get("validation", 0)),
        "n_test": int(per_split.get("test", 0)),
        "n_classes": len(ingested.class_names),
        "n_rejected": len(ingested.rejected),
        "n_duplicate_content": n_dup,
    }  # no timing: git tracks these files, and the same data must give the same bytes (the log has the speed)
    report = counts | {
        "rejected_by_reason": by_reason,
        "source": to_dict(parse_source(data_source)),
        "rejected": [{"source": r.source, "reason": r.reason, "detail": r.detail} for r in ingested.rejected],
    }
    return report, counts | {f"n_rejected_{reason}": n for reason, n in by_reason.items()}
