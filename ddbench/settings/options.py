"""Options dataclasses from ``KEY=VALUE`` strings, with errors that list the valid keys."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class OptionError(ValueError):
    """An option that does not exist or a value of the wrong type."""


_NUMBER_WORDS = {int: "an integer (e.g. 4)", float: "a number (e.g. 0.1)"}


def _coerce(raw: str, annotation: Any, key: str, what: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if raw.lower() in ("none", "null") and len(non_none) < len(args):
            return None
        return _coerce(raw, non_none[0], key, what)
    if origin is tuple:
        inner = args[0] if args else str
        return tuple(_coerce(part, inner, key, what) for part in raw.split(",") if part != "")
    if annotation is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise OptionError(f"{what}: {key} takes true or false, got {raw!r}")
    if annotation is str:
        return raw
    if annotation in _NUMBER_WORDS:
        try:
            return annotation(raw)
        except ValueError:
            raise OptionError(f"{what}: {key} takes {_NUMBER_WORDS[annotation]}, got {raw!r}") from None
    raise OptionError(f"{what}: {key} cannot be set from the command line (type {annotation})")


def parse_assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise OptionError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def apply_overrides(instance: Any, assignments: list[str], what: str, frozen_fields: tuple[str, ...] = ()) -> Any:
    """A copy of dataclass ``instance`` with ``KEY=VALUE`` assignments applied."""
    hints = typing.get_type_hints(type(instance))
    valid = [f.name for f in dataclasses.fields(instance) if f.name not in frozen_fields and not f.name.startswith("_")]
    changes: dict[str, Any] = {}
    for assignment in assignments:
        key, raw = parse_assignment(assignment)
        if key not in valid:
            raise OptionError(f"{what} has no option {key!r}; valid options: {', '.join(valid) or '(none)'}")
        changes[key] = _coerce(raw, hints[key], key, what)
    try:
        return dataclasses.replace(instance, **changes)
    except OptionError:
        raise
    except (ValueError, TypeError) as exc:  # the options class's own checks (__post_init__)
        raise OptionError(f"{what}: {exc}") from None


def options_from_dict(options_class: type, values: dict[str, Any], what: str) -> Any:
    """An ``options_class`` instance from a dict (e.g. read back from JSON), unknown keys refused."""
    valid = {f.name for f in dataclasses.fields(options_class)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise OptionError(f"{what} has no option(s) {', '.join(map(repr, unknown))}; valid options: {', '.join(sorted(valid))}")
    hints = typing.get_type_hints(options_class)
    fixed = {k: tuple(v) if typing.get_origin(hints[k]) is tuple and isinstance(v, list) else v for k, v in values.items()}
    return options_class(**fixed)


def option_docs(options_class: type) -> dict[str, str]:
    """Each option's line of documentation, read from the class docstring's bullets
    (``- ``name``: text``, also ``- ``a`` / ``b``: text`` for a pair), continuation lines joined."""
    import re

    docs: dict[str, str] = {}
    current: list[str] = []
    for line in (options_class.__doc__ or "").splitlines():
        match = re.match(r"\s*- ((?:``\w+``(?:\s*/\s*)?)+):\s*(.*)", line)
        if match:
            current = re.findall(r"``(\w+)``", match.group(1))
            for name in current:
                docs[name] = match.group(2).strip()
        elif current and line.strip() and not line.strip().startswith("-"):
            for name in current:
                docs[name] += " " + line.strip()
        else:
            current = []
    return docs
