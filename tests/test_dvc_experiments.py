"""Parallel experiments: two queued DVC experiments run side by side (`dvc queue start -j 2`), each in
its own workspace, so their checkpoints and outputs stay their own."""

import hashlib
import json
import time

import pytest

from tests.conftest import run


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def tree_hash(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_two_queued_experiments_run_in_parallel_with_their_own_checkpoints(tiny_trained_project):
    project = tiny_trained_project
    ok(run(["git", "add", "-A"], project))
    ok(run(["git", "commit", "-q", "--allow-empty", "-m", "before experiments"], project))
    checkpoints = project / "data/06_models/checkpoints"
    before = tree_hash(checkpoints)
    for scale in ("0.5", "0.8"):
        ok(run(["dvc", "exp", "run", "--queue", "-n", f"scale{scale.replace('.', '')}", "-S",
                f"conf/base/parameters_train_fm.yml:fm.prior_noise_scale={scale}"], project))
    ok(run(["dvc", "queue", "start", "-j", "2"], project))
    deadline = time.time() + 600
    while time.time() < deadline:
        status = ok(run(["dvc", "queue", "status"], project))
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = json.loads(ok(run(["dvc", "exp", "show", "--json", "--no-fetch"], project)))
    experiments = {}
    for rev in shown:
        for exp in rev.get("experiments") or []:
            for run_ in exp.get("revs", []):
                if (run_.get("name") or "").startswith("scale"):
                    experiments[run_["name"]] = run_["data"]
    assert set(experiments) == {"scale05", "scale08"}
    params = {name: d["params"]["conf/base/parameters_train_fm.yml"]["data"]["fm"]["prior_noise_scale"]
              for name, d in experiments.items()}
    assert params == {"scale05": 0.5, "scale08": 0.8}
    ledi_md5 = {name: next(o["hash"] for path, o in d["outs"].items() if path.endswith("fm_ledi"))
                for name, d in experiments.items()}
    assert ledi_md5["scale05"] != ledi_md5["scale08"]  # each trained its own LeDiFlow model
    assert tree_hash(checkpoints) == before  # the workspace's checkpoints were neither used nor touched
