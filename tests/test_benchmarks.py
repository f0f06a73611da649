"""Benchmarks run in their smoke modes (tiny, CPU) so that they cannot rot."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, ok


@pytest.mark.slow
def test_gpu_benchmark_smoke():
    proc = subprocess.run([sys.executable, "benchmarks/gpu_benchmark.py", "--smoke"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    ok(proc)
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
    ok(proc)
    assert "images/s" in proc.stdout and "7 rejected" in proc.stdout


@pytest.mark.slow
def test_quality_benchmark_prints_what_evaluate_wrote(tiny_trained_copy):
    """The benchmark's tables are read from the workspace's evaluate outputs (here the tiny project's)."""
    proc = subprocess.run([sys.executable, "benchmarks/quality_benchmark.py", "--env", "tiny", "--report-only",
                           "--workspace", str(tiny_trained_copy)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    out = ok(proc)
    assert "| solver | model | NFE 1 | NFE 2 | NFE 4 |" in out
    assert out.count("| at_reference_nfe (NFE 4") == 2 and out.count("| vs_best_baseline (NFE") == 2
    assert "| encoder codes of training images | 0 |" in out and "- memorisation: not checked" in out
    assert (tiny_trained_copy / "results.md").read_text().strip() in proc.stdout
    saved = json.loads((tiny_trained_copy / "results.json").read_text())
    assert saved["env"] == "tiny" and saved["metrics"]["training"]["gaussian"]["steps"] == 4


def test_the_benchmark_streams_its_runs_and_stops_at_the_first_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import quality_benchmark

    good = quality_benchmark._start([sys.executable, "-c", "print('x ledi_kedro: step 1'); print('noise')"], tmp_path,
                                    "good.log")
    quality_benchmark._wait([good])
    shown = capsys.readouterr().out
    assert "x ledi_kedro: step 1" in shown and "\nnoise\n" not in shown and "OMP_WAIT_POLICY=" in shown
    assert (tmp_path / "good.log").read_text() == "x ledi_kedro: step 1\nnoise\n"
    slow = quality_benchmark._start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, "slow.log")
    bad = quality_benchmark._start([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path, "bad.log")
    with pytest.raises(SystemExit, match=r"failed \(exit 3\); its log: .*bad.log"):
        quality_benchmark._wait([slow, bad])
    assert slow[0].wait(timeout=10) != 0  # the other run is stopped too


def test_quality_benchmark_trains_the_flow_models_side_by_side(monkeypatch, tmp_path):
    """The default on 2 cores: what needs nothing of each other runs at once on one core each (the judge and the
    prior; the two namespaces of train_fm), the rest on both cores."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import quality_benchmark

    started = []
    monkeypatch.setattr(quality_benchmark, "_start", lambda cmd, ws, log: (started.append((cmd[2:], log)), (cmd, log))[1])
    waits = []
    monkeypatch.setattr(quality_benchmark, "_wait", lambda runs: waits.append(len(runs)))
    quality_benchmark.run_pipelines(tmp_path, "cpu_benchmark", "run.seed=1", side_by_side=True)
    assert waits == [1, 2, 1, 2, 1]
    one_core = "--params=run.seed=1,run.cpu_threads=1"
    assert started == [
        (["--env=cpu_benchmark", "--pipelines=preprocess,train_autoencoder", "--params=run.seed=1"], "kedro_run_data.log"),
        (["--env=cpu_benchmark", "--pipelines=train_embedder", one_core], "kedro_run_judge_and_prior_0.log"),
        (["--env=cpu_benchmark", "--pipelines=train_prior", one_core], "kedro_run_judge_and_prior_1.log"),
        (["--env=cpu_benchmark", "--pipelines=train_latent_flow", "--params=run.seed=1"], "kedro_run_latent_sampler.log"),
        (["--env=cpu_benchmark", "--pipelines=train_fm", "--namespaces=ledi", one_core], "kedro_run_flow_models_0.log"),
        (["--env=cpu_benchmark", "--pipelines=train_fm", "--namespaces=gaussian", one_core],
         "kedro_run_flow_models_1.log"),
        (["--env=cpu_benchmark", "--pipelines=evaluate,report", "--params=run.seed=1"], "kedro_run_evaluation.log")]


def test_a_workspace_run_finds_the_projects_relative_paths(monkeypatch):
    """The benchmark runs Kedro in a workspace elsewhere: the data and the judge's weights, given relative to the
    project root, are anchored there, unless the caller's --params sets them."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import quality_benchmark

    params = quality_benchmark.anchored_paths("cifar10_cpu", "run.seed=1").split(",")
    assert params[-1] == "run.seed=1"
    assert f"data_source.path={(PROJECT_ROOT / '../shared/datasets/cifar10-jpg.tar.gz').resolve()}" in params
    weights = next(p for p in params if p.startswith("embedder.pretrained_weights="))
    # resolved as the project root's relative path resolves (../shared may be a symbolic link to anywhere)
    assert weights.split("=", 1)[1] == str((PROJECT_ROOT / "../shared/pretrained/cifar10_resnet56/resnet56-4bfd9763.th")
                                           .resolve())
    mine = quality_benchmark.anchored_paths("cifar10_cpu", "data_source.path=/data/cifar.tar.gz").split(",")
    assert [p for p in mine if p.startswith("data_source.path=")] == ["data_source.path=/data/cifar.tar.gz"]


def _ablation(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import ablation

    return ablation


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    return set().union(*[_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
                         for k, v in tree.items()]) if tree else set()


ARMS_FILES = sorted((PROJECT_ROOT / "benchmarks").glob("*ablation.yml")) + sorted(
    (PROJECT_ROOT / "benchmarks").glob("baseline_selection_*.yml"))


@pytest.mark.parametrize("arms_file", ARMS_FILES, ids=lambda p: p.name)
def test_every_ablation_arm_changes_a_setting_that_exists_where_it_sets_it(monkeypatch, arms_file):
    """An arm is `dvc exp run -S FILE:KEY=VALUE`. On a conf/base file the key must be there (DVC would add a new
    one silently) and the profile in conf/local must not set it, or the arm would change nothing; on one of the
    profile's own files in conf/local, the profile must set the key. Every arm says which model it is for."""
    import yaml

    ablation = _ablation(monkeypatch)
    spec = yaml.safe_load(arms_file.read_text())
    files = ablation.profile_files(spec["profile"], spec.get("not_in_base", []))
    profile = set().union(*map(_leaves, files.values()))
    names = [arm["name"] for arm in spec["arms"]]
    assert len(names) == len(set(names)) and "base" not in names
    for arm in spec["arms"]:
        assert arm["hypothesis"] and arm["set"] and arm["model"] in ablation.MODELS
        for file, pairs in arm["set"].items():
            if file.startswith("conf/local/"):
                local = file.removeprefix("conf/local/")
                assert local in files, f"arm {arm['name']}: {file} is not one of the profile's files {sorted(files)}"
                for key in pairs:
                    assert key in _leaves(files[local]), f"arm {arm['name']}: the profile does not set {key}"
                continue
            base = _leaves(yaml.safe_load((PROJECT_ROOT / file).read_text()))
            for key in pairs:
                assert key in base, f"arm {arm['name']}: {key} is not in {file}"
                assert key not in profile, f"arm {arm['name']}: the {spec['profile']} profile sets {key} itself"


def test_the_ablation_profile_is_the_environments_with_absolute_paths(monkeypatch):
    ablation = _ablation(monkeypatch)
    files = ablation.profile_files("cifar10_cpu", ["fm.warmth.enabled", "fm.train.plateau_patience=3"])
    assert set(files) == {"parameters_data_source.yml", "parameters_cifar10_cpu.yml"}
    assert "warmth" not in files["parameters_cifar10_cpu.yml"]["fm"]  # the shipped warmth left out
    assert files["parameters_cifar10_cpu.yml"]["fm"]["train"]["plateau_patience"] == 3  # the shipped 5 set back
    assert files["parameters_data_source.yml"]["data_source"]["path"] == str(
        (PROJECT_ROOT / "../shared/datasets/cifar10-jpg.tar.gz").resolve())
    rest = files["parameters_cifar10_cpu.yml"]
    assert "data_source" not in rest and rest["fm"]["train"]["steps"] == 11200
    assert rest["embedder"]["pretrained_weights"] == str(  # conf/base's, anchored at the project root
        (PROJECT_ROOT / "../shared/pretrained/cifar10_resnet56/resnet56-4bfd9763.th").resolve())


def test_a_new_code_arm_takes_the_projects_code_and_keeps_the_ablations_own_lock_and_outputs(monkeypatch, tmp_path):
    """Both sides changed dvc.lock and a tracked output in different lines: merged line by line, the lock would
    pair the project's new code hashes with the ablation's old outputs (and DVC would skip those stages)."""
    ablation = _ablation(monkeypatch)
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "test")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "test@localhost")
    project, repo = tmp_path / "project", tmp_path / "ablation"

    def write(root, files):
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)

    def commit(root, message):
        ok(subprocess.run(["git", "add", "-A"], cwd=root, capture_output=True, text=True))
        ok(subprocess.run(["git", "commit", "-q", "-m", message], cwd=root, capture_output=True, text=True))

    lock = "code: a\n" + "".join(f"line {i}\n" for i in range(10)) + "out: a\n"
    project.mkdir()
    ok(subprocess.run(["git", "init", "-q"], cwd=project, capture_output=True, text=True))
    write(project, {"code.py": "old\n", "dvc.lock": lock, "data/metrics.json": lock})
    commit(project, "project")
    ok(subprocess.run(["git", "clone", "-q", str(project), str(repo)], capture_output=True, text=True))
    mine = lock.replace("out: a", "out: ablation")
    write(repo, {"dvc.lock": mine, "data/metrics.json": mine})
    commit(repo, "ablation: base arm")
    write(project, {"code.py": "new\n", "dvc.lock": lock.replace("code: a", "code: b").replace("out: a", "out: b"),
                    "data/metrics.json": lock.replace("code: a", "code: b")})
    commit(project, "new code")
    ablation.merge_project_code(repo, project)
    assert (repo / "code.py").read_text() == "new\n"
    assert (repo / "dvc.lock").read_text() == (repo / "data/metrics.json").read_text() == mine
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    assert ok(status) == ""  # committed: DVC experiments start from HEAD
    ablation.merge_project_code(repo, project)  # nothing new: a no-op
    assert (repo / "dvc.lock").read_text() == mine
    write(project, {"code.py": "newer\n", "dvc.lock": lock.replace("code: a", "code: c")})
    commit(project, "newer code")
    ablation.merge_project_code(repo, project)  # a second merge still keeps the base arm's lock
    assert (repo / "code.py").read_text() == "newer\n" and (repo / "dvc.lock").read_text() == mine


def test_the_ablation_verdict_compares_ledi_at_nfe_4_or_less_with_the_baselines_best(monkeypatch):
    ablation = _ablation(monkeypatch)

    def metrics(ledi_q, ledi_ci):
        return {"solvers": {"midpoint": {
            "quality": {"ledi": {"2": ledi_q, "8": 0.5}, "gaussian": {"4": 2.0, "8": 1.7, "16": 1.9}},
            "interval": {"ledi": {"2": ledi_ci, "8": [0.4, 0.6]},
                         "gaussian": {"4": [1.8, 2.2], "8": [1.5, 1.9], "16": [1.7, 2.1]}}}}}

    better = ablation.arm_summary(metrics(1.2, [1.0, 1.4]))
    assert better["ledi"][:3] == (1.2, "midpoint", 2)  # NFE 8's 0.5 does not count: only NFE <= 4
    assert better["baseline"][:3] == (1.7, "midpoint", 8) and better["verdict"] == "better"
    assert ablation.arm_summary(metrics(1.8, [1.6, 2.0]))["verdict"] == "within"
    assert ablation.arm_summary(metrics(2.3, [2.1, 2.5]))["verdict"] == "worse"


def test_the_ablation_lists_the_warmth_chosen_per_solver_and_reads_older_arms_single_table(monkeypatch):
    ablation = _ablation(monkeypatch)
    fd = {"1": {"0": 4.3, "1": 9.1}, "2": {"0": 3.3, "1": 2.9}}
    per_solver = ablation.warmth_lines({"warmth_by_solver": {"euler": [[1, 0.0], [2, 1.0]], "midpoint": [[2, 0.0]]},
                                        "warmth_fd": {"euler": fd, "midpoint": {"2": {"0": 2.5, "1": 2.8}}}})
    assert [line.split(" (FD")[0] for line in per_solver] == ["\nwarmth w chosen for euler",
                                                               "\nwarmth w chosen for midpoint"]
    assert per_solver[0].endswith("NFE 1: w = 0 (0: 4.3, 1: 9.1); NFE 2: w = 1 (0: 3.3, 1: 2.9)")
    older = ablation.warmth_lines({"warmth_by_nfe": [[1, 0.0], [2, 1.0]], "warmth_fd": fd})
    assert len(older) == 1 and "midpoint (euler at odd NFE)" in older[0] and older[0].endswith(per_solver[0][-60:])
    assert ablation.warmth_lines({"warmth_by_solver": {}}) == ablation.warmth_lines({}) == []


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke", "--out", str(tmp_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    ok(proc)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| DiT-T | 16 | off |" in md and md.count("the default chain on conf/tiny") == 2
    assert "Fashion-MNIST 32 px" in md and "CIFAR-10 32 px RGB" in md
    assert md.count("| at_reference_nfe (NFE 4") == 4 and md.count("| encoder codes of training images | 0 |") == 2
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["backbone"][0]["img_s"] > 0 and set(data["quality"]) == {"fmnist", "cifar10"}
    cifar = data["quality"]["cifar10"]["metrics"]
    assert cifar["embedder"]["embedder"] == "pretrained:cifar10_resnet56" and cifar["training"]["gaussian"]["steps"] == 4
    assert set(data["quality"]["fmnist"]["minutes"]) == {"preprocess", "train_embedder", "train_autoencoder",
                                                         "train_prior", "train_latent_flow", "train_fm", "evaluate"}
    # (tests/test_one_chain.py checks that these parts' chain trains what `kedro run` trains)
