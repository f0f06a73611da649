"""What each DVC stage must declare, derived from the Kedro pipeline it runs, and a check of dvc.yaml.

A stage ``NAME`` runs ``kedro run --pipelines=NAME``; a pipeline whose nodes all belong to namespaces (``train_fm``:
``ledi`` and ``gaussian``) has one stage per namespace, ``NAME_NS`` running ``kedro run --pipelines=NAME
--namespaces=NS``, so that each reruns only when what it reads changes. Such a run reads:

* the files of the datasets the pipeline takes in (the catalog, patterns resolved) -> ``deps``;
* the parameter sections its nodes take (``params:X`` -> section ``X``; ``parameters`` -> all), and
  ``run`` in every stage (the seeding hook reads ``run.seed``) -> ``params`` (with the conf/base file
  that defines each section);
* the project code its nodes, its pipeline module and the project's settings and hooks import,
  followed transitively -> ``deps`` (a file, or a folder holding it);
* the catalog (``conf/base/catalog.yml``), the local overrides (``conf/local``) and the data
  source of ``preprocess`` -> ``deps``;

and writes the files of the datasets it produces -> ``outs``, ``metrics`` or ``plots``.

``python -m ledi_kedro.dvc_deps`` prints every stage's derived requirements and what ``dvc.yaml``
(and ``tuning/dvc.yaml``) miss; the test suite fails on anything missing.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

PACKAGE = "ledi_kedro"
ALWAYS_READ_SECTIONS = ("run",)  # the seed and thread hooks read run: in every run
ALWAYS_READ_FILES = ("conf/base/catalog.yml", "conf/local")
DVC_FILES = ("dvc.yaml", "tuning/dvc.yaml")
# The data source of the default run lives in this tracked conf/local file, which dvc.yaml reads (`vars`).
SOURCE_FILE = "conf/local/parameters_data_source.yml"
SOURCE_DEP = "${data_source.path}"


@dataclass
class Requirements:
    deps: set[str] = field(default_factory=set)  # files (or conf/local) the stage reads
    params: dict[str, str] = field(default_factory=dict)  # section -> conf/base file defining it
    outs: set[str] = field(default_factory=set)  # files the stage writes
    command: str = ""  # the options of `kedro run` the stage must call


def _module_file(module: str, src: Path) -> Path | None:
    base = src / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Project modules imported anywhere in ``path`` (absolute and relative imports, nested ones too)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def project_modules(roots: Iterable[str], src: Path) -> set[Path]:
    """Source files of ``roots`` and every project module they import, transitively (with parent packages)."""
    files: set[Path] = set()
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, src)
        if path is None:
            continue
        files.add(path)
        parts = module.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a/__init__, a/b/__init__
        pending += sorted(_imports(path, module))
    return files


def _dataset_path(catalog: Any, name: str) -> str | None:
    if name.startswith("params:") or name == "parameters":
        return None
    dataset = catalog.get(name)
    path = dataset._describe().get("filepath") if dataset is not None else None  # noqa: SLF001 (kedro's own API)
    return str(path) if path else None


def _param_files(conf: Path) -> dict[str, str]:
    """Top-level parameter section -> the file DVC should read it from: conf/base, except the data
    source, which the default run takes from the tracked conf/local file."""
    out = {}
    for path in sorted((conf / "base").glob("parameters*.yml")):
        for section in (yaml.safe_load(path.read_text()) or {}):
            out[section] = path.relative_to(conf.parent).as_posix()
    out["data_source"] = SOURCE_FILE
    return out


def derive(project: Path = Path(".")) -> dict[str, Requirements]:
    """Every registered pipeline's requirements (``__default__`` excluded)."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import pipelines, settings
    from kedro.framework.startup import bootstrap_project
    from kedro.io import DataCatalog

    project = project.resolve()
    bootstrap_project(project)
    loader = OmegaConfigLoader(conf_source=str(project / "conf"), **settings.CONFIG_LOADER_ARGS)
    catalog = DataCatalog.from_config(loader["catalog"])
    sections = _param_files(project / "conf")
    src = project / "src"
    out = {}
    for name, pipe in sorted(pipelines.items()):
        if name == "__default__":
            continue
        namespaces = {n.namespace for n in pipe.nodes}
        if None in namespaces or len(namespaces) < 2:
            out[name] = _requirements(name, pipe, catalog, sections, src, project)
        else:
            for ns in sorted(namespaces):
                out[f"{name}_{ns}"] = _requirements(name, pipe.only_nodes_with_namespaces([ns]), catalog, sections,
                                                    src, project, f"--pipelines={name} --namespaces={ns}")
    return out


