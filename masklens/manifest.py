"""The manifest beside the exported graphs: its versioned JSON Schema, and reading it safely.

``manifest.schema.json`` (beside this file, copied into the site by ``scripts/build_site.py``) is the
schema; ``format`` names its version. ``validate`` checks a manifest against it with the small subset of
JSON Schema (draft 2020-12) the schema uses, and ``site/js/manifest.js`` does the same in the browser with
the same messages, each naming the field: ``type``, ``const``, ``enum``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``minItems``, ``maxItems``, ``minimum``, ``exclusiveMinimum``,
``pattern`` and ``$ref`` into ``$defs``. The export validates what it writes; ``load_manifest`` validates
what it reads, then checks every model file against its size and sha256.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from .files import sha256_of

MANIFEST_NAME = "manifest.json"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


class ModelIntegrityError(RuntimeError):
    """A model folder cannot be used: no manifest, one that does not follow the schema, or a model file
    that is missing or differs from it."""


class ManifestError(ModelIntegrityError):
    """The manifest does not follow the schema; the message names the field."""


@functools.cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def manifest_format() -> str:
    """The one manifest version this code reads and writes."""
    return schema()["properties"]["format"]["const"]


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    # JSON Schema counts a number with no fractional part as an integer, as JavaScript must (5.0 is 5 there).
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def type_name(value) -> str:
    """The JSON type of a parsed value, as the schema names it (integers count as numbers too)."""
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _problem(value, rule: dict, path: str, root: dict) -> str | None:
    """The first way ``value`` breaks ``rule``, as "field `path`: ...", or None. Rules are checked in a
    fixed order (site/js/manifest.js follows it), so both sides name the same problem first."""
    if "$ref" in rule:
        rule = root["$defs"][rule["$ref"].removeprefix("#/$defs/")]
    where = f"field `{path}`" if path else "the manifest"
    if "const" in rule and value != rule["const"]:
        return f"{where} is {json.dumps(value)}, expected {json.dumps(rule['const'])}"
    if "enum" in rule and value not in rule["enum"]:
        return f"{where} is {json.dumps(value)}, expected one of {', '.join(json.dumps(v) for v in rule['enum'])}"
    if "type" in rule:
        allowed = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        if not any(_TYPES[name](value) for name in allowed):
            return f"{where} is {type_name(value)}, expected {' or '.join(allowed)}"
    if isinstance(value, dict):
        return _object_problem(value, rule, path, root)
    if isinstance(value, list):
        if "minItems" in rule and len(value) < rule["minItems"]:
            return f"{where} has {len(value)} items, expected at least {rule['minItems']}"
        if "maxItems" in rule and len(value) > rule["maxItems"]:
            return f"{where} has {len(value)} items, expected at most {rule['maxItems']}"
        if "items" in rule:
            return next(
                filter(None, (_problem(item, rule["items"], f"{path}[{i}]", root) for i, item in enumerate(value))),
                None,
            )
    if _TYPES["number"](value):
        if "minimum" in rule and value < rule["minimum"]:
            return f"{where} is {json.dumps(value)}, expected at least {rule['minimum']}"
        if "exclusiveMinimum" in rule and value <= rule["exclusiveMinimum"]:
            return f"{where} is {json.dumps(value)}, expected more than {rule['exclusiveMinimum']}"
    if isinstance(value, str) and "pattern" in rule and not re.search(_python_pattern(rule["pattern"]), value):
        return f"{where} is {json.dumps(value)}, which does not match {rule['pattern']}"
    return None


def _python_pattern(pattern: str) -> str:
    """A schema pattern (ECMA-262 syntax) for Python's re: a final ``$`` matches only at the very end there,
    where Python's would also match before a final newline."""
    return re.sub(r"(?<!\\)\$$", r"\\Z", pattern)


def _object_problem(value: dict, rule: dict, path: str, root: dict) -> str | None:
    prefix = f"{path}." if path else ""
    for key in rule.get("required", []):
        if key not in value:
            return f"field `{prefix}{key}` is missing"
    properties = rule.get("properties", {})
    extra = rule.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            problem = _problem(item, properties[key], prefix + key, root)
        elif extra is False:
            problem = f"field `{prefix}{key}` is not in the schema"
        elif isinstance(extra, dict):
            problem = _problem(item, extra, prefix + key, root)
        else:
            problem = None
        if problem:
            return problem
    return None


def validate(manifest) -> None:
    """Raises ManifestError naming the first field that breaks the schema; another ``format`` is refused
    first, by name, before anything else is looked at."""
    expected = manifest_format()
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != expected:
        raise ManifestError(
            f"field `format` is {json.dumps(found)}: this MaskLens reads {json.dumps(expected)} "
            "only (re-export the model with masklens export)"
        )
    problem = _problem(manifest, schema(), "", schema())
    if problem:
        raise ManifestError(problem)


def load_manifest(model_dir: str | Path) -> dict:
    """The folder's manifest, validated, after checking every model file it lists against its size and sha256."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST_NAME
    if not manifest_path.exists():
        raise ModelIntegrityError(f"no {MANIFEST_NAME} in {model_dir}: run masklens export first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{manifest_path} is not JSON ({error})") from None
    try:
        validate(manifest)
    except ManifestError as error:
        raise ManifestError(f"{manifest_path}: {error}") from None
    for name, entry in manifest["files"].items():
        path = model_dir / name
        if not path.exists():
            raise ModelIntegrityError(f"model file missing: {path}")
        if path.stat().st_size != entry["bytes"] or sha256_of(path) != entry["sha256"]:
            raise ModelIntegrityError(
                f"model file {path} does not match the manifest (size or sha256 differ): "
                "it is truncated, corrupt or from another export"
            )
    return manifest
