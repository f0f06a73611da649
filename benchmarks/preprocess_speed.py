"""Benchmark: decode + validate + resize an image archive to uint8 tensors; prints images/s.

    python benchmarks/preprocess_speed.py [ARCHIVE_OR_FOLDER] [--workers N] [--resolution R]

Default input: the CIFAR-10 JPEG archive (60k images) in ../shared/datasets/. Needs only
numpy and Pillow (runs on a bare GPU machine too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


from ledi_kedro.core.data.images import ImageSpec
from ledi_kedro.core.data.ingest import ingest_image_folder

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpg.tar.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", default=str(DEFAULT))
    ap.add_argument("--workers", type=int, default=0, help="decoding processes (0: one per core)")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.source).exists():
        sys.exit(f"{args.source} not found; pass an image folder or archive")
    spec = ImageSpec(resolution=args.resolution, channels=args.channels)
    start = time.perf_counter()
    result = ingest_image_folder(args.source, spec, num_workers=args.workers)
    seconds = time.perf_counter() - start
    n = len(result.records) + len(result.rejected)
    workers = args.workers or os.cpu_count()
    print(f"source        {args.source}")
    print(f"cpu cores     {os.cpu_count()}  workers {workers}")
    print(f"images        {len(result.records)} accepted, {len(result.rejected)} rejected, "
          f"{len(result.class_names)} classes, tensor {tuple(result.images.shape)}")
    print(f"wall time     {seconds:.2f} s")
    print(f"throughput    {n / seconds:.0f} images/s")


if __name__ == "__main__":
    main()
