"""Use trained models from your own code::

    from ledi_kedro import load_generator
    generator = load_generator("data/06_models/fm_ledi", device="cuda")
    images = generator.sample(64, nfe=4, solver="midpoint", seed=0).images   # (64, C, H, W) in [-1, 1]

Nothing here imports Kedro.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .core.checkpoint import CheckpointError
from .core.distributed import resolve_device
from .core.artifacts import (
    FlowRecord, TrainedModel, load_generator_artifact, load_trained, make_generator, read_record,
)
from .core.generation import Generator


class ModelNotFoundError(FileNotFoundError):
    pass


class IncompatibleModelError(ValueError):
    pass


def _load(path: Path, what: str, device: torch.device) -> TrainedModel:
    if not (path / "state.json").is_file():
        raise ModelNotFoundError(
            f"no {what} at {path} (state.json is missing). Train it with `kedro run` or `dvc repro`, "
            "or pass its folder explicitly.")
    try:
        return load_trained(path, device)
    except CheckpointError as exc:
        raise IncompatibleModelError(str(exc)) from exc


def load_generator(path: str | Path, *, prior: str | Path | None = None, latent_flow: str | Path | None = None,
                   autoencoder: str | Path | None = None, device: str | torch.device = "cpu",
                   precision: str = "fp32") -> Generator:
    """The generator of a trained generator folder (``data/06_models/generator_ledi`` or ``generator_gaussian``: one
    artifact with every part), or of a flow model folder (``data/06_models/fm_ledi`` or ``fm_gaussian``).

    From a flow model folder, a LeDiFlow model also needs its prior model and latent sampler, and a latent-space
    model its autoencoder; by default they are the sibling folders ``prior``, ``latent_flow`` and ``autoencoder``
    (the project's layout). The generator has ``sample``, ``interpolate`` and ``inpaint`` (see
    :mod:`ledi_kedro.core.generation`; the same as the functions ``generate``, ``interpolate`` and ``inpaint``
    there, with its parts filled in).
    """
    path = Path(path)
    dev = resolve_device(str(device))
    state = path / "state.json"
    if state.is_file() and json.loads(state.read_text()).get("kind") == "generator":
        try:
            return load_generator_artifact(path, dev).build(dev, precision)
        except CheckpointError as exc:
            raise IncompatibleModelError(str(exc)) from exc
    fm = _load(path, "trained flow model", dev)
    if fm.kind != "dit":
        raise IncompatibleModelError(f"{path} holds a {fm.kind!r} model, not a flow model (kind 'dit'); "
                                     "point to data/06_models/generator_ledi or generator_gaussian (or fm_ledi, fm_gaussian)")
    try:
        record = read_record(FlowRecord, fm, str(path))
    except CheckpointError as exc:
        raise IncompatibleModelError(str(exc)) from exc
    siblings = {"prior": prior, "latent_flow": latent_flow, "autoencoder": autoencoder}
    parts: dict[str, TrainedModel | None] = {}
    for name, given in siblings.items():
        folder = Path(given) if given is not None else path.parent / name
        needed = (name != "autoencoder" and record.prior == "learned") or (
            name == "autoencoder" and record.space == "latent")
        if not needed:
            parts[name] = None
            continue
        parts[name] = _load(folder, f"{name.replace('_', ' ')} (needed by {path.name})", dev)
    if parts["prior"] is not None and parts["prior"].kind != "prior":
        raise IncompatibleModelError(f"the prior folder holds a {parts['prior'].kind!r} model")
    if parts["latent_flow"] is not None and parts["latent_flow"].kind != "latent_flow":
        raise IncompatibleModelError(f"the latent sampler folder holds a {parts['latent_flow'].kind!r} model")
    if parts["prior"] is not None:
        expected = (fm.config.state_channels, fm.config.resolution)
        got = (parts["prior"].config.in_channels, parts["prior"].config.resolution)
        if expected != got:
            raise IncompatibleModelError(f"prior model works on {got} (channels, resolution) but the flow model "
                                         f"on {expected}: they come from different runs")
    return make_generator(fm, parts["prior"], parts["latent_flow"], parts["autoencoder"], dev, precision)


load_sampler = load_generator  # the name of earlier versions
