"""Fingerprints of the code that defines what is trained, so that a checkpoint of old code is never
returned as a model of new code.

A module's fingerprint hashes its syntax tree with docstrings removed: editing a comment, a docstring
or the formatting keeps it, any change to what the code does changes it. :func:`training_code` collects
the project modules behind a model (the modules of every sub-module class), a loss function (its
module and the project modules that module uses directly) and the trainer itself.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import inspect
import os
import sys
import types
from functools import lru_cache
from typing import Any, Callable, Iterable

from torch import nn

PROJECT_PREFIX = "ledi_kedro"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _source_hash(path: str) -> str:
    stat = os.stat(path)
    return _cached_source_hash(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=None)
def _cached_source_hash(path: str, mtime_ns: int, size: int) -> str:  # the file's stat keys the cache
    with open(path, encoding="utf-8") as fh:
        tree = _strip_docstrings(ast.parse(fh.read()))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def module_fingerprint(module_name: str) -> str | None:
    """Hash of a module's code (None for modules without a Python source file)."""
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    try:
        path = inspect.getsourcefile(module) if module is not None else None
    except TypeError:  # built-in
        path = None
    return _source_hash(path) if path else None


def _function_hash(fn: Callable) -> str | None:
    """Hash of the top-level function that defines ``fn`` (a closure's factory, e.g. ``fm_objective``)."""
    top = getattr(fn, "__qualname__", "").split(".<locals>")[0].split(".")[0]
    factory = getattr(fn, "__globals__", {}).get(top, fn)
    try:
        source = inspect.getsource(factory)
    except (OSError, TypeError):
        return None
    tree = _strip_docstrings(ast.parse(inspect.cleandoc("\n" + source) if source[:1].isspace() else source))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _modules_of_model(model: nn.Module) -> set[str]:
    return {type(m).__module__ for m in model.modules() if type(m).__module__.startswith(PROJECT_PREFIX)}


def loss_dependencies(loss_fn: Callable) -> tuple[set[str], dict[str, str]]:
    """What a loss function's code rests on: (project modules it uses, {helper: hash} of the functions
    of its own module it calls, followed transitively). Networks it closes over (e.g. LeDiFlow's
    frozen prior) count with the modules of their classes."""
    modules: set[str] = set()
    helpers: dict[str, str] = {}
    home = getattr(loss_fn, "__module__", None)
    glb = getattr(loss_fn, "__globals__", {})
    top = getattr(loss_fn, "__qualname__", "").split(".<locals>")[0].split(".")[0]
    pending = [c for c in (getattr(loss_fn, "__code__", None), getattr(glb.get(top), "__code__", None)) if c]
    seen: set[str] = {top}
    while pending:
        for obj in _code_objects(pending.pop()):
            for name in obj.co_names:
                value = glb.get(name)
                mod = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
                if isinstance(value, types.FunctionType) and mod == home:
                    if name not in seen:  # a helper of the loss's own module: hash it and follow it
                        seen.add(name)
                        helpers[f"fn:{home}.{name}"] = _function_hash(value) or ""
                        pending.append(value.__code__)
                elif isinstance(mod, str) and mod.startswith(PROJECT_PREFIX) and mod != home:
                    modules.add(mod)
    for cell in getattr(loss_fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, nn.Module):
            modules |= _modules_of_model(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. a source holding the prior
            if type(value).__module__.startswith(PROJECT_PREFIX):
                modules.add(type(value).__module__)
            for f in dataclasses.fields(value):
                part = getattr(value, f.name)
                if isinstance(part, nn.Module):
                    modules |= _modules_of_model(part)
    return modules, helpers


def training_code(model: nn.Module | None = None, loss_fn: Callable | None = None,
                  extra_modules: Iterable[str] = ()) -> dict[str, str]:
    """{name: fingerprint} of the code that defines a training run: the trainer, the project modules
    of the model's classes, the loss function's own definition and the project modules it uses, and
    ``extra_modules``. Only what a model depends on is included, so that editing one loss retrains
    the models that use it and no others."""
    names = {__name__.rsplit(".", 1)[0] + ".trainer", *extra_modules}
    if model is not None:
        names |= _modules_of_model(model)
    out: dict[str, Any] = {}
    if loss_fn is not None:
        modules, helpers = loss_dependencies(loss_fn)
        names |= modules
        out.update(helpers)
        fn_hash = _function_hash(loss_fn)
        if fn_hash is not None:
            out[f"loss:{loss_fn.__module__}.{loss_fn.__qualname__}"] = fn_hash
    for name in sorted(names):
        fp = module_fingerprint(name)
        if fp is not None:
            out[name] = fp
    return out


def combined_fingerprint(code: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(code.items())).encode()).hexdigest()[:16]
