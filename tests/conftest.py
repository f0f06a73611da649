"""Shared fixtures. Tests never touch the network or model hubs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from ledi_kedro.conf_files import deep_merge, load_parameters  # none of these imports torch
from ledi_kedro.core.io import atomic_write_bytes
from ledi_kedro.core.threads import passive_waiting
from ledi_kedro.workspace import make_workspace

# Before torch is imported (libgomp reads it once): `make test` runs one pytest worker per core, and
# spinning OpenMP threads of one worker would starve the others (README, "Several runs on one machine").
passive_waiting()
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core: a second intra-op thread per worker only oversubscribes the cores (measured: the
    # suite's system time fell from 37 s to 29 s, its wall time by 10 s). Subprocesses inherit it; tests that
    # need more threads set their own.
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The order that keeps two workers busy on 2 cores while the tiny project trains in the background:
    the slow tests that do not need it, then those that do (by then it is ready; the one that waits for
    the second run last), then the quick tests, which fill in evenly at the end (those of a fixture built once
    for every worker, ``built_once``, after the rest but the first). `make test` hands out
    one test at a time (`--maxschedchunk 1`), so each worker takes the next in this order."""
    seen: set[str] = set()

    def group(item: pytest.Item) -> int:
        uses, slow = set(getattr(item, "fixturenames", ())), item.get_closest_marker("slow") is not None
        if RERUN in uses:
            return 2
        if slow:
            return 1 if TRAINED in uses else 0
        if BUILT_ONCE & uses:  # the first test of a shared build runs among the quick ones, the rest at the
            first = not BUILT_ONCE & uses & seen  # end, when the build is ready for the other worker too
            seen.update(BUILT_ONCE & uses)
            return 3 if first else 4
        return 3

    items.sort(key=group)  # stable: pytest's order within each group


def base_params(overrides: dict | None = None) -> dict:
    """Every parameter section as conf/base defines it, with ``overrides`` merged in: tests run the
    settings users run, changed only where a test says so."""
    return deep_merge(load_parameters(PROJECT_ROOT / "conf", env=None), overrides or {})


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def rgb_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


# name -> expected rejection reason (None: accepted)
BAD_FILES = {
    "train/cats/empty.png": "empty_file",
    "train/cats/truncated.jpg": "truncated_or_corrupt",
    "train/cats/notes.jpg": "not_an_image",
    "train/dogs/readme.txt": "not_an_image",
    "train/dogs/float.tif": "unsupported_mode",
    "train/dogs/tiny.png": "too_small",
    "train/dogs/anim.gif": "animated_or_multi_frame",
}


def write_image_tree(root: Path) -> dict[str, str | None]:
    """A small labelled train/test tree with one file for every bad-input case.

    Returns {relative path: expected rejection reason or None}.
    """
    files: dict[str, bytes] = {}
    for split, n in (("train", 3), ("test", 2)):
        for c, cls in enumerate(("cats", "dogs")):
            for i in range(n):
                files[f"{split}/{cls}/img{i}.png"] = encode(rgb_image(40, 48, seed=100 * c + i), "PNG")
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    files["train/cats/rgba.png"] = encode(rgba, "PNG")
    files["train/cats/cmyk.jpg"] = encode(rgb_image(20, 20).convert("CMYK"), "JPEG")
    files["train/cats/grey16.png"] = encode(Image.fromarray(np.full((20, 20), 65535, np.uint16)), "PNG")
    pal = rgb_image(20, 20).convert("P")
    files["train/dogs/palette.png"] = encode(pal, "PNG")
    files["train/dogs/webp.webp"] = encode(rgb_image(24, 24), "WEBP")
    files["train/dogs/bmp.bmp"] = encode(rgb_image(24, 24), "BMP")
    jpeg = encode(rgb_image(64, 64, seed=7), "JPEG", quality=90)
    files["train/cats/truncated.jpg"] = jpeg[: len(jpeg) // 2]
    files["train/cats/empty.png"] = b""
    files["train/cats/notes.jpg"] = b"this is not a jpeg at all, just text"
    files["train/dogs/readme.txt"] = b"labels are the folder names"
    files["train/dogs/float.tif"] = encode(Image.fromarray(np.ones((20, 20), np.float32)), "TIFF")
    files["train/dogs/tiny.png"] = encode(rgb_image(4, 4), "PNG")
    frames = [rgb_image(16, 16, seed=s) for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    files["train/dogs/anim.gif"] = buf.getvalue()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: BAD_FILES.get(rel) for rel in files}


@pytest.fixture
def image_tree(tmp_path: Path) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path / "images"
    expected = write_image_tree(root)
    return root, expected


def make_archive(folder: Path, target: Path, wrap: str | None = None) -> Path:
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder).as_posix()
                tar.add(path, arcname=f"{wrap}/{rel}" if wrap else rel)
    return target


