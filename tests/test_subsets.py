"""Every set of N images the project takes is a seeded random sample: on a class-sorted folder, the
reference set, the real-vs-real set, the prior's evaluation set and tune's scoring set cover the classes."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ledi_kedro.core.data.tensors import as_float
from ledi_kedro.core.embedders import build_embedder
from ledi_kedro.core.models import ClassifierConfig, DomainClassifier, PriorConfig, PriorModel
from ledi_kedro.core.models.autoencoder import AutoencoderConfig, KLAutoencoder
from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.core.subsets import class_coverage, rows_outside, seeded_indices, seeded_rows
from ledi_kedro.pipelines.evaluate.nodes import embed_reference as _embed_reference
from ledi_kedro.pipelines.train_prior.nodes import evaluate_prior
from ledi_kedro.params import parse
from ledi_kedro.pipelines.tune.nodes import scoring_set
from tests.conftest import base_params, encode
from tests.test_preprocess_pipeline import folder_params, run_preprocess

N_CLASSES, PER_CLASS = 10, 40
PIXEL_SPACE = TrainedModel("identity", {}, None, None)


def embed_reference(judge, train, test, autoencoder, test_input, evaluate, run):
    """The evaluate pipeline's node, given LeDiFlow's generator as far as it reads it: its autoencoder."""
    return _embed_reference(judge, train, test, SimpleNamespace(autoencoder=autoencoder), test_input, evaluate, run)


@pytest.fixture(scope="module")
def class_sorted_split(tmp_path_factory):
    """10 class folders x 40 images, names sorted by class (as CIFAR-10's archive is), through preprocess."""
    from PIL import Image

    root = tmp_path_factory.mktemp("sorted")
    for c in range(N_CLASSES):
        (root / f"class_{c}").mkdir()
        for i in range(PER_CLASS):
            img = Image.fromarray(np.full((8, 8), 20 * c + i % 5, np.uint8))
            (root / f"class_{c}" / f"{i:03d}.png").write_bytes(encode(img, "PNG"))
    out = run_preprocess(folder_params(root, test_fraction=0.5, split_seed=3, image={"resolution": 8, "channels": 1}))
    return {split: {"images": torch.from_numpy(out[f"{split}_image_tensors"]["images"]),
                    "labels": torch.from_numpy(out[f"{split}_image_tensors"]["labels"])}
            for split in ("train", "test")}


def test_preprocess_writes_each_split_in_a_seeded_random_order(class_sorted_split):
    for split in ("train", "test"):
        labels = class_sorted_split[split]["labels"]
        assert class_coverage(labels[:20])["n_classes"] >= 8  # a prefix is no longer one class
        assert not torch.equal(labels, labels.sort().values)


def test_every_consumer_samples_across_all_classes(class_sorted_split):
    # Undo preprocess's shuffle: consumers must not rely on it (defence in depth).
    train, test = ({k: v[v.argsort(stable=True)] if k == "labels" else v[d["labels"].argsort(stable=True)]
                    for k, v in d.items()} for d in (class_sorted_split["train"], class_sorted_split["test"]))
    assert class_coverage(test["labels"][:20])["n_classes"] <= 2
    n = 40  # 40 draws from 10 classes miss one with probability ~0.15: >= 9 is a fair bar for any seed
    judge = TrainedModel("classifier", cfg := ClassifierConfig(1, 8, N_CLASSES, width=2, feature_dim=4),
                         DomainClassifier(cfg), None)
    params = base_params({"evaluate": {"n_samples": n, "n_reference": n, "seed": 0}, "run": {"device": "cpu", "seed": 0},
                          "prior": {"eval_images": n}, "tune": {"objective": {"n_reference": n}}})
    ref = embed_reference(judge, train, test, PIXEL_SPACE, test, params["evaluate"], params["run"])
    assert ref.coverage["reference"]["n_classes"] >= 9 and ref.coverage["reference"]["n"] == n
    assert ref.coverage["real_vs_real"]["n_classes"] >= 9
    prior = TrainedModel("prior", pc := PriorConfig(1, 8, z_dim=2, base_channels=4, bottleneck=4), PriorModel(pc), None,
                         {"stop_reason": "step_cap", "quality_history": []})  # what training records
    metrics = evaluate_prior(prior, test, _history(), params["prior"], params["run"])  # test stands in for validation
    assert metrics["n_validation_images"] == n and metrics["n_validation_classes"] >= 9
    scoring = scoring_set(test, parse("tune", params["tune"]), parse("run", params["run"]))
    assert class_coverage(scoring["labels"])["n_classes"] >= 9


def test_in_latent_space_the_reference_set_holds_the_autoencoders_reconstructions(class_sorted_split):
    # The reconstruction row: the held-out images outside the reference, decoded from their cached latents
    # (what a latent model can at best give); none in pixel space.
    torch.manual_seed(0)
    judge = TrainedModel("classifier", cfg := ClassifierConfig(1, 8, N_CLASSES, width=2, feature_dim=4),
                         DomainClassifier(cfg), None)
    ae = KLAutoencoder(AutoencoderConfig(in_channels=1, latent_channels=2, base_channels=4, levels=1)).eval()
    train, test = class_sorted_split["train"], class_sorted_split["test"]
    with torch.no_grad():
        latents = {"images": ae.encode_scaled(as_float(test["images"])), "labels": test["labels"]}
    params = base_params({"evaluate": {"n_samples": 20, "n_reference": 20, "seed": 0}, "run": {"device": "cpu"}})
    latent_ref = embed_reference(judge, train, test, TrainedModel("autoencoder", ae.config, ae, None), latents,
                                 params["evaluate"], params["run"])
    pixel_ref = embed_reference(judge, train, test, PIXEL_SPACE, test, params["evaluate"], params["run"])
    assert pixel_ref.reconstructed is None
    assert torch.equal(latent_ref.held_out, pixel_ref.held_out)
    with torch.no_grad():
        expected = build_embedder(judge)(ae.decode_scaled(latents["images"][latent_ref.held_out_rows]).clamp(-1, 1))
    torch.testing.assert_close(latent_ref.reconstructed, expected)
    assert not torch.allclose(latent_ref.reconstructed, latent_ref.held_out)  # an untrained autoencoder loses detail


def test_evaluate_names_a_split_too_small_for_error_bars(class_sorted_split):
    judge = TrainedModel("classifier", cfg := ClassifierConfig(1, 8, N_CLASSES, width=2, feature_dim=4),
                         DomainClassifier(cfg), None)
    params = base_params({"run": {"device": "cpu"}})
    tiny_test = {k: v[:2] for k, v in class_sorted_split["test"].items()}
    with pytest.raises(ValueError, match=r"test split .*test_images.safetensors\) has 2 images.*at least 4.*"
                                         r"preprocess.test_fraction"):
        embed_reference(judge, class_sorted_split["train"], tiny_test, PIXEL_SPACE, tiny_test, params["evaluate"],
                        params["run"])


def _history():
    import polars as pl

    return pl.DataFrame({"step": [1], "loss": [1.0]})


def test_seeded_indices_are_reproducible_distinct_and_sorted():
    a, b = seeded_indices(1000, 50, seed=7), seeded_indices(1000, 50, seed=7)
    assert torch.equal(a, b) and a.unique().numel() == 50 and torch.equal(a, a.sort().values)
    assert not torch.equal(a, seeded_indices(1000, 50, seed=8))
    assert torch.equal(seeded_indices(10, None, 0), torch.arange(10))
    assert torch.equal(seeded_indices(10, 25, 0), torch.arange(10))


def test_seeded_rows_keeps_rows_aligned_and_metadata():
    data = {"images": torch.arange(100).view(100, 1), "labels": np.arange(100), "__metadata__": {"a": 1}}
    sub = seeded_rows(data, 10, seed=1)
    assert sub["__metadata__"] == {"a": 1}
    np.testing.assert_array_equal(sub["images"][:, 0].numpy(), sub["labels"])
    with pytest.raises(ValueError, match="different numbers of rows"):
        seeded_rows({"a": torch.zeros(3), "b": torch.zeros(4)}, 2, 0)


def test_rows_outside_a_seeded_set_are_the_rest_in_order():
    taken = seeded_indices(10, 4, seed=3)
    rest = rows_outside(10, taken)
    assert rest.tolist() == sorted(set(range(10)) - set(taken.tolist()))
    assert rows_outside(3, torch.arange(3)).numel() == 0
