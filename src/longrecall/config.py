"""Typed configs: dataclasses filled from YAML files and CLI overrides, unknown keys refused."""
from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")


# Keys whose values are token lengths or depths go through the one parser (longrecall.units): `1k`, `50%`.
_UNIT_KEYS = {"length": "length", "lengths": "length", "depth": "depth", "depths": "depth"}
_TYPE_NAMES = {int: "a whole number (int)", float: "a number (float)", str: "text (str)", bool: "true or false (bool)"}


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    unit = _UNIT_KEYS.get(name.rsplit(".", 1)[-1])
    if unit and (tp in (int, float) or (origin in (list, tuple) and args and args[0] in (int, float))):
        from .units import parse_depth, parse_depths, parse_length, parse_lengths

        if origin in (list, tuple):
            return parse_lengths(value, name) if unit == "length" else parse_depths(value)
        return parse_length(value, name) if unit == "length" else parse_depth(value)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], name) if non_none else value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, prefix=f"{name}.")
    if origin in (list, tuple) and isinstance(value, str):
        value = [v for v in value.split(",") if v != ""]
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{name}' must be a list, got {value!r}: write [a, b] or a,b")
        inner = args[0] if args else Any
        return [_coerce(v, inner, name) for v in value]
    want = _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            low = str(value).lower() if isinstance(value, (str, int)) else ""
            if low not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError
            return low in {"true", "1", "yes"}
        if tp in (int, float, str):
            if isinstance(value, (bool, list, dict)):  # YAML true/[1,2]/{a: 1} are never a number or a name
                raise ValueError
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if tp is int and isinstance(value, str):
                return int(value.strip())
            if not isinstance(value, tp):
                return tp(value)
    except (TypeError, ValueError):
        raise UserError(f"config key '{name}' must be {want}, got {value!r}: fix the value") from None
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass `cls` from `data`; an unknown key is a UserError that suggests the closest field."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in (data or {}).items():
        key = key.replace("-", "_")
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown config key '{prefix}{key}'{hint}: remove it or fix its name")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


# The shipped configs and presets are package data: `configs/xyz.yaml` names one wherever the user stands.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def packaged_config(path: str | Path) -> Path | None:
    """The shipped file that a relative name means (`configs/eval/demo-grid.yaml`, `eval/demo-grid.yaml`), or None."""
    path = Path(path)
    if path.is_absolute():
        return None
    parts = path.parts
    candidates = [parts[1:]] if parts and parts[0] == "configs" else []
    candidates.append(parts)
    for rest in candidates:
        if rest:
            cand = CONFIG_DIR.joinpath(*rest)
            if cand.is_file():
                return cand
    return None


def resolve_config_path(path: str | Path) -> Path:
    """A user's own existing file wins; else the packaged config of that name; else a UserError naming the path."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config {path} is a folder, not a YAML file: pass a .yaml file")
    if path.exists():
        return path
    shipped = packaged_config(path)
    if shipped is not None:
        return shipped
    raise UserError(f"config file {path} not found: check the path (shipped configs: {CONFIG_DIR})")


def load_yaml(path: str | Path) -> dict:
    path = resolve_config_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: pass a YAML file") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}): fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of keys to values")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """YAML file (optional) then overrides (e.g. from `--set key=value`) into dataclass `cls`."""
    data = load_yaml(path) if path else {}
    for key, value in (overrides or {}).items():
        cur = data
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    return from_dict(cls, data)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def parse_key_values(items: list[str] | None, flag: str = "--set", typed: bool = True) -> dict:
    """`KEY=VALUE` pairs from a repeatable flag; values parse as YAML scalars (null, true, 3, 0.5) when typed."""
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} {item!r} is not KEY=VALUE: write e.g. {flag} lr=1e-4")
        value = value.strip()
        out[key.strip().replace("-", "_") if flag == "--env" else key.strip()] = (yaml.safe_load(value) if value else "") if typed else value
    return out
