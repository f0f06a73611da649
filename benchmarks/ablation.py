"""An ablation (a selection of settings) as DVC experiments: one arm per `dvc exp run`, on a profile, through the
project's own pipelines and DVC stages (no second copy of the chain), so that `dvc exp show` in the ablation's
repository is the ablation table and anyone can rerun an arm. Every arm is scored by the ``select`` pipeline on the
validation split: a selection never reads the test split (the final evaluation's alone).

    python benchmarks/ablation.py                   # set up, run the base arm and every missing arm, print the table
    python benchmarks/ablation.py --arms s2 s3      # only these arms (and the base)
    python benchmarks/ablation.py --report-only     # the table of the arms run so far
    python benchmarks/ablation.py --arms-file benchmarks/baseline_selection.yml   # another ablation

The arms and their hypotheses are in the arms file (default ``benchmarks/cifar10_ablation.yml``); each arm says which
model its settings are for (``model``: ledi, baseline or both), and the table counts the settings each model was
given. The repository (default ``benchmarks/results/<arms file's name>``, git-ignored) is a git clone of this
project's HEAD with the profile's settings in ``conf/local/`` (committed there, so that DVC sees them and experiments
copy them), paths made absolute. The base arm runs the training pipelines side by side as the CPU benchmark does,
then ``select`` (`kedro run`, then `dvc commit` records the outputs); each other arm is
`dvc exp run --temp -S FILE:KEY=VALUE tuning/dvc.yaml:select`, which reruns only the stages whose parameters changed
(an arm on the prior reruns the prior, the latent sampler, LeDiFlow and the selection scoring; the judge and the
baseline come from DVC's cache). The code is the clone's (``PYTHONPATH``), so editing this checkout while the arms
run does not change them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ledi_kedro.conf_files import load_parameters
from ledi_kedro.core.io import atomic_write_bytes
from ledi_kedro.workspace import PROJECT_ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_benchmark import ROOT_RELATIVE, run_pipelines  # noqa: E402  (a sibling script, not a package)

ARMS_FILE = PROJECT_ROOT / "benchmarks" / "cifar10_ablation.yml"
METRICS = "data/08_reporting/validation_metrics.json"  # the select pipeline's: the scoring on the validation split
SELECT = "tuning/dvc.yaml:select"
MODELS = ("ledi", "baseline", "both")
NFES = ("1", "2", "4", "8", "16", "64")


def sh(cmd: list[str], cwd: Path, log: Path | None = None, echo: bool = True) -> str:
    """Run ``cmd`` in ``cwd`` (printed when ``echo``); its output (to ``log`` when given); exits with the
    command's tail on failure."""
    if echo:
        print(f"$ (cd {cwd} && {' '.join(cmd)})", flush=True)
    if log is None:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"ablation: {' '.join(cmd)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done.stdout
    with log.open("w") as out:
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc:
        sys.exit(f"ablation: {' '.join(cmd)} failed (exit {rc}); the end of {log}:\n{log.read_text()[-3000:]}")
    return ""


def profile_files(profile: str, leave_out: list[str] = ()) -> dict[str, dict]:
    """conf/local's files for ``profile``: its data source (the file dvc.yaml reads) and the rest of its
    settings, with the project's relative paths made absolute and the dotted keys ``leave_out`` left out (they
    fall back to conf/base), or, written ``KEY=VALUE``, set back to the value the base arm ran with."""
    conf = yaml.safe_load((PROJECT_ROOT / "conf" / profile / "parameters.yml").read_text())
    for entry in leave_out:
        key, _, value = entry.partition("=")
        *path, leaf = key.split(".")
        sections = [conf]
        for part in path:
            sections.append(sections[-1].get(part, {}))
        if leaf not in sections[-1]:
            sys.exit(f"ablation: {key} (not_in_base) is not set in conf/{profile}/parameters.yml")
        if value:
            sections[-1][leaf] = yaml.safe_load(value)
            continue
        del sections[-1][leaf]
        for parent, part, section in reversed(list(zip(sections, path, sections[1:]))):
            if not section:  # a section left empty goes too (conf/base's applies)
                del parent[part]
    merged = load_parameters(PROJECT_ROOT / "conf", profile)  # a relative default may come from conf/base
    for section, key in ROOT_RELATIVE:
        value = merged.get(section, {}).get(key)
        if value and not Path(value).expanduser().is_absolute():
            conf.setdefault(section, {})[key] = str((PROJECT_ROOT / value).resolve())
    source = conf.pop("data_source", None) or merged["data_source"]  # a profile without one reads conf/base's
    return {"parameters_data_source.yml": {"data_source": source}, f"parameters_{profile}.yml": conf}


