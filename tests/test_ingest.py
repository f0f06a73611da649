import numpy as np
import pytest

from ledi_kedro.core.data.idx import write_idx
from ledi_kedro.core.data.images import ImageSpec
from ledi_kedro.core.data.ingest import SourceError, ingest, ingest_fashion_mnist, ingest_image_folder, layout_of
from ledi_kedro.core.data.splits import assign_splits
from tests.conftest import make_archive

SPEC = ImageSpec(resolution=16, channels=3)


def _by_source(result):
    return {r.source: (r, result.images[i]) for i, r in enumerate(result.records)}


@pytest.mark.parametrize("workers", [1, 2])
def test_folder_labels_splits_and_rejections(image_tree, workers):
    root, expected = image_tree
    result = ingest_image_folder(root, SPEC, num_workers=workers, chunk_size=4)
    rejected = {r.source: r.reason for r in result.rejected}
    assert rejected == {k: v for k, v in expected.items() if v is not None}
    accepted = _by_source(result)
    assert set(accepted) == {k for k, v in expected.items() if v is None}
    assert result.class_names == ["cats", "dogs"]
    rec, pixels = accepted["test/dogs/img1.png"]
    assert (rec.split, rec.class_name, rec.width, rec.height, rec.mode) == ("test", "dogs", 40, 48, "RGB")
    assert pixels.shape == (3, 16, 16)
    assert result.images.shape == (len(accepted), 3, 16, 16)


def test_archive_equals_folder(image_tree, tmp_path):
    root, _ = image_tree
    folder = ingest_image_folder(root, SPEC, num_workers=1)
    archive = ingest_image_folder(make_archive(root, tmp_path / "x.tar.gz"), SPEC, num_workers=2)
    assert {r.source for r in archive.rejected} == {r.source for r in folder.rejected}
    a, f = _by_source(archive), _by_source(folder)
    assert a.keys() == f.keys()
    for key in f:
        assert a[key][0] == f[key][0]
        np.testing.assert_array_equal(a[key][1], f[key][1])


def test_archive_with_wrapping_folder(image_tree, tmp_path):
    root, _ = image_tree
    result = ingest_image_folder(make_archive(root, tmp_path / "w.tgz", wrap="mydata"), SPEC, num_workers=1)
    rec = _by_source(result)["mydata/train/cats/img0.png"][0]
    assert (rec.split, rec.class_name) == ("train", "cats")


def test_flat_folder_has_no_labels_or_splits(tmp_path):
    from tests.conftest import encode, rgb_image

    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(encode(rgb_image(20, 20, seed=i), "PNG"))
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    result = ingest_image_folder(tmp_path, SPEC, num_workers=1)
    assert [r.split for r in result.records] == [None] * 3
    assert [r.class_name for r in result.records] == [None] * 3
    assert result.rejected == [] and result.class_names == []


def test_layout_rules():
    assert layout_of(["train", "cat", "x.png"], True) == ("train", "cat")
    assert layout_of(["Validation", "x.png"], True) == ("test", None)
    assert layout_of(["cat", "x.png"], False) == (None, "cat")
    assert layout_of(["x.png"], False) == (None, None)
    assert layout_of(["train", "x.png"], False) == (None, "train")


def test_missing_folder_error_names_path(tmp_path):
    with pytest.raises(SourceError, match="nowhere"):
        ingest("image_folder", tmp_path / "nowhere", SPEC)


def test_corrupt_archive_error_names_file(tmp_path):
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(SourceError, match="broken.tar.gz"):
        ingest_image_folder(bad, SPEC, num_workers=1)


def test_fashion_mnist(tiny_fashion_mnist):
    result = ingest_fashion_mnist(tiny_fashion_mnist, ImageSpec(resolution=32, channels=1))
    assert result.images.shape == (17, 1, 32, 32)
    assert [r.split for r in result.records].count("test") == 5
    assert result.records[3].class_name == "Dress" and result.records[0].source == "train-images-idx3-ubyte.gz#0"
    assert result.class_names[0] == "T-shirt/top" and len(result.class_names) == 10
    # 28 px are padded by 2 on each side with zeros
    assert result.images[:, :, :2].sum() == 0 and result.images[:, :, 30:].sum() == 0


def test_fashion_mnist_resized_rgb_matches_generic_path(tiny_fashion_mnist):
    result = ingest_fashion_mnist(tiny_fashion_mnist, ImageSpec(resolution=20, channels=3))
    assert result.images.shape == (17, 3, 20, 20)
    np.testing.assert_array_equal(result.images[:, 0], result.images[:, 2])


def test_fashion_mnist_missing_file_says_how_to_install(tiny_fashion_mnist):
    (tiny_fashion_mnist / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SourceError, match="apt-get install dataset-fashion-mnist"):
        ingest("fashion_mnist", tiny_fashion_mnist, SPEC)


def test_fashion_mnist_label_count_mismatch(tiny_fashion_mnist):
    write_idx(tiny_fashion_mnist / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="4 labels for 5 images"):
        ingest("fashion_mnist", tiny_fashion_mnist, SPEC)


def test_seeded_split():
    src = [None] * 100 + ["test", "train"]
    a = assign_splits(src, 0.2, seed=3)
    assert a == assign_splits(src, 0.2, seed=3)
    assert a != assign_splits(src, 0.2, seed=4)
    assert a[:100].count("test") == 20 and a[100:] == ["test", "train"]
    with pytest.raises(ValueError, match="test_fraction"):
        assign_splits(src, 1.0, seed=0)
