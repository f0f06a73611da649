"""The preprocess pipeline on an in-memory catalog, and once through the `kedro run` CLI."""

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from PIL import Image
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ledi_kedro.pipelines.preprocess import create_pipeline
from ledi_kedro.pipelines.preprocess.nodes import BadImagesError, NoUsableImagesError
from tests.conftest import base_params, deep_merge, ok

OUTPUTS = ["image_manifest", "train_image_tensors", "validation_image_tensors", "test_image_tensors",
           "preprocess_report", "preprocess_metrics"]


class KeptDataset(MemoryDataset):
    """An in-memory dataset the runner cannot release, so the test can read it afterwards."""

    def _release(self) -> None:
        pass


def run_preprocess(overrides: dict) -> dict:
    """conf/base's preprocess section with ``overrides``, and the data source under ``source``."""
    params = dict(overrides)
    source = params.pop("source")
    params = deep_merge(base_params()["preprocess"], params)
    catalog = DataCatalog({"params:preprocess": MemoryDataset(params), "params:data_source": MemoryDataset(source)})
    for name in OUTPUTS:
        catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog.load(name) for name in OUTPUTS}


def folder_params(root, **overrides):
    params = {"source": {"kind": "image_folder", "path": str(root)},
              "image": {"resolution": 8, "channels": 3}, "num_workers": 1}
    params.update(overrides)
    return params


def test_image_folder_end_to_end(image_tree):
    root, expected = image_tree
    out = run_preprocess(folder_params(root))
    manifest, report = out["image_manifest"], out["preprocess_report"]
    good = sorted(k for k, v in expected.items() if v is None)
    assert sorted(manifest["source"].to_list()) == good
    assert set(manifest.columns) >= {"id", "source", "split", "label", "width", "height", "mode", "sha256"}
    assert {r["source"]: r["reason"] for r in report["rejected"]} == {k: v for k, v in expected.items() if v}
    assert report["n_rejected"] == len(report["rejected"]) == 7
    metrics = out["preprocess_metrics"]
    assert metrics["n_rejected_not_an_image"] == 2 and metrics["n_images"] == report["n_images"]
    assert all(isinstance(v, (int, float)) for v in metrics.values())  # DVC reads only numbers
    train, test = out["train_image_tensors"], out["test_image_tensors"]
    assert train["images"].shape == (report["n_train"], 3, 8, 8) and train["images"].dtype == np.uint8
    assert test["images"].shape[0] == report["n_test"] == 4
    assert train["__metadata__"]["class_names"] == ["cats", "dogs"]
    # labels line up with the manifest rows of each split
    test_rows = manifest.filter(pl.col("split") == "test").sort("split_index")
    np.testing.assert_array_equal(test["labels"], test_rows["label"].to_numpy())


def test_unsplit_folder_gets_seeded_split(tmp_path):
    from tests.conftest import encode, rgb_image

    for i in range(20):
        (tmp_path / f"{i:02d}.png").write_bytes(encode(rgb_image(10, 10, seed=i), "PNG"))
    params = folder_params(tmp_path, test_fraction=0.25, split_seed=1)
    first = run_preprocess(params)["image_manifest"]
    second = run_preprocess(params)["image_manifest"]
    assert first["split"].to_list() == second["split"].to_list()
    assert first["split"].to_list().count("test") == 5
    assert first["label"].null_count() == 20


def test_fail_policy_names_every_bad_file(image_tree):
    root, expected = image_tree
    with pytest.raises(Exception) as info:
        run_preprocess(folder_params(root, on_bad_image="fail"))
    err = info.value
    while not isinstance(err, BadImagesError) and err.__cause__ is not None:
        err = err.__cause__
    assert isinstance(err, BadImagesError)
    for rel, reason in expected.items():
        if reason:
            assert rel in str(err) and reason in str(err)


def test_no_usable_image_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(Exception) as info:
        run_preprocess(folder_params(tmp_path))
    assert "No usable image" in str(info.value) or isinstance(info.value.__cause__, NoUsableImagesError)


@pytest.mark.parametrize("override, message", [
    ({"on_bad_image": "ignore"}, "preprocess.on_bad_image"),
    ({"image": {"channels": 4}}, "channels"),
    ({"test_fraction": 1.5}, "test_fraction"),
    ({"resolution": 32}, "unknown parameter"),
])
def test_bad_parameters_are_named(tmp_path, override, message):
    with pytest.raises(Exception, match=message):
        run_preprocess(folder_params(tmp_path, **override))


