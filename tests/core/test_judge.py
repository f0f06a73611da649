"""The domain classifier judge: augmentation, the cosine schedule, and learning a separable toy task."""

import math

import pytest
import torch

from ledi_kedro.core.models import ClassifierConfig, DomainClassifier
from ledi_kedro.core.metrics.model_quality import classifier_accuracy
from ledi_kedro.core.objectives import augment_images, classifier_loss
from ledi_kedro.core.trainer import TrainConfig, Trainer


def test_augmentation_flips_and_shifts_each_image_on_its_own():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4).repeat(16, 1, 1, 1)
    out = augment_images(x, torch.Generator().manual_seed(0), hflip=True, crop_padding=0)
    flipped = [(o == xi.flip(-1)).all().item() for o, xi in zip(out, x)]
    kept = [(o == xi).all().item() for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < len(x)
    shifted = augment_images(x, torch.Generator().manual_seed(1), hflip=False, crop_padding=1)
    assert shifted.shape == x.shape
    # every output is the input moved by at most one pixel (edges replicated): its centre 2x2 is in the input
    for o, xi in zip(shifted, x):
        windows = [xi[0, 1 + dy: 3 + dy, 1 + dx: 3 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert any(torch.equal(o[0, 1:3, 1:3], w) for w in windows)
    assert not all(torch.equal(o, xi) for o, xi in zip(shifted, x))


def test_cosine_schedule():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1) and cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(10) == pytest.approx(1.0)
    assert cfg.lr_at(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cfg.lr_at(110) == pytest.approx(0.1)
    assert TrainConfig(lr=1.0, warmup_steps=0).lr_at(500) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_classifier_learns_a_separable_task_and_embeds():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    images = (torch.where(labels[:, None, None, None] == 1, 200, 50) + torch.randint(0, 20, (64, 1, 8, 8),
                                                                                    generator=g)).to(torch.uint8)
    cfg = ClassifierConfig(in_channels=1, resolution=8, num_classes=2, width=4, feature_dim=8)
    model = DomainClassifier(cfg)
    # the accuracy is the share of argmax predictions equal to the labels (checked against a hand count)
    with torch.no_grad():
        predicted = model.eval()(images.float() / 127.5 - 1).argmax(1)
    untrained = classifier_accuracy(model, images, labels)
    assert untrained == pytest.approx(float((predicted == labels).float().mean()))
    assert classifier_accuracy(model, images, 1 - labels, batch_size=5) == pytest.approx(1 - untrained)  # batches
    train = TrainConfig(steps=30, batch_size=16, lr=1e-2, warmup_steps=2, ema_decay=0.0, log_every=10,
                        checkpoint_every=30, device="cpu")
    result = Trainer(model, classifier_loss(hflip=True, crop_padding=1), {"images": images, "labels": labels},
                     train).fit()
    assert classifier_accuracy(result.ema, images, labels) == 1.0
    assert result.log_history[-1]["accuracy"] > 0.9
    assert result.ema.features(torch.zeros(3, 1, 8, 8)).shape == (3, 8)