@pytest.fixture
def tiny_fashion_mnist(tmp_path: Path) -> Path:
    """Four tiny IDX files in Fashion-MNIST's layout: 12 train and 5 test 28x28 images."""
    return make_tiny_fashion_mnist(tmp_path / "fmnist")


def make_tiny_fashion_mnist(root: Path) -> Path:
    from ledi_kedro.core.data.idx import write_random_fashion_mnist

    root.mkdir(parents=True)  # a fresh folder: runs that must match read the same one
    return write_random_fashion_mnist(root, n_train=12, n_test=5, seed=0)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of the project's configuration in a temp dir, for CLI runs that write data/."""
    return make_workspace(tmp_path / "project")




def script_env() -> dict[str, str]:
    """This process's environment with this interpreter's scripts (dvc, kedro, ledi) first on the PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's scripts (dvc, kedro, ledi) first on the PATH."""
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=script_env())


def ok(proc: subprocess.CompletedProcess) -> str:
    """The output of a command that must succeed (its tail is the failure message otherwise)."""
    assert proc.returncode == 0, (proc.stdout or "")[-3000:] + (proc.stderr or "")[-3000:]
    return (proc.stdout or "") + (proc.stderr or "")


def make_dvc_project(dst: Path, fmnist: Path) -> Path:
    """A git + DVC copy of the project (code included, so that DVC hashes it) on tiny settings in conf/local."""
    project = make_workspace(dst)
    shutil.rmtree(project / "src")
    shutil.copytree(PROJECT_ROOT / "src" / "ledi_kedro", project / "src" / "ledi_kedro",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, project / name)
    shutil.copytree(PROJECT_ROOT / "tuning", project / "tuning")
    for sub in ("01_raw", "02_intermediate", "05_model_input", "06_models", "07_model_output", "08_reporting"):
        (project / "data" / sub).mkdir(parents=True, exist_ok=True)
    (project / "conf/local/parameters_data_source.yml").write_text(
        f"data_source: {{kind: fashion_mnist, path: {fmnist}}}\n")
    shutil.copy(PROJECT_ROOT / "conf/tiny/parameters.yml", project / "conf/local/parameters_tiny.yml")
    (project / ".gitignore").write_text("data/06_models/checkpoints/\n__pycache__/\nbuild/\n.viz/\nnotebooks/\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"], ["git", "config", "user.name", "t"],
                ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                ["dvc", "config", "core.check_update", "false"]):
        proc = run(cmd, project)
        ok(proc)
    return project


TRAINED, RERUN = "tiny_trained_project", "tiny_rerun_project"
BUILT_ONCE = {"evaluated"}  # fixtures that use built_once


