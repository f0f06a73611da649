"""Benchmarks run in their smoke modes (tiny, CPU) so that they cannot rot."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.mark.slow
def test_gpu_benchmark_smoke():
    proc = subprocess.run([sys.executable, "benchmarks/gpu_benchmark.py", "--smoke"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("device: CPU") and "MFU" in lines[1]
    cells = lines[2].split()
    assert cells[:3] == ["T", "8", "16"] and float(cells[5]) > 0 and cells[7].endswith("%")


def test_preprocess_benchmark_on_a_small_archive(image_tree, tmp_path):
    from tests.conftest import make_archive

    root, _ = image_tree
    archive = make_archive(root, tmp_path / "imgs.tar.gz")
    proc = subprocess.run([sys.executable, "benchmarks/preprocess_speed.py", str(archive), "--workers", "1",
                           "--resolution", "8"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "images/s" in proc.stdout and "7 rejected" in proc.stdout


@pytest.mark.slow
def test_quality_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/quality_benchmark.py", "--smoke", "--out", str(tmp_path)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("device: CPU") and "== synthetic (smoke)" in out
    assert out.count("speedup at NFE 4:") == 2 and out.count("speedup vs the baseline's best:") == 2
    assert "FD at NFE 4 during training: 2:" in out  # the baseline's quality history (evaluated every 2 steps)
    assert "wall-clock" in out and "FD (95% interval) per NFE" in out
    result = json.loads((tmp_path / "results.json").read_text())["results"][0]
    assert set(result["training"]) == {"ledi", "gaussian"}
    assert all(r["fd_low"] <= r["fd"] <= r["fd_high"] for r in result["rows"])


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke", "--out", str(tmp_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| DiT-T | 16 | off |" in md and "LeDiFlow vs Gaussian baseline" in md and "speedup at NFE 4" in md
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["backbone"][0]["img_s"] > 0 and data["quality"]["training"]["gaussian"]["steps"] >= 2
