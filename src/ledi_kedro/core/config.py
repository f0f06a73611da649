"""Build typed (dataclass) configurations from plain dicts, with errors that name the parameter.

``from_dict(TrainConfig, params, "train_fm")`` rejects unknown keys, wrong types and (through
each dataclass's ``__post_init__``) bad values, before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter is missing, unknown or has a bad value; the message names it."""


def _check_value(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(a) for a in get_args(hint))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in get_args(hint):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_value(value, arm, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} does not fit {hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(hint)
        item_hint = args[0] if args else Any
        items = [_check_value(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_data(default: Any = None) -> Any:
    """A config field that the data determine (channels, resolution, ...), or another setting does (DiT's warmth
    input, from ``fm.warmth``): not a parameter, filled with ``dataclasses.replace`` by the node that trains the
    model; ``None`` (or ``default``) until then."""
    return dataclasses.field(default=default, metadata={"from_data": True})


def is_from_data(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("from_data"))


def require_data_fields(config: Any) -> None:
    """Fail clearly when a model is built from a config whose data-derived fields are still unset."""
    unset = [f.name for f in dataclasses.fields(config) if is_from_data(f) and getattr(config, f.name) is None]
    if unset:
        name = type(config).__name__
        raise ValueError(f"{name}: {', '.join(unset)} come(s) from the data; fill them with "
                         f"dataclasses.replace(config, {unset[0]}=...) before building the model")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``; fields without a default must be given, and
    data-derived fields (:func:`from_data`) must not be."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    settable = {name for name, f in fields.items() if not is_from_data(f)}
    unknown = sorted(set(data) - settable)
    if unknown:
        derived = sorted(set(unknown) & set(fields))
        hint = f" ({', '.join(derived)} come(s) from the data)" if derived else ""
        raise ConfigError(
            f"{where or cls.__name__}: unknown parameter(s) {', '.join(unknown)}{hint}; "
            f"known: {', '.join(sorted(settable))}"
        )
    missing = sorted(name for name, f in fields.items() if name in settable and name not in data
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{where or cls.__name__}: missing parameter(s) {', '.join(missing)} "
                          "(conf/base/parameters_*.yml lists every parameter with its default)")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check_value(value, hints[name], f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain JSON-able dict (for recording configs next to artifacts)."""
    return dataclasses.asdict(obj)