def set_up(repo: Path, profile: str, leave_out: list[str]) -> None:
    """Clone this project's HEAD into ``repo`` and commit the profile's settings in its conf/local."""
    sh(["git", "clone", "--quiet", str(PROJECT_ROOT), str(repo)], PROJECT_ROOT)
    sh(["git", "config", "user.name", "ledi_kedro ablation"], repo)
    sh(["git", "config", "user.email", "ablation@localhost"], repo)
    for name, content in profile_files(profile, leave_out).items():
        head = f"# the {profile} profile (conf/{profile}), written by benchmarks/ablation.py\n"
        text = head + yaml.safe_dump(content)
        (repo / "conf" / "local" / name).write_text(text)
    with (repo / ".git" / "info" / "exclude").open("a") as exclude:  # the runs' logs and the table stay out of git
        exclude.write("/*.log\n/results.md\n")
    sh(["git", "add", "-f", "conf/local"], repo)
    sh(["git", "commit", "-q", "-m", f"ablation: the {profile} profile in conf/local"], repo)


BASE_SUBJECT = "ablation: base arm"


def base_rev(repo: Path) -> str | None:
    """The base arm's commit in ``repo`` (None before it ran)."""
    return sh(["git", "log", "--format=%H", "-n", "1", f"--grep=^{BASE_SUBJECT}"], repo, echo=False).strip() or None


def run_base(repo: Path) -> None:
    """The base arm: the training pipelines side by side (as the CPU benchmark runs them) and ``select``, then
    `dvc commit` of what ran (the final evaluation does not run in a selection)."""
    minutes = run_pipelines(repo, "local", None, side_by_side=os.cpu_count() >= 2, scoring="--pipelines=select")
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    trained = [name for name in stages if name not in ("evaluate", "report")]
    sh(["dvc", "commit", "-f", "-q", *trained, SELECT], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-q", "-m", f"{BASE_SUBJECT} ({minutes:.1f} min)"], repo)


def experiment_refs(repo: Path) -> dict[str, str]:
    """Experiment name -> its git ref."""
    out = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo, echo=False)
    return {ref.rsplit("/", 1)[-1]: ref for ref in out.split() if ref.count("/") >= 4}


def merge_project_code(repo: Path, project: Path) -> None:
    """Merge ``project``'s HEAD into ``repo`` for an arm that needs newer code. The code comes from the project;
    dvc.lock and the tracked outputs under data/ are the base arm's (what `dvc commit` recorded on the profile;
    the project's are its default chain's), whole: a lock merged line by line would pair the new code's hashes
    with outputs that older code made, and DVC would skip their stages instead of rerunning them."""
    own = base_rev(repo) or sh(["git", "rev-parse", "HEAD"], repo, echo=False).strip()
    sh(["git", "pull", "-q", "--no-rebase", "--no-edit", "-X", "ours", str(project), "HEAD"], repo)
    sh(["git", "checkout", own, "--", "dvc.lock", "data"], repo)
    if sh(["git", "status", "--porcelain", "--", "dvc.lock", "data"], repo, echo=False).strip():
        sh(["git", "commit", "-q", "--amend", "--no-edit"], repo)


