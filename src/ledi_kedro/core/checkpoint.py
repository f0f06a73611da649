"""Checkpoints as safetensors + JSON; loading never unpickles anything.

A checkpoint is a directory::

    step_00001000/
        model.safetensors      weights
        ema.safetensors        EMA weights (optional)
        optimizer.safetensors  optimizer tensors (optional)
        extra.safetensors      other tensors: RNG states, loss history, data order (optional)
        state.json             step, configs, optimizer scalars; written last = "complete" marker

Directories are written under a temporary name and renamed into place, so a crash never leaves
a half-written checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .io import new_file_mode

STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or does not fit the model; the message names the file."""


class StaleCheckpointError(CheckpointError):
    """Checkpoints exist but belong to other settings or data (or went past the requested steps)."""


@dataclass
class Checkpoint:
    path: Path
    state: dict[str, Any]
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def state_dict_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Module weights without shared-storage duplicates (safetensors refuses aliases)."""
    out, seen = {}, {}
    for name, tensor in module.state_dict().items():
        key = (tensor.data_ptr(), tensor.shape, tensor.dtype) if tensor.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen[key] = name
        out[name] = tensor
    return _contiguous(out)


def write_checkpoint(path: str | Path, state: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write a checkpoint directory atomically (a good existing one is replaced only when complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for group, group_tensors in tensors.items():
            save_file(_contiguous(group_tensors), str(tmp / f"{group}.safetensors"))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        mode = new_file_mode()
        for f in tmp.iterdir():
            os.chmod(f, mode)  # safetensors writes 0600
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if path.exists():  # replace: move the old one aside first, delete it only after the rename
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_checkpoint(path: str | Path, groups: tuple[str, ...] | None = None) -> Checkpoint:
    """Read a checkpoint directory; ``groups`` limits which tensor files are loaded."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint ({STATE_FILE} is missing)")
    try:
        state = json.loads(state_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{state_file}: corrupt JSON ({exc})") from exc
    tensors = {}
    for file in sorted(path.glob("*.safetensors")):
        group = file.name.removesuffix(".safetensors")
        if groups is not None and group not in groups:
            continue
        try:
            tensors[group] = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: truncated or corrupt safetensors file ({exc})") from exc
    return Checkpoint(path, state, tensors)


def load_weights(module: nn.Module, weights: dict[str, torch.Tensor], source: str | Path) -> None:
    """Strictly load ``weights`` into ``module``; a mismatch names the file and the differing keys."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    # Aliased tensors were stored once (state_dict_tensors): accept their absence.
    aliases = {k for k in missing if any(expected[k].data_ptr() == expected[o].data_ptr()
                                         for o in weights if o in expected and expected[k].numel())}
    missing = [k for k in missing if k not in aliases]
    shapes = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(weights) & set(expected)) if weights[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) e.g. {unexpected[:3]}")
        if shapes:
            parts.append(f"shape mismatch: {'; '.join(shapes[:3])}")
        raise CheckpointError(f"{source}: weights do not fit {type(module).__name__} ({', '.join(parts)})")
    module.load_state_dict(weights, strict=False)


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _STEP_DIR.match(d.name)
        if m and d.is_dir() and (d / STATE_FILE).is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step_{step:08d}"


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            key = f"{pid}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value
            else:
                scalars[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(rest.get("scalars", {}).items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}
