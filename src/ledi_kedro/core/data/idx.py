"""Reader for the IDX format used by MNIST and Fashion-MNIST (optionally gzip-compressed).

IDX layout: 2 zero bytes, a dtype code, the number of dimensions ``d``, then ``d`` big-endian
uint32 sizes, then the data in C order (big-endian for multi-byte types).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """An IDX file is malformed; the message names the file and what is wrong."""


def _open_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IdxFormatError(f"{path}: cannot read IDX file ({exc})") from exc


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array of shape ``(n0, n1, ...)`` in native byte order."""
    if len(raw) < 4:
        raise IdxFormatError(f"{name}: too short for an IDX header ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise IdxFormatError(f"{name}: bad IDX magic (first two bytes are not zero)")
    if dtype_code not in _IDX_DTYPES:
        raise IdxFormatError(f"{name}: unknown IDX dtype code 0x{dtype_code:02x}")
    if ndim == 0:
        raise IdxFormatError(f"{name}: IDX file declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxFormatError(f"{name}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _IDX_DTYPES[dtype_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(raw) - header_len
    if payload != expected:
        raise IdxFormatError(
            f"{name}: IDX payload is {payload} bytes but shape {tuple(shape)} of {dtype} "
            f"needs {expected} (truncated or corrupt file)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed transparently)."""
    path = Path(path)
    return parse_idx(_open_bytes(path), name=str(path))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX (gzip when the name ends in ``.gz``); used for tests and fixtures."""
    path = Path(path)
    codes = {v.newbyteorder(">"): k for k, v in _IDX_DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX code")
    header = struct.pack(">HBB", 0, codes[dtype], array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw = header + np.ascontiguousarray(array, dtype=dtype).tobytes()
    if path.suffix == ".gz":
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)


def write_random_fashion_mnist(folder: str | Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> Path:
    """Random 28x28 images with labels 0..9 in Fashion-MNIST's four files: a data source for tests and
    smoke checks that exercises the real reader. Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return folder