class TinyProjectBuilds:
    """The tiny project's default chain, trained once per test session (one `kedro run`) and shared by
    every pytest-xdist worker:

    - ``tiny_trained_project``: what the tests that read, continue or version trained models use.
    - ``tiny_rerun_project``: a second, independent run from scratch of the same code, settings and data
      in another directory; the round-trip test checks that both are byte-identical. It runs at lower
      CPU priority, so that the first one, which most tests wait for, comes first.

    A run starts only when a selected test needs it. Why each piece is there (together they keep the suite
    within 3 minutes on 2 cores, against ~5 when every test built its own project):

    - the claim file ``root/claim`` (created with O_EXCL): xdist workers are separate processes, and exactly
      one of them must start the runs;
    - a background thread: the claiming worker goes on with other tests while the runs (subprocesses)
      train, instead of idling for a minute;
    - ``nice 10`` for the rerun: it is needed by one test only, at the end, so the run most tests wait for
      gets the CPU first;
    - ``root/<name>.rc``, written atomically when a run has ended: how the other worker learns that the
      run finished and whether it succeeded (it cannot wait on another process's child);
    - ``finish``: the claiming worker must not kill a run another worker still waits for at teardown.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._procs: list[subprocess.Popen] = []
        self._thread: threading.Thread | None = None

    def project(self, name: str) -> Path:
        return self.root / name

    def start(self, names: list[str]) -> None:
        try:
            os.close(os.open(self.root / "claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another worker runs them
        self._thread = threading.Thread(target=self._build, args=(names,), name="tiny-project-builds", daemon=True)
        self._thread.start()

    def _build(self, names: list[str]) -> None:
        try:
            fmnist = make_tiny_fashion_mnist(self.root / "fmnist")  # one data folder: the runs must match
            for name in names:
                make_dvc_project(self.project(name), fmnist)
                with (self.root / f"{name}.log").open("w") as log:
                    self._procs.append(subprocess.Popen(
                        ["kedro", "run"], cwd=self.project(name), stdout=log, stderr=subprocess.STDOUT,
                        env=script_env(), preexec_fn=None if name == TRAINED else lambda: os.nice(10)))
            for name, proc in zip(names, self._procs):
                atomic_write_bytes(self.root / f"{name}.rc", str(proc.wait(timeout=900)).encode())
        except BaseException as exc:  # noqa: BLE001 - recorded for the waiting tests, not lost in a thread
            with (self.root / "setup.log").open("a") as log:
                log.write(f"build failed: {exc!r}\n")
        finally:
            for name in names:  # a run that never ended counts as failed
                if not (self.root / f"{name}.rc").exists():
                    atomic_write_bytes(self.root / f"{name}.rc", b"1")

    def finish(self, abort: bool) -> None:
        """At the end of this worker's session: let the runs end (a test on another worker may still wait
        for them), or kill them when the session stops early."""
        if abort:
            for proc in self._procs:
                if proc.poll() is None:
                    proc.kill()
        if self._thread is not None:
            self._thread.join()  # it records each run's exit code

    def wait(self, name: str, timeout: float = 900) -> Path:
        rc, deadline = self.root / f"{name}.rc", time.monotonic() + timeout
        while not rc.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"{name} was not built within {timeout:.0f} s; logs in {self.root}")
            time.sleep(0.5)
        if rc.read_text() != "0":
            logs = [self.root / f"{name}.log", self.root / "setup.log"]
            tail = "".join(f.read_text()[-6000:] for f in logs if f.exists())
            pytest.fail(f"`kedro run` of {name} failed:\n{tail}")
        return self.project(name)


def shared_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder every pytest-xdist worker of this run sees (each worker's own base lies inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(request.config, "workerinput") else base


def built_once(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], dict]) -> dict:
    """``build(folder)``, run by the first worker that asks; the others wait for it and read its result
    (pickled beside it by this session, for this session only). A module-scoped fixture would run once per
    worker that picks up one of its tests."""
    import pickle

    from filelock import FileLock

    root = shared_root(request, tmp_path_factory) / name
    root.mkdir(exist_ok=True)
    with FileLock(root / "lock"):
        if not (root / "result.pkl").exists():
            atomic_write_bytes(root / "result.pkl", pickle.dumps(build(root / "work")))
        return pickle.loads((root / "result.pkl").read_bytes())


@pytest.fixture(scope="session")
def _tiny_project_builds(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    root = shared_root(request, tmp_path_factory) / "tiny-projects"  # built there, once
    root.mkdir(exist_ok=True)
    builds = TinyProjectBuilds(root)
    yield builds
    builds.finish(abort=bool(request.session.shouldstop or request.session.shouldfail))


@pytest.fixture(scope="session", autouse=True)
def _start_tiny_project_builds(request: pytest.FixtureRequest) -> None:
    """Starts the runs as the session begins, those that a selected test needs."""
    needed = [name for name in (TRAINED, RERUN)
              if any(name in getattr(item, "fixturenames", ()) for item in request.session.items)]
    if needed:
        request.getfixturevalue("_tiny_project_builds").start(needed)


@pytest.fixture(scope="session")
def tiny_trained_project(_tiny_project_builds: TinyProjectBuilds) -> Path:
    """A git + DVC copy of the project on tiny settings whose default chain ran once (`kedro run`):
    trained models, checkpoints and reports. Shared by every test and worker, so read-only: tests that
    train or write take a `tiny_trained_copy` or a `tiny_dvc_copy`."""
    return _tiny_project_builds.wait(TRAINED)


@pytest.fixture(scope="session")
def tiny_rerun_project(_tiny_project_builds: TinyProjectBuilds) -> Path:
    """A second run from scratch of the tiny project's chain: same code, settings and data, another
    directory and checkpoints. Read-only."""
    return _tiny_project_builds.wait(RERUN)


def copy_project(src: Path, dst: Path) -> Path:
    """A private copy of a trained tiny project: git history, DVC cache, outputs and checkpoints."""
    ignore = shutil.ignore_patterns("build", "notebooks", ".viz", "tmp")  # what other tests write there
    return Path(shutil.copytree(src, dst, symlinks=True, ignore=ignore))


@pytest.fixture
def tiny_trained_copy(tiny_trained_project: Path, tmp_path: Path) -> Path:
    return copy_project(tiny_trained_project, tmp_path / "project")


@pytest.fixture
def tiny_dvc_copy(tiny_trained_copy: Path) -> Path:
    """The trained copy with its outputs recorded as the results of dvc.yaml's stages (`dvc commit`, as
    after running Kedro by hand), committed to git: what `dvc repro` leaves, without running each stage
    in a process of its own again (tests/test_dvc_stages.py checks the stages; test_dvc_experiments.py
    runs one through DVC)."""
    for cmd in (["dvc", "commit", "--force", "dvc.yaml"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "tiny run"]):
        ok(run(cmd, tiny_trained_copy))
    return tiny_trained_copy