def _requirements(name: str, pipe: Any, catalog: Any, sections: dict[str, str], src: Path, project: Path,
                  command: str | None = None) -> Requirements:
    shared = {f"{PACKAGE}.settings", f"{PACKAGE}.pipeline_registry"}
    req = Requirements(deps=set(ALWAYS_READ_FILES), command=command or f"--pipelines={name}")
    for ds in pipe.inputs():
        if (path := _dataset_path(catalog, ds)) is not None:
            req.deps.add(path)
    for ds in pipe.all_outputs():  # intermediate datasets are written to disk too
        if (path := _dataset_path(catalog, ds)) is not None:
            req.outs.add(path)
    if name == "preprocess":
        req.deps.add(SOURCE_DEP)
    used = set(ALWAYS_READ_SECTIONS)
    for ds in pipe.inputs():
        if ds == "parameters":
            used |= set(sections)
        elif ds.startswith("params:"):
            used.add(ds.removeprefix("params:").split(".")[0])
    req.params = {s: sections.get(s, "?") for s in sorted(used)}
    roots = shared | {f"{PACKAGE}.pipelines.{name}"} | {n.func.__module__ for n in pipe.nodes}
    for ds in pipe.datasets():  # the catalog names the dataset classes that read and write the files
        dataset = None if ds.startswith("params:") or ds == "parameters" else catalog.get(ds)
        if dataset is not None and type(dataset).__module__.startswith(PACKAGE):
            roots.add(type(dataset).__module__)
    req.deps |= {p.relative_to(project).as_posix() for p in project_modules(roots, src)}
    return req


def _covered(path: str, declared: set[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared)


def _stage_entries(stage: dict) -> tuple[set[str], dict[str, set[str]], set[str]]:
    deps = {str(d) for d in stage.get("deps", [])}
    params: dict[str, set[str]] = {}
    for entry in stage.get("params", []):
        if isinstance(entry, dict):
            for file, keys in entry.items():
                for key in keys or []:
                    params.setdefault(str(key).split(".")[0], set()).add(file)
        else:
            params.setdefault(str(entry).split(".")[0], set()).add("params.yaml")
    outs = set()
    for group in ("outs", "metrics", "plots"):
        for entry in stage.get(group, []):
            outs |= set(entry) if isinstance(entry, dict) else {str(entry)}
    return deps, params, outs


def check(project: Path = Path("."), required: dict[str, Requirements] | None = None) -> list[str]:
    """What the DVC files miss, one line each (empty when every stage declares what it reads and writes).
    Templated entries (``${...}``) count as declared."""
    required = required if required is not None else derive(project)
    problems = []
    stages: dict[str, dict] = {}
    for name in DVC_FILES:
        path = project / name
        if path.is_file():
            stages.update((yaml.safe_load(path.read_text()) or {}).get("stages", {}))
    for name, req in required.items():
        stage = stages.get(name)
        if stage is None:
            problems.append(f"{name}: no DVC stage runs this pipeline")
            continue
        if not all(part in str(stage.get("cmd", "")).split() for part in req.command.split()):
            problems.append(f"{name}: its command does not run `kedro run {req.command}`")
        deps, params, outs = _stage_entries(stage)
        problems += [f"{name}: deps miss {d}" for d in sorted(req.deps) if not _covered(d, deps)]
        problems += [f"{name}: params miss {file}: {section}" for section, file in req.params.items()
                     if file not in params.get(section, set())]
        problems += [f"{name}: outs miss {o}" for o in sorted(req.outs) if o not in outs]
    return problems


def compact(paths: set[str]) -> list[str]:
    """Paths with whole package folders (core/, datasets/, pipelines/NAME/) folded into the folder."""
    folders = {f"src/{PACKAGE}/core", f"src/{PACKAGE}/datasets"}
    out = set()
    for p in paths:
        parts = p.split("/")
        if len(parts) > 4 and parts[:3] == ["src", PACKAGE, "pipelines"]:
            out.add("/".join(parts[:4]))
        else:
            out.add(next((f for f in folders if p.startswith(f + "/")), p))
    return sorted(out)


def main() -> int:
    required = derive(Path("."))
    for name, req in required.items():
        print(f"{name} (kedro run {req.command}):\n  deps: {compact(req.deps)}\n  params: {req.params}\n"
              f"  outs: {sorted(req.outs)}")
    problems = check(Path("."), required)
    print("\n".join(["", "dvc.yaml is complete." if not problems else "Missing from the DVC files:", *problems]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
