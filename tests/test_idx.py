import gzip

import numpy as np
import pytest

from ledi_kedro.core.data.idx import IdxFormatError, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path, dtype, name):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / name, arr)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, arr)


def test_header_layout_is_big_endian():
    raw = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    np.testing.assert_array_equal(parse_idx(raw), np.array([0x0102, -2], dtype=np.int16))


def test_truncated_payload_names_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((3, 4, 4), np.uint8))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(IdxFormatError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        read_idx(path)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00", "too short"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "dtype code 0x07"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header"),
    ],
)
def test_malformed_headers(raw, message):
    with pytest.raises(IdxFormatError, match=message):
        parse_idx(raw, name="x.idx")


def test_not_gzip_names_file(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(b"not gzip")
    with pytest.raises(IdxFormatError, match="labels.gz"):
        read_idx(path)
