"""Typed, validated parameters for stages and readers.

A stage declares its parameters as a dataclass: every field has a type and a
documented default. ``build_params`` turns a raw mapping (from YAML or
``--set``) into that dataclass, and a wrong key, type or value raises a
``ConfigError`` that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin


class ConfigError(ValueError):
    """A user error in a config file or command line: names the file and the key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file, self.key, self.message = file, key, message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


def describe(tp: Any) -> str:
    """A human name for a type hint, for error messages."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(tp) if a is not type(None)) + " (or null)" * (
            type(None) in get_args(tp)
        )
    if origin in (list, tuple):
        args = get_args(tp)
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, key: str, file: str | None) -> Any:
    """Check ``value`` against the type hint ``tp``; convert the safe cases (int to float, str to list)."""
    origin = get_origin(tp)
    bad = ConfigError(f"expected {describe(tp)}, got {value!r}", file=file, key=key)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key, file)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise bad
    if origin in (list, tuple):
        (item_type,) = get_args(tp)[:1] or (Any,)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad
        return [coerce(v, item_type, f"{key}[{i}]", file) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def build_params(cls: type, raw: dict[str, Any] | None, *, where: str, file: str | None = None):
    """Instantiate the parameter dataclass ``cls`` from ``raw``, validating every key.

    ``where`` prefixes keys in errors (``stages[2].langid``). After type checks the
    dataclass's own ``validate()`` (if any) checks values; it raises ``ValueError``
    whose message starts with the field name (``"min_score: must be in [0, 1]"``).
    """
    raw = dict(raw or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise ConfigError(f"unknown parameter (known: {known})", file=file, key=f"{where}.{unknown[0]}")
    values = {name: coerce(value, hints[name], f"{where}.{name}", file) for name, value in raw.items()}
    params = cls(**values)
    validate = getattr(params, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as err:
            field, _, message = str(err).partition(": ")
            if field in fields and message:
                raise ConfigError(message, file=file, key=f"{where}.{field}") from None
            raise ConfigError(str(err), file=file, key=where) from None
    return params


def parse_scalar(text: str) -> Any:
    """Parse a ``--set KEY=VALUE`` value the way YAML would (numbers, booleans, lists)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def read_yaml_file(path: str, what: str) -> Any:
    """The YAML document in ``path``; any way it cannot be read is a ``ConfigError`` naming the file.

    ``what`` names the kind of file in the messages ("pipeline file", "mixture file" ...), so a user who
    passed a folder or a binary file is told what was expected there.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError("no such file", file=path) from None
    except IsADirectoryError:
        raise ConfigError(f"is a folder, not a {what}", file=path) from None
    except UnicodeDecodeError:
        raise ConfigError(f"not UTF-8 text: is this a {what}?", file=path) from None
    except OSError as err:
        raise ConfigError(f"cannot read it: {err.strerror}", file=path) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise ConfigError(f"not valid YAML: {getattr(err, 'problem', err)}", file=path, key=where) from None