def run_arm(repo: Path, arm: dict) -> float:
    """`dvc exp run --temp -n NAME -S ...` for one arm (after merging this project's HEAD into ``repo`` when the
    arm needs newer code); minutes."""
    if arm.get("new_code"):
        merge_project_code(repo, PROJECT_ROOT)
    sets = [f"{file}:{key}={json.dumps(value)}"  # YAML's spelling: true, 0.1
            for file, pairs in arm["set"].items() for key, value in pairs.items()]
    start = time.perf_counter()
    sh(["dvc", "exp", "run", "--temp", "-n", arm["name"], *[a for s in sets for a in ("-S", s)], SELECT], repo,
       log=repo / "logs" / f"{arm['name']}.log")
    return (time.perf_counter() - start) / 60


def fmt(value: float | None, interval: list[float] | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" + (f" ({interval[0]:.3g}-{interval[1]:.3g})" if interval else "")


def arm_summary(metrics: dict) -> dict:
    """The figures of one arm: LeDiFlow's best point at NFE <= 4 and the baseline's best point (with their
    intervals), and whether the first lies within the second's interval or below it."""
    points = {m: [] for m in ("ledi", "gaussian")}
    for solver, entry in metrics["solvers"].items():
        for model in points:
            for nfe, q in entry["quality"][model].items():
                points[model].append((q, solver, int(nfe), entry["interval"][model][nfe]))
    ledi = min(p for p in points["ledi"] if p[2] <= 4)
    base = min(points["gaussian"])
    verdict = "better" if ledi[3][1] < base[0] else "within" if ledi[0] <= base[3][1] else "worse"
    return {"ledi": ledi, "baseline": base, "verdict": verdict}


def warmth_lines(trained: dict) -> list[str]:
    """A warm arm's choice: which w each solver and NFE got, and the FD of each w tried (on held-out images outside
    the reference); an arm run before the choice was per solver has one table, ``warmth_by_nfe`` (midpoint where
    it spends the NFE, else euler). No lines for an arm without the warmth."""
    if trained.get("warmth_by_solver"):
        tables = {s: (rows, trained["warmth_fd"][s]) for s, rows in trained["warmth_by_solver"].items()}
    elif trained.get("warmth_by_nfe"):
        tables = {"midpoint (euler at odd NFE)": (trained["warmth_by_nfe"], trained["warmth_fd"])}
    else:
        return []
    return [f"\nwarmth w chosen for {solver} (FD of each w tried, on held-out images outside the reference): "
            + "; ".join(f"NFE {n}: w = {w:g} (" + ", ".join(f"{k}: {v:.3g}" for k, v in fd[str(n)].items()) + ")"
                        for n, w in rows)
            for solver, (rows, fd) in tables.items()]


PAIRED = {"noise": "within the noise", "ledi": "LeDiFlow better", "gaussian": "baseline better",
          "unreliable": "unreliable evaluation"}


def table(repo: Path, arms: list[dict], not_in_base: list[str]) -> str:
    refs = {"base": base_rev(repo), **experiment_refs(repo)}
    left_out, set_back = [k for k in not_in_base if "=" not in k], [k for k in not_in_base if "=" in k]
    base = ("the profile" + (f" without {', '.join(left_out)} (conf/base's)" if left_out else "")
            + (f" with {', '.join(set_back)}" if set_back else ""))
    hypotheses = {"base": base, **{a["name"]: a["hypothesis"] for a in arms}}
    ran = [a for a in arms if refs.get(a["name"])]
    given = {m: sum(a.get("model") in (m, "both") for a in ran) for m in ("ledi", "baseline")}
    lines_head = [f"Settings tried besides the base, so far: LeDiFlow {given['ledi']}, the baseline {given['baseline']} "
                  f"({len(ran)} of {len(arms)} arms run; scored on the validation split).", ""]
    lines = ["| arm | LeDiFlow best at NFE <= 4 | held-out codes @ 2 | baseline's best | LeDiFlow at NFE <= 4 vs "
             "the baseline's best | paired difference, against the baseline at the same solver and NFE | "
             "stops (LeDiFlow / baseline) | the baseline's last quarter of training | hypothesis |",
             "|" + "---|" * 9]
    grids = []
    for name, hypothesis in hypotheses.items():
        if not refs.get(name):
            lines.append(f"| {name} | not run | | | | | | | {hypothesis} |")
            continue
        m = json.loads(sh(["git", "show", f"{refs[name]}:{METRICS}"], repo, echo=False))
        s, t, ls = arm_summary(m), m["training"], m["latent_sampler"]
        paired = m["solvers"][s["ledi"][1]]["better"][str(s["ledi"][2])]  # ledi | gaussian | noise
        stops = " / ".join(f"{t[k]['steps']} ({'plateau' if t[k]['stop_reason'] != 'step_cap' else 'cap'})"
                           for k in ("ledi", "gaussian"))
        lines.append(f"| {name} | {s['ledi'][1]} @ {s['ledi'][2]}: {fmt(s['ledi'][0], s['ledi'][3])} | "
                     f"{fmt(ls.get('held_out_codes_quality'), ls.get('held_out_codes_interval'))} | {s['baseline'][1]} @ "
                     f"{s['baseline'][2]}: {fmt(s['baseline'][0], s['baseline'][3])} | {s['verdict']} | "
                     f"{PAIRED[paired]} | {stops} | {t['gaussian'].get('last_quarter', {}).get('text', '-')} | "
                     f"{hypothesis} |")
        grids += [f"\n{name}: FD (95% interval) by NFE", "| solver | model | " + " | ".join(NFES) + " |",
                  "|" + "---|" * (len(NFES) + 2)]
        for solver, entry in m["solvers"].items():
            for model, label in (("ledi", "LeDiFlow"), ("gaussian", "baseline")):
                q, ci = entry["quality"][model], entry["interval"][model]
                grids.append(f"| {solver} | {label} | " + " | ".join(fmt(q.get(n), ci.get(n)) for n in NFES) + " |")
        grids += warmth_lines(t["ledi"])
    return "\n".join(lines_head + lines + grids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms-file", type=Path, default=ARMS_FILE, help="the arms (default: the CIFAR-10 ablation's)")
    ap.add_argument("--repo", type=Path, default=None, help="default: benchmarks/results/<arms file's name>")
    ap.add_argument("--arms", nargs="*", default=None, help="arm names (default: every arm in the arms file)")
    ap.add_argument("--report-only", action="store_true", help="only print the table of the arms run so far")
    args = ap.parse_args()
    spec = yaml.safe_load(args.arms_file.read_text())
    arms = [a for a in spec["arms"] if args.arms is None or a["name"] in args.arms]
    unknown = set(args.arms or []) - {a["name"] for a in spec["arms"]}
    if unknown:
        sys.exit(f"ablation: no arm named {', '.join(sorted(unknown))} in {args.arms_file}")
    if bad := [a["name"] for a in spec["arms"] if a.get("model") not in MODELS]:
        sys.exit(f"ablation: arms {bad} in {args.arms_file} do not say which model they are for (model: "
                 f"{' | '.join(MODELS)})")
    repo = (args.repo or PROJECT_ROOT / "benchmarks" / "results" / args.arms_file.stem).resolve()
    os.environ.update(PYTHONPATH=str(repo / "src"), KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1",
                      PATH=f"{PROJECT_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
    if not args.report_only:
        if not repo.exists():
            set_up(repo, spec["profile"], spec.get("not_in_base", []))
        (repo / "logs").mkdir(exist_ok=True)
        if base_rev(repo) is None:
            run_base(repo)
        for arm in arms:
            if arm["name"] not in experiment_refs(repo):
                print(f"ablation: arm {arm['name']} took {run_arm(repo, arm):.1f} min", flush=True)
    text = (f"{args.arms_file.name}: the {spec['profile']} profile in {repo}\n\n"
            + table(repo, arms, spec.get("not_in_base", [])))
    print(text)
    atomic_write_bytes(repo / "results.md", (text + "\n").encode())


if __name__ == "__main__":
    main()
