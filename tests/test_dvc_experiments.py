"""Parallel experiments: two queued DVC experiments run side by side (`dvc exp run --run-all -j 2`), each in
its own workspace, so their checkpoints and outputs stay their own."""

import hashlib
import json

import pytest

from tests.conftest import ok, run


def tree_hash(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_two_queued_experiments_run_in_parallel_with_their_own_checkpoints(tiny_dvc_copy):
    project = tiny_dvc_copy
    checkpoints = project / "data/06_models/checkpoints"
    before = tree_hash(checkpoints)
    for scale in ("0.5", "0.8"):  # LeDiFlow's stage alone: what differs between them (evaluation is covered elsewhere)
        ok(run(["dvc", "exp", "run", "--queue", "-n", f"scale{scale.replace('.', '')}", "-S",
                f"conf/base/parameters_train_fm.yml:fm.prior_noise_scale={scale}", "train_fm_ledi"], project))
    log = ok(run(["dvc", "exp", "run", "--run-all", "--jobs", "2"], project))  # 2 queue workers; returns when done
    assert log.count("Running stage 'train_fm_ledi'") == log.count("Running stage") == 2, log  # the rest is committed
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
