"""PVE's parameter validation: a port of pve-common ``PVE/JSONSchema.pm`` (``check_prop``,
``check_object``, ``check_type``, ``check_format``, ``parse_property_string``, ``validate``) and of
pve-common ``PVE/RESTHandler.pm`` ``$normalize_legacy_param_formats``, with PVE's error texts.

Values arrive as Perl would see them: form values are strings, a repeated form key is a list, JSON
bodies keep their types (a JSON ``true`` is a ``JSON::PP::Boolean``, valid only for booleans). The
differences between the pve-common releases of PVE 8.4 and 9.1 are flags of ``Dialect`` (see
``versions``), not separate code.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vzkeep.pve import values
from vzkeep.sandbox.api.errors import ApiError
from vzkeep.sandbox.api.formats import CodeFormat, FormatError, HashFormat, Registry, perl_true, split_list

PARAM_FAILED = "Parameter verification failed.\n"
NUMBER_RE = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")
INTEGER_RE = re.compile(r"^[+-]?\d+$")
MISSING = "property is missing and it is not optional"
UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"


@dataclass(frozen=True)
class Dialect:
    """What changed in ``JSONSchema.pm`` between the pve-common of PVE 8.4 (8.3.1) and of 9.1 (9.1.11)."""

    # 0f0e791 "schema: clarify error on missing property dependency"
    requires_message: str = "missing property required by '{key}'"
    # 8e6f7eb, a095041, 5d84387: aliases are remapped to their target key before validation
    alias_remap: bool = True
    # ac547b8: a boolean default key of a property string is parsed like any other boolean
    boolean_default_key: bool = True


@dataclass(frozen=True)
class Checker:
    """Validation against one PVE version's formats and dialect."""

    formats: Registry
    dialect: Dialect

    # -- check_format / parse_property_string ---------------------------------------------------------

    def check_format(self, fmt: Any, value: str, path: str) -> Any:
        if isinstance(fmt, dict):
            return self.parse_property_string(HashFormat(fmt), value, path)
        if fmt == "regex":
            return None
        match = re.match(r"^(.*?)(?:-(list|opt))?$", fmt)
        assert match is not None
        name, kind = match.group(1), match.group(2) or "none"
        registered = self.formats.get(name)
        if registered is None:
            raise FormatError(f"undefined format '{fmt}'\n")
        if kind != "none" and isinstance(registered, HashFormat):
            raise FormatError(f"'-{kind}' format must have code ref, not hash\n")
        if kind == "list":
            return [registered(item) for item in split_list(value)]  # type: ignore[operator]
        if kind == "opt":
            return registered(value) if perl_true(value) else None  # type: ignore[operator]
        if isinstance(registered, HashFormat):
            return self.parse_property_string(registered, value, path)
        return registered(value)

    def parse_property_string(self, fmt: HashFormat | str, data: str, path: str) -> dict[str, Any]:
        """``key=value,…`` against a hash format; raises FormatError (``format error`` + errors)."""
        if isinstance(fmt, str):
            registered = self.formats.get(fmt)
            if not isinstance(registered, HashFormat):
                raise FormatError(f"unknown format: {fmt}\n")
            fmt = registered
        props = fmt.properties
        res: dict[str, Any] = {}
        default_key: str | None = None
        for part in data.split(","):
            if re.match(r"^\s*$", part):
                continue
            if match := re.match(r"^([^=]+)=(.+)$", part, re.DOTALL):
                key, value = match.group(1), match.group(2)
                if res.get(key) is not None:
                    raise FormatError(f"duplicate key in comma-separated list property: {key}\n")
                schema = props.get(key)
                if schema and (alias := schema.get("alias")):
                    if key_alias := schema.get("keyAlias"):
                        if res.get(key_alias) is not None:
                            raise FormatError(f"key alias '{key_alias}' is already defined\n")
                        res[key_alias] = key
                    key, schema = alias, props.get(alias)
                    if self.dialect.alias_remap and res.get(key) is not None:
                        raise FormatError(f"key '{key}' is already defined (via alias)\n")
                if not schema:
                    raise FormatError(f"invalid key in comma-separated list property: {key}\n")
                if schema.get("type") == "boolean":
                    value = parse_boolean(value, value)
                res[key] = value
            elif "=" not in part:
                if default_key:
                    raise FormatError(f"duplicate key in comma-separated list property: {default_key}\n")
                for key, schema in props.items():
                    if schema.get("default_key"):
                        default_key = key
                        if not perl_true(res.get(key)):
                            if self.dialect.boolean_default_key and schema.get("type") == "boolean":
                                part = parse_boolean(part, part)
                            res[key] = part
                            break
                        raise FormatError(f"duplicate key in comma-separated list property: {default_key}\n")
                if not default_key:
                    raise FormatError("value without key, but schema does not define a default key\n")
            else:
                raise FormatError("missing key in comma-separated list property\n")
        errors: dict[str, str] = {}
        self.check_object(path, props, res, 0, errors)
        if errors:
            raise FormatError("format error\n", errors)
        return fmt.validator(res) if fmt.validator else res

    # -- check_type / check_prop / check_object -------------------------------------------------------

    def check_type(self, path: str, type_: Any, value: Any, errors: dict[str, str]) -> bool:
        if not type_:
            return True
        if value is None:
            return type_ == "null"
        if isinstance(type_, list):
            for alternative in type_:
                if self.check_type(path, alternative, value, {}):
                    return True
            add_error(errors, path, f"type check ('{'|'.join(type_)}') failed")
            return False
        if isinstance(type_, dict):
            sub: dict[str, str] = {}
            self.check_prop(value, type_, path, sub)
            if sub:
                add_error(errors, path, "type check failed")
                return False
            return True
        if type_ == "any":
            return True
        if type_ == "null":
            add_error(errors, path, f"type check ('{type_}') failed - value is not null")
            return False
        ref = perl_ref(value)
        if type_ in ("array", "object"):
            if ref != ("ARRAY" if type_ == "array" else "HASH"):
                add_error(errors, path, f"type check ('{type_}') failed")
                return False
            return True
        if ref:
            if type_ == "boolean" and isinstance(value, bool):
                return True
            add_error(errors, path, f"type check ('{type_}') failed - got {ref}")
            return False
        text = perl_str(value)
        checks = {"boolean": lambda t: t in ("1", "0"), "integer": INTEGER_RE.match, "number": NUMBER_RE.match}
        if type_ in checks and not checks[type_](text):
            add_error(errors, path, f"type check ('{type_}') failed - got '{text}'")
            return False
        return True

    def check_object(self, path: str, schema: Mapping[str, Any], value: Any, additional: Any,
                     errors: dict[str, str]) -> None:
        if not isinstance(schema, Mapping):
            add_error(errors, path, "Invalid schema definition.")
            return
        if not isinstance(value, dict):
            add_error(errors, path, "an object is required")
            return
        if self.dialect.alias_remap:
            for key in list(value):
                alias = (schema.get(key) or {}).get("alias")
                if alias is None:
                    continue
                if value.get(alias) is not None:
                    add_error(errors, join_path(path, key), f"cannot set both '{key}' and its alias target '{alias}'")
                else:
                    value[alias] = value.pop(key)
        shape = object_shape(schema)
        # Every key of the schema is checked (check_prop); an absent one can only be missing, so unless a key
        # needs more (oneOf, extends…), only the present keys and the required ones are visited.
        keys = schema if shape.complex else [*(k for k in value if k in schema), *shape.required]
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                continue
            seen.add(key)
            self.check_prop(value.get(key), schema[key], join_path(path, key), errors,
                            instance_type(schema, key, value))
        for key in list(value):
            sub = schema.get(key)
            if sub:
                requires = sub.get("requires")
                if isinstance(requires, dict):
                    self.check_prop(value, requires, path, errors)
                elif requires and value.get(requires) is None:
                    add_error(errors, join_path(path, requires),
                              self.dialect.requires_message.format(key=join_path(path, key)))
                if self._matched_type(schema, key, value):
                    continue
            if additional is not None and not isinstance(additional, dict) and not perl_true(additional):
                add_error(errors, join_path(path, key), UNKNOWN)
                continue
            if isinstance(additional, dict):
                self.check_prop(value[key], additional, join_path(path, key), errors)

    @staticmethod
    def _matched_type(schema: Mapping[str, Any], key: str, value: dict[str, Any]) -> bool:
        sub = schema[key]
        if not sub.get("oneOf"):
            return True
        kind = instance_type(schema, key, value)
        return any(not alt.get("instance-types") or kind in alt["instance-types"] for alt in sub["oneOf"])

    def check_prop(self, value: Any, schema: Mapping[str, Any], path: str, errors: dict[str, str],
                   itype: str | None = None) -> None:
        if not isinstance(schema, Mapping):
            add_error(errors, path, "Invalid schema definition.")
            return
        optional_for_type = False
        if schema.get("oneOf"):
            if schema.get("type-property"):
                optional_for_type = True
                for alt in schema["oneOf"]:
                    if not itype:
                        break
                    if "instance-types" not in alt:
                        add_error(errors, path, "missing 'instance-types' in oneOf alternative")
                        return
                    if itype not in alt["instance-types"]:
                        continue
                    optional_for_type = bool(alt.get("optional"))
                    self.check_prop(value, alt, path, errors)
            else:
                inner_errors: dict[str, str] = {}
                for index, alt in enumerate(schema["oneOf"]):
                    sub: dict[str, str] = {}
                    self.check_prop(value, alt, f"{path}.oneOf[{index}]", sub)
                    if not sub:
                        break
                    inner_errors.update(sub)
                else:
                    errors.update(inner_errors)
        elif itype and "instance-types" not in schema:
            add_error(errors, path, "missing 'instance-types'")
            return
        if schema.get("extends"):
            self.check_prop(value, schema["extends"], path, errors)
        if schema.get("alias") and (self.dialect.alias_remap or value is None):
            return
        if value is None:
            if schema.get("type") == "null":
                return
            if not perl_true(schema.get("optional")) and not schema.get("group") and not optional_for_type:
                add_error(errors, path, MISSING)
            return
        if not self.check_type(path, schema.get("type"), value, errors):
            return
        if schema.get("disallow") and self.check_type(path, schema["disallow"], value, {}):
            add_error(errors, path, "disallowed value was matched")
            return
        if isinstance(value, list):
            items = schema.get("items")
            if items:
                for index, element in enumerate(value):
                    self.check_prop(element, items, f"{path}[{index}]", errors)
            return
        if isinstance(value, dict):
            if schema.get("properties") is not None or schema.get("additionalProperties"):
                self.check_object(path, schema.get("properties") or {}, value, schema.get("additionalProperties"),
                                  errors)
            return
        self._check_scalar(perl_str(value), schema, path, errors)

    def _check_scalar(self, text: str, schema: Mapping[str, Any], path: str, errors: dict[str, str]) -> None:
        if fmt := schema.get("format"):
            try:
                self.check_format(fmt, text, path)
            except FormatError as exc:
                add_error(errors, path, "invalid format - " + exc.stringify())
                return
        if (pattern := schema.get("pattern")) and not schema_pattern(pattern).search(text):
            add_error(errors, path, "value does not match the regex pattern")
            return
        if schema.get("maxLength") is not None and len(text) > int(schema["maxLength"]):
            add_error(errors, path, f"value may only be {perl_str(schema['maxLength'])} characters long")
            return
        if schema.get("minLength") is not None and len(text) < int(schema["minLength"]):
            add_error(errors, path, f"value must be at least {perl_str(schema['minLength'])} characters long")
            return
        if NUMBER_RE.match(text):
            number = float(text)
            if schema.get("maximum") is not None and number > float(schema["maximum"]):
                add_error(errors, path, f"value must have a maximum value of {perl_str(schema['maximum'])}")
                return
            if schema.get("minimum") is not None and number < float(schema["minimum"]):
                add_error(errors, path, f"value must have a minimum value of {perl_str(schema['minimum'])}")
                return
        if (enum := schema.get("enum")) is not None and text not in [perl_str(v) for v in enum]:
            values = ", ".join(perl_str(v) for v in enum)
            add_error(errors, path, f"value '{text}' does not have a value in the enumeration '{values}'")

    # -- validate ------------------------------------------------------------------------------------

    def errors(self, instance: Any, schema: Mapping[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        self.check_prop(instance, schema, "", errors)
        return errors

    def validate(self, instance: Any, schema: Mapping[str, Any], message: str = PARAM_FAILED) -> None:
        """``PVE::JSONSchema::validate``: HTTP 400 with every error keyed by its path."""
        errors = self.errors(instance, schema)
        if errors:
            raise ApiError(400, message, errors)


# -- helpers shared with the handlers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectShape:
    required: tuple[str, ...]  # keys that are reported when absent
    complex: bool  # some key needs check_prop even when absent (oneOf, extends, type-property, null type)


_SHAPES: dict[int, tuple[Mapping[str, Any], ObjectShape]] = {}


def object_shape(schema: Mapping[str, Any]) -> ObjectShape:
    """What ``check_object`` must visit in ``schema`` (computed once per schema object)."""
    cached = _SHAPES.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    required = tuple(k for k, sub in schema.items() if isinstance(sub, Mapping) and not perl_true(sub.get("optional"))
                     and not sub.get("group") and not sub.get("alias"))
    complex_ = any(not isinstance(sub, Mapping) or sub.get("oneOf") or sub.get("extends") or sub.get("type-property")
                   or sub.get("type") == "null" for sub in schema.values())
    shape = ObjectShape(required, complex_)
    _SHAPES[id(schema)] = (schema, shape)
    return shape


def add_error(errors: dict[str, str], path: str, message: str) -> None:
    path = path or "_root"
    # add_error joins a second message with a literal backslash-n (single-quoted in the Perl source)
    errors[path] = f"{errors[path]}\\n{message}" if path in errors else message


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def instance_type(schema: Mapping[str, Any], key: str, value: Mapping[str, Any]) -> str | None:
    prop = (schema.get(key) or {}).get("type-property")
    return value.get(prop) if prop else None


def perl_ref(value: Any) -> str:
    """``ref($value)``: the kind of a reference, "" for a plain scalar."""
    if isinstance(value, bool):
        return "JSON::PP::Boolean"
    if isinstance(value, list):
        return "ARRAY"
    if isinstance(value, dict):
        return "HASH"
    return ""


def perl_str(value: Any) -> str:
    """A scalar as Perl prints it (integral numbers without a decimal point, others like ``%.15g``)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.15g}"
    return str(value)


@functools.cache
def schema_pattern(pattern: str) -> re.Pattern[str]:
    """``m/^$pattern$/`` for a schema ``pattern``. Perl stringifies ``qr//`` as ``(?^flags:…)``, which
    Python writes ``(?flags:…)``; ``\\z`` is Python's ``\\Z``."""
    python = re.sub(r"\(\?\^([a-z]*):", lambda m: f"(?{m.group(1)}:" if m.group(1) else "(?:", pattern)
    return re.compile(f"^{python.replace(chr(92) + 'z', chr(92) + 'Z')}$")


def parse_boolean(value: Any, fallback: Any = None) -> Any:
    """``parse_boolean`` as the API applies it: 1 for ``1|on|yes|true``, 0 for ``0|off|no|false`` (any case),
    else ``fallback``. The words are ``vzkeep.pve.values``'; the one difference is PVE's anchoring
    (``m/^(1|on|yes|true)$/i`` in pve-common ``src/PVE/JSONSchema.pm``): no blanks around the word, except
    the single trailing newline Perl's ``$`` lets through, where vzkeep's readers of files tolerate blanks."""
    text = perl_str(value)
    word = text.removesuffix("\n")
    if word != word.strip():
        return fallback
    parsed = values.parse_boolean(word)
    return fallback if parsed is None else int(parsed)


def normalize_legacy_param_formats(params: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """pve-common ``RESTHandler.pm``: a repeated ``-list`` parameter is joined with commas, a single
    value for an ``array`` parameter becomes a one-element array (form bodies cannot nest)."""
    props = schema.get("properties") or {}
    for key in list(params):
        prop = props.get(key)
        value = params[key]
        if prop is None or (not perl_true(value) and not isinstance(value, list)):
            continue
        if isinstance(value, list) and prop.get("type") == "string" and str(prop.get("format", "")).endswith("-list"):
            params[key] = ",".join(perl_str(v) for v in value)
        elif not isinstance(value, list) and prop.get("type") == "array":
            params[key] = [value]
    return params


def coerce(params: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Validated values as the handlers use them: integers as int, numbers as float, booleans as 1/0."""
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        kind = (props.get(key) or {}).get("type")
        if value is None or isinstance(value, list | dict):
            out[key] = value
        elif kind == "boolean":
            out[key] = 1 if (value is True or perl_str(value) == "1") else 0
        elif kind == "integer":
            out[key] = int(perl_str(value))
        elif kind == "number":
            number = float(perl_str(value))
            out[key] = int(number) if number.is_integer() else number
        else:
            out[key] = perl_str(value)
    return out


def format_size(size: int) -> str:
    """``PVE::JSONSchema::format_size``: the largest unit that divides the size (``32G``, ``512M``)."""
    value, unit = int(size), ""
    for next_unit in ("K", "M", "G", "T"):
        if value % 1024:
            return f"{value}{unit}"
        value, unit = value // 1024, next_unit
    return f"{value}{unit}"


def print_property_string(data: Mapping[str, Any], props: Mapping[str, Any]) -> str:
    """``print_property_string``: the default key first (joined with its key alias, ``virtio=<MAC>``),
    then the required keys, then the others, each group sorted by name."""
    default_key = next((k for k, p in props.items() if p.get("default_key")), None)
    key_alias = {p["keyAlias"]: p["alias"] for p in props.values() if p.get("alias") and p.get("keyAlias")}
    parts: list[str] = []
    done: set[str] = set()

    def text(key: str, value: Any) -> str:
        if (props.get(key) or {}).get("format") == "disk-size":
            return format_size(int(value))
        return perl_str(value)

    def add(key: str, is_default: bool = False) -> None:
        if key in done:
            return
        done.add(key)
        value = data.get(key)
        if value is None:
            return
        if key in key_alias and data.get(key_alias[key]) is not None:
            parts.append(f"{text(key, value)}={text(key_alias[key], data[key_alias[key]])}")
            done.add(key_alias[key])
            return
        parts.append(text(key, value) if is_default else f"{key}={text(key, value)}")

    if default_key is not None:
        add(default_key, True)
    for key in sorted(data):
        if key in props and not perl_true(props[key].get("optional")):
            add(key)
    for key in sorted(data):
        add(key)
    return ",".join(parts)


def code_check(fmt: CodeFormat, value: str) -> str | None:
    """A code format's verdict as text (None when the value passes), for handlers that re-check values."""
    try:
        fmt(value)
    except FormatError as exc:
        return exc.stringify()
    return None
