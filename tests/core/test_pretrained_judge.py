"""The third-party CIFAR-10 ResNet-56 judge: its loader, its input conversion, the check of its accuracy, and
its use for unlabeled colour images. The real weights (../shared/pretrained/cifar10_resnet56, BSD 2-clause)
and the CIFAR-10 JPEG archive are used where they are present."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ledi_kedro.core.embedders import PRETRAINED_NAME, build_embedder
from ledi_kedro.core.metrics import frechet_distance
from ledi_kedro.core.models.cifar_resnet import CifarResNet, ImageJudge, WeightsUnavailable, load_cifar_resnet
from ledi_kedro.core.subsets import seeded_indices
from ledi_kedro.params import parse
from ledi_kedro.steps.training import CIFAR10_CLASSES, train_judge
from tests.conftest import PROJECT_ROOT, base_params

SHARED = next((p for p in (PROJECT_ROOT.parent / "shared", Path("/work/shared")) if p.is_dir()), None)
WEIGHTS = SHARED / "pretrained/cifar10_resnet56/resnet56-4bfd9763.th" if SHARED else None
ARCHIVE = SHARED / "datasets/cifar10-jpg.tar.gz" if SHARED else None


def fake_weights(path: Path) -> Path:
    """A random ResNet-56 saved the way the real file is (``module.`` prefixes under ``state_dict``)."""
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in CifarResNet(56).state_dict().items()}
    torch.save({"best_prec1": 0.0, "state_dict": state}, path)
    return path


def judge_params(weights: Path | str, **overrides) -> object:
    return parse("embedder", base_params({"embedder": {"pretrained_weights": str(weights), **overrides}})["embedder"])


def test_loader_and_input_conversion(tmp_path):
    judge = ImageJudge(load_cifar_resnet(fake_weights(tmp_path / "w.th")))
    grey16, rgb32 = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    assert judge.features(grey16).shape == (3, 64) and judge(rgb32).shape == (3, 10)
    x = judge.prepare(torch.full((1, 1, 8, 8), 1.0))  # white, grey: RGB at 32 px, normalised as the weights expect
    assert x.shape == (1, 3, 32, 32)
    torch.testing.assert_close(x[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))
    with pytest.raises(ValueError, match="grey or RGB"):
        judge.prepare(torch.zeros(1, 4, 32, 32))


def test_a_missing_or_wrong_weights_file_names_itself(tmp_path):
    with pytest.raises(WeightsUnavailable, match=r"nope.th: no such file.*embedder.pretrained_weights"):
        load_cifar_resnet(tmp_path / "nope.th")
    (tmp_path / "junk.th").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="junk.th: not a readable weights file"):
        load_cifar_resnet(tmp_path / "junk.th")
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(1)}}, tmp_path / "other.th")
    with pytest.raises(WeightsUnavailable, match="other.th: not a CIFAR ResNet-56"):
        load_cifar_resnet(tmp_path / "other.th")
    with pytest.raises(WeightsUnavailable, match="nope.th"):  # before anything is trained
        train_judge({}, {}, judge_params(tmp_path / "nope.th", kind="cifar10_resnet56"), parse("run", base_params()["run"]))


def test_unlabeled_colour_images_get_the_pretrained_judge_and_grey_ones_the_autoencoder(tmp_path):
    run = parse("run", base_params({"run": {"device": "cpu", "checkpoint_root": str(tmp_path / "ck")}})["run"])
    weights = fake_weights(tmp_path / "w.th")
    colour = {"images": torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8), "labels": torch.full((12,), -1)}
    record, metrics, result = train_judge(colour, colour, judge_params(weights), run)
    assert record.kind == "cifar10_resnet56" and result is None
    assert metrics["embedder"] == PRETRAINED_NAME and "no labels" in metrics["why"] and "validation_accuracy" not in metrics
    assert build_embedder(record)(colour["images"].float() / 127.5 - 1).shape == (12, 64)
    grey = {"images": colour["images"][:, :1], "labels": colour["labels"]}
    params = judge_params(weights, train={**base_params()["embedder"]["train"], "steps": 1, "batch_size": 4})
    record, metrics, _ = train_judge(grey, grey, params, run)
    assert record.kind == "autoencoder" and "1-channel images" in metrics["why"]


def _cifar10_test_sample(n: int, seed: int = 0) -> dict:
    """A seeded sample of ``n`` images of the archive's test split, decoded as preprocess does for 32 px."""
    members = {}
    with tarfile.open(ARCHIVE, "r:gz") as tar:
        for m in tar:
            if m.isfile() and m.name.startswith("test/"):
                members[m.name] = tar.extractfile(m).read()
    names = sorted(members)
    picked = [names[i] for i in seeded_indices(len(names), n, seed)]
    images = np.stack([np.asarray(Image.open(io.BytesIO(members[k])).convert("RGB")) for k in picked])
    labels = [CIFAR10_CLASSES.index(k.split("/")[1]) for k in picked]
    return {"images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), "labels": torch.tensor(labels),
            "__metadata__": {"class_names": CIFAR10_CLASSES}}


@pytest.mark.slow
@pytest.mark.skipif(WEIGHTS is None or not WEIGHTS.is_file() or not ARCHIVE.is_file(),
                    reason="the CIFAR-10 ResNet-56 weights or the CIFAR-10 archive are not on this machine")
def test_the_real_judge_passes_its_accuracy_check_and_tells_noise_from_data(tmp_path):
    """On a seeded 500-image sample of the archive's test split: accuracy at least min_pretrained_accuracy (0.80;
    0.834 on this sample, 0.832 on the whole split), and N(0, I) noise at least 10x the real-vs-real floor."""
    test = _cifar10_test_sample(500)
    run = parse("run", base_params({"run": {"device": "cpu"}})["run"])
    record, metrics, _ = train_judge({}, test, judge_params(WEIGHTS, kind="cifar10_resnet56"), run)
    assert metrics["n_validation"] == 500 and metrics["validation_accuracy"] >= 0.80, metrics
    embed = build_embedder(record)
    real = test["images"].float() / 127.5 - 1
    # the sample comes in the archive's class order: halves of a seeded permutation, so both hold every class
    features = embed(real[torch.randperm(500, generator=torch.Generator().manual_seed(0))])
    floor = frechet_distance(features[:250], features[250:])
    noise = frechet_distance(embed(torch.randn(250, 3, 32, 32, generator=torch.Generator().manual_seed(0))),
                             features[250:])
    assert noise >= 10 * floor, (noise, floor)  # seen: 60 vs 1.2
    strict = judge_params(WEIGHTS, kind="cifar10_resnet56", min_pretrained_accuracy=0.99)
    keep = seeded_indices(500, 100, seed=1)
    few = {"images": test["images"][keep], "labels": test["labels"][keep], "__metadata__": test["__metadata__"]}
    with pytest.raises(ValueError, match="below embedder.min_pretrained_accuracy=0.99"):
        train_judge({}, few, strict, run)
