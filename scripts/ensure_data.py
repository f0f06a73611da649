"""Make sure the configured data source exists before `dvc repro` runs.

Fashion-MNIST at its Debian path is installed with apt-get when missing and we are root;
otherwise we stop with instructions. Reads ``data_source`` from conf/base and conf/local (local wins).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
HOW_TO = """
How to fix:
  * install the default data set (Debian/Ubuntu):  sudo apt-get install -y dataset-fashion-mnist
  * or point the project at the four Fashion-MNIST IDX files elsewhere, in conf/local/parameters_data_source.yml:
        data_source: {kind: fashion_mnist, path: /path/to/fashion-mnist}
  * or use your own images (a folder, or a .tar.gz of one), there too:
        data_source: {kind: image_folder, path: /path/to/images}
    (and in conf/local/parameters_preprocess.yml, e.g.  preprocess: {image: {channels: 3}})
"""


def configured_source() -> dict:
    source: dict = {}
    for env in ("base", "local"):
        for path in sorted((ROOT / "conf" / env).glob("parameters*.yml")):
            data = yaml.safe_load(path.read_text()) or {}
            source.update(data.get("data_source") or {})
    return source


def fashion_mnist_present(path: Path) -> bool:
    return all((path / f).is_file() or (path / f"{f}.gz").is_file() for f in FILES)


def main() -> int:
    source = configured_source()
    kind, path = source.get("kind", "fashion_mnist"), Path(source.get("path", DEBIAN_DIR))
    if kind == "image_folder":
        if path.exists():
            return 0
        print(f"error: data_source.path {path} (image_folder) does not exist.{HOW_TO}", file=sys.stderr)
        return 1
    if fashion_mnist_present(path):
        return 0
    if path == DEBIAN_DIR and os.geteuid() == 0 and shutil.which("apt-get"):
        print("Fashion-MNIST is missing: installing the Debian package dataset-fashion-mnist ...")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        ok = subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env).returncode == 0
        if not ok:  # the package lists may be stale or empty on a fresh machine
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
            ok = subprocess.run(["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"], env=env).returncode == 0
        if ok and fashion_mnist_present(path):
            return 0
    print(f"error: the Fashion-MNIST files are not in {path}.{HOW_TO}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