def test_validation_split_is_carved_from_train_stratified_seeded_and_disjoint(tmp_path):
    """120 training images in 3 classes of 60/40/20 and 30 test images: 30 validation images, 15/10/5 per class,
    none also a training or test image, the test split untouched, the same draw for the same seed."""
    from tests.conftest import encode

    rng = np.random.default_rng(0)
    for split, per_class in (("train", (60, 40, 20)), ("test", (10, 10, 10))):
        for c, n in enumerate(per_class):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                (tmp_path / split / f"c{c}" / f"{i:03d}.png").write_bytes(encode(Image.fromarray(img), "PNG"))
    params = folder_params(tmp_path, validation_size=30, max_validation_fraction=0.5)
    out = run_preprocess(params)
    manifest = out["image_manifest"]
    val = manifest.filter(pl.col("split") == "validation")
    assert val.height == 30 and out["validation_image_tensors"]["images"].shape == (30, 3, 8, 8)
    assert sorted(val.group_by("label").len().rows()) == [(0, 15), (1, 10), (2, 5)]
    assert val["source"].str.starts_with("train/").all()
    assert manifest.filter(pl.col("split") == "test").height == 30
    assert manifest.filter(pl.col("split") == "train").height == 90
    assert manifest["sha256"].n_unique() == manifest.height  # each image in exactly one split
    np.testing.assert_array_equal(out["validation_image_tensors"]["labels"], val.sort("split_index")["label"])
    again = run_preprocess(params)["image_manifest"]
    assert again["split"].to_list() == manifest["split"].to_list()
    other = run_preprocess({**params, "split_seed": 1})["image_manifest"]
    assert other["split"].to_list() != manifest["split"].to_list()
    # the cap: at most max_validation_fraction of the training images
    capped = run_preprocess({**params, "validation_size": 1000, "max_validation_fraction": 0.1})
    assert capped["preprocess_metrics"]["n_validation"] == 12


def test_fashion_mnist_source(tiny_fashion_mnist):

    out = run_preprocess({"source": {"kind": "fashion_mnist", "path": str(tiny_fashion_mnist)}, "num_workers": 1})
    # conf/base's validation split: 5000 images, at most 10% of the 12 training images: 1
    assert out["train_image_tensors"]["images"].shape == (11, 1, 32, 32)
    assert out["validation_image_tensors"]["images"].shape == (1, 1, 32, 32)
    assert out["preprocess_metrics"]["n_validation"] == 1
    assert sorted(out["test_image_tensors"]["labels"].tolist()) == [0, 1, 2, 3, 4]  # a seeded shuffle
    again = run_preprocess({"source": {"kind": "fashion_mnist", "path": str(tiny_fashion_mnist)}, "num_workers": 1})
    np.testing.assert_array_equal(again["test_image_tensors"]["labels"], out["test_image_tensors"]["labels"])


@pytest.mark.slow
def test_cli_run_on_folder_with_corrupt_files(project_copy, image_tree):
    root, expected = image_tree
    params = f"data_source.kind=image_folder,data_source.path={root},preprocess.image.channels=3"
    proc = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines=preprocess", f"--params={params}"],
        cwd=project_copy, capture_output=True, text=True, timeout=300,
    )
    ok(proc)
    report = json.loads((project_copy / "data/08_reporting/preprocess_report.json").read_text())
    assert {r["source"] for r in report["rejected"]} == {k for k, v in expected.items() if v}
    assert (project_copy / "data/05_model_input/train_images.safetensors").is_file()
    manifest = pl.read_parquet(project_copy / "data/02_intermediate/image_manifest.parquet")
    assert manifest.height == report["n_images"]
    assert not list(project_copy.glob("data/**/.*.tmp"))


def test_ensure_data_explains_how_to_get_data(project_copy, tmp_path):
    import shutil

    from tests.conftest import PROJECT_ROOT

    (project_copy / "scripts").mkdir()
    shutil.copy(PROJECT_ROOT / "scripts" / "ensure_data.py", project_copy / "scripts")
    local = project_copy / "conf/local/parameters_data_source.yml"
    for source, expected in (({"kind": "image_folder", "path": str(tmp_path / "gone")}, "gone"),
                             ({"kind": "fashion_mnist", "path": str(tmp_path / "fm")}, "Fashion-MNIST files")):
        import yaml

        local.write_text(yaml.safe_dump({"data_source": source}))
        proc = subprocess.run([sys.executable, "scripts/ensure_data.py"], cwd=project_copy, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 1
        assert expected in proc.stderr and "apt-get install -y dataset-fashion-mnist" in proc.stderr
    local.write_text(yaml.safe_dump({"data_source": {"kind": "image_folder", "path": str(tmp_path)}}))
    ok(subprocess.run([sys.executable, "scripts/ensure_data.py"], cwd=project_copy, capture_output=True, text=True))
