"""Command-line interfaces generated from frozen dataclass configs.

Every field becomes ``--field-name``; its default comes from the chosen preset (when the stage has
presets), so the resolved config is always a complete dataclass that can be written beside the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, hint: Any) -> None:
    flag = "--" + field.name.replace("_", "-")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    help_text = field.metadata.get("help", "")
    if origin is typing.Union or str(origin) == "types.UnionType":
        non_none = [a for a in args if a is not type(None)]
        hint, origin, args = non_none[0], typing.get_origin(non_none[0]), typing.get_args(non_none[0])
    if hint is bool:
        parser.add_argument(flag, type=_parse_bool, metavar="BOOL", help=help_text)
    elif origin is tuple:
        parser.add_argument(flag, type=args[0], nargs="+", help=help_text)
    elif hint in (int, float, str):
        parser.add_argument(flag, type=hint, help=help_text)
    else:
        raise TypeError(f"no CLI mapping for field {field.name}: {hint}")


def parse_config(
    cls: type[T],
    argv: list[str] | None,
    presets: Mapping[str, T] | None = None,
    description: str = "",
    positional: tuple[str, str] | None = None,
):
    """Parses ``argv`` into an instance of the frozen dataclass ``cls``.

    With ``presets``, ``--preset NAME`` picks the defaults and other flags override single fields.
    Without presets, fields without defaults are required flags. With ``positional=(name, help)``,
    the command also takes any number of positional arguments, and ``(config, [arguments])`` is returned.
    """
    parser = argparse.ArgumentParser(description=description)
    if presets:
        parser.add_argument(
            "--preset",
            choices=sorted(presets),
            default=next(iter(presets)),
            help="base recipe; other flags override its fields",
        )
    if positional:
        parser.add_argument(positional[0], nargs="+", help=positional[1])
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        _add_field(parser, field, hints[field.name])
    namespace = parser.parse_args(argv)
    overrides = {
        f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if getattr(namespace, f.name) is not None
    }
    for name, value in overrides.items():
        if isinstance(value, list):
            overrides[name] = tuple(value)
    if presets:
        config = dataclasses.replace(presets[namespace.preset], **overrides)
    else:
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in overrides and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            parser.error("missing required options: " + ", ".join("--" + m.replace("_", "-") for m in missing))
        config = cls(**overrides)
    return (config, getattr(namespace, positional[0])) if positional else config
