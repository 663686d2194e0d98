"""Hand-typed parameters for the ``/_sandbox/`` control API only (it is not PVE: no published schema).

PVE routes are checked against PVE's own schema (``pve_schema`` + ``validation``). This keeps the
control API's error shapes PVE-like: unknown parameters are rejected with "not defined in schema", a
missing required one with "property is missing and it is not optional", type errors with
``type check ('integer') failed - got 'x'``. Booleans accept ``1|on|yes|true`` and ``0|off|no|false``
(pve-common ``JSONSchema.pm parse_boolean``) and come out as 1/0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vzkeep.sandbox.api.errors import param_error
from vzkeep.sandbox.api.validation import MISSING, UNKNOWN, parse_boolean

# A format checker returns None when the value is fine, else the text after "invalid format - ".
FormatCheck = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Param:
    type: str = "string"  # string | integer | boolean | number
    optional: bool = True
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    pattern: str | None = None
    format: FormatCheck | None = None


Schema = dict[str, Param]


def _convert(name: str, value: Any, spec: Param) -> tuple[Any, str | None]:
    if spec.type == "boolean":
        parsed = parse_boolean(value)
        return (parsed, None) if parsed is not None else (None, f"type check ('boolean') failed - got '{value}'")
    if spec.type == "integer":
        if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", str(value).strip()):
            return None, f"type check ('integer') failed - got '{value}'"
        return int(str(value).strip()), None
    if spec.type == "number":
        try:
            return float(value), None
        except (TypeError, ValueError):
            return None, f"type check ('number') failed - got '{value}'"
    return str(value), None


def _check_constraints(value: Any, spec: Param) -> str | None:
    if spec.enum is not None and str(value) not in spec.enum:
        return f"value '{value}' does not have a value in the enumeration '{', '.join(spec.enum)}'"
    if spec.minimum is not None and value < spec.minimum:
        return f"value must have a minimum value of {spec.minimum:g}"
    if spec.maximum is not None and value > spec.maximum:
        return f"value must have a maximum value of {spec.maximum:g}"
    if spec.max_length is not None and len(str(value)) > spec.max_length:
        return f"value may only be {spec.max_length} characters long"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, str(value)):
        return "value does not match the regex pattern"
    if spec.format is not None:
        problem = spec.format(str(value))
        if problem is not None:
            return f"invalid format - {problem}"
    return None




def validate(params: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Check and convert ``params`` against ``schema``; raise a 400 listing every bad parameter."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in params.items():
        spec = schema.get(name)
        if spec is None:
            errors[name] = UNKNOWN
            continue
        converted, problem = _convert(name, value, spec)
        problem = problem or _check_constraints(converted, spec)
        if problem:
            errors[name] = problem
        else:
            clean[name] = converted
    for name, spec in schema.items():
        if not spec.optional and name not in params:
            errors[name] = MISSING
    if errors:
        raise param_error(errors)
    return clean








def verify_storage_id(text: str) -> str | None:
    # pve-storage ``parse_storage_id``.
    if re.fullmatch(r"[a-z][a-z0-9\-_.]*[a-z0-9]", text, re.IGNORECASE):
        return None
    return f"storage ID '{text}' contains illegal characters"


def verify_node_name(text: str) -> str | None:
    if re.fullmatch(r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?", text):
        return None
    return f"value '{text}' does not look like a valid node name"


NODE = Param(optional=False, format=verify_node_name)
STORAGE = Param(optional=False, format=verify_storage_id)
VMID = Param(type="integer", optional=False, minimum=100, maximum=999999999)
