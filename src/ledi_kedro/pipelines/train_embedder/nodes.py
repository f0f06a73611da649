"""The quality judge: a domain classifier trained on the data set's own labels (an autoencoder when
there are none), or a check that the CLIP / Inception weights are there. Trained once per data set
and reused by ``train_fm`` (quality during training), ``evaluate`` and ``tune``."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import polars as pl

from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.embedders import ClipEmbedder, InceptionEmbedder
from ledi_kedro.core.metrics.model_quality import classifier_accuracy
from ledi_kedro.core.models import AutoencoderConfig, DomainClassifier, KLAutoencoder
from ledi_kedro.core.objectives import autoencoder_loss, classifier_loss
from ledi_kedro.params import parse, with_run
from ledi_kedro.training import empty_history, history_frame, plot_loss_history, run_training

log = logging.getLogger(__name__)

UNLABELED_NOTE = ("no labels: the judge is an autoencoder bottleneck; its figures compare models on this data set "
                  "only, never with other data sets or published numbers")


def train_quality_embedder(train_image_tensors: dict[str, Any], test_image_tensors: dict[str, Any], embedder: dict,
                           run: dict) -> tuple[TrainedModel, dict[str, Any], pl.DataFrame]:
    """The judge's record, its metrics (test accuracy, training time) and its loss history."""
    emb, run_p = parse("embedder", embedder), parse("run", run)
    device = resolve_device(run_p.device)
    if emb.kind == "clip":  # checked now, so that missing weights fail before any training
        ClipEmbedder(emb.clip_model, emb.clip_weights, device, image_size=emb.clip_image_size)
        cfg = {"model": emb.clip_model, "weights": emb.clip_weights, "image_size": emb.clip_image_size}
        return (TrainedModel("clip", cfg, None, None, {}), {"embedder": f"clip:{emb.clip_model}"}, empty_history())
    if emb.kind == "inception":
        InceptionEmbedder(emb.inception_weights, device)
        return (TrainedModel("inception", {"weights": emb.inception_weights}, None, None, {}),
                {"embedder": "inception:fid"}, empty_history())
    images, labels = train_image_tensors["images"], train_image_tensors["labels"]
    channels, res = int(images.shape[1]), int(images.shape[-1])
    train = with_run(emb.train, run_p, offset=5)
    n_classes = int(labels.max()) + 1 if labels.numel() and int(labels.min()) >= 0 else 0
    if n_classes >= 2:
        cfg = replace(emb.model, in_channels=channels, resolution=res, num_classes=n_classes)
        result = run_training("quality_embedder", lambda: DomainClassifier(cfg),
                              classifier_loss(emb.augment.hflip, emb.augment.crop_padding),
                              {"images": images, "labels": labels.long()}, train, run_p,
                              {**cfg.to_dict(), "augment": vars(emb.augment)})
        test_x, test_y = test_image_tensors["images"], test_image_tensors["labels"]
        acc = classifier_accuracy(result.ema, test_x, test_y, device)
        log.info("quality judge (domain classifier): test accuracy %.4f on %d images after %d steps",
                 acc, len(test_x), result.steps)
        metrics = {"embedder": "domain:classifier", "test_accuracy": round(acc, 5), "n_test": int(len(test_x)),
                   "n_train": int(len(images)), "n_classes": n_classes, "steps": result.steps,
                   "train_seconds": round(result.seconds, 1)}
        return TrainedModel("classifier", cfg, result.model, result.ema, {}), metrics, history_frame(result)
    cfg = AutoencoderConfig(in_channels=channels, latent_channels=4, base_channels=emb.model.width, levels=2)
    result = run_training("quality_embedder", lambda: KLAutoencoder(cfg), autoencoder_loss(1e-6),
                          {"images": images}, train, run_p, cfg.to_dict())
    log.warning("quality judge: %s", UNLABELED_NOTE)
    metrics = {"embedder": "domain:autoencoder", "note": UNLABELED_NOTE, "n_train": int(len(images)),
               "steps": result.steps, "train_seconds": round(result.seconds, 1)}
    return TrainedModel("autoencoder", cfg, result.model, result.ema, {}), metrics, history_frame(result)


def plot_embedder_loss(history: pl.DataFrame):
    return plot_loss_history(history, "quality judge")
