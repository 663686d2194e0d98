"""Read a YAML file that may come from anyone (a fork's stack file, a config, a seed), the way Pulumi does.

Pulumi reads stack files with a YAML 1.2 reader (Go's gopkg.in/yaml.v3): ``at: 21:30`` is the string
``"21:30"``, ``yes`` is a string, only ``true``/``false`` are booleans. PyYAML implements YAML 1.1,
where ``21:30`` is the integer 1290, so a file would mean one thing to the check and another to
Pulumi. This module parses YAML 1.2 with ruamel.yaml, event by event, and builds plain Python
data (dicts, lists, str, int, float, bool, None) while enforcing what a hostile file could abuse:

- **size**: at most ``MAX_BYTES``, checked before reading; **nesting**: at most ``MAX_DEPTH`` levels,
  checked while parsing (the event stream is not recursive, so no depth can crash it);
- **no anchors or aliases**: a 1 KB "billion laughs" file expands to gigabytes (the PyYAML loader
  it replaces reached a ``MemoryError`` after 48 s); stack files have no use for them;
- **no duplicate keys**: Pulumi and PyYAML disagree on which of two equal keys wins, so a check could
  pass a file that deploys something else;
- **only the core tags** (str, int, float, bool, null, seq, map): no ``!!python/…``, no ``!!binary``;
- **text must be UTF-8**: invalid bytes are an error naming the line, never a traceback.

Every problem is a ``YamlFileError`` (a ``UsageError``: exit 2) naming the file and the line. The
result keeps the line of every key (``YamlDocument.line_of``), so later checks can say where a bad
value is.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vzkeep.errors import UsageError

MAX_BYTES = 1 << 20  # 1 MiB: a stack with 500 inventory guests is about 40 KiB
MAX_DEPTH = 32  # a stack file nests 5 levels deep
_BOM = b"\xef\xbb\xbf"
_CORE_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null"))
_PLAIN_TYPES = (str, int, float, bool, type(None))

Path_ = tuple[str | int, ...]


class YamlFileError(UsageError, ValueError):
    """A file that cannot be read as safe YAML 1.2; ``line`` is 1-based (None when unknown)."""

    def __init__(self, source: str, problem: str, line: int | None = None, hint: str | None = None) -> None:
        where = f"{source} line {line}" if line is not None else source
        super().__init__(f"{where}: {problem}", hint)
        self.source, self.problem, self.line = source, problem, line


@dataclass(frozen=True)
class YamlDocument:
    """Plain data from a YAML file, with the line of each key and sequence item."""

    source: str
    data: Any
    lines: Mapping[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path`` (keys and list indexes), or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None


def load_yaml(path: Path | str, *, max_bytes: int = MAX_BYTES, line_key: str | None = None) -> YamlDocument:
    """Read and parse ``path`` (see the module's rules). ``line_key``, if given, is added to every
    mapping with the line the mapping starts on (for readers that carry the line with the data)."""
    source = str(path)
    try:
        with open(path, "rb") as file:
            raw = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise YamlFileError(source, "file not found") from None
    except IsADirectoryError:
        raise YamlFileError(source, "is a directory, not a file") from None
    except OSError as exc:
        raise YamlFileError(source, f"cannot read it ({exc.strerror})") from None
    if len(raw) > max_bytes:
        raise YamlFileError(source, f"larger than {max_bytes // 1024} KiB; this is not a config file",
                            hint="check that the path names the right file")
    return parse_yaml(raw, source, line_key=line_key)


def parse_yaml(raw: bytes | str, source: str, *, line_key: str | None = None) -> YamlDocument:
    """Parse YAML 1.2 text (bytes must be UTF-8) into plain data and key lines."""
    text = _decode(raw, source) if isinstance(raw, bytes) else raw
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    builder = _Builder(source, yaml, line_key)
    try:
        for event in yaml.parse(text):
            builder.feed(event)
    except YAMLError as exc:
        raise YamlFileError(source, f"not valid YAML: {_yaml_problem(exc)}", _yaml_line(exc)) from None
    return YamlDocument(source, builder.result, builder.lines)


def _decode(raw: bytes, source: str) -> str:
    raw = raw.removeprefix(_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlFileError(source, f"not UTF-8 text (invalid byte 0x{raw[exc.start]:02x})", line,
                            hint="save the file as UTF-8") from None


def _yaml_problem(exc: Exception) -> str:
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    return str(problem)


def _yaml_line(exc: Exception) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None


class _Builder:
    """Turns ruamel's event stream into plain data, enforcing depth, anchors, tags and unique keys."""

    def __init__(self, source: str, yaml: Any, line_key: str | None) -> None:
        self.source, self.yaml, self.line_key = source, yaml, line_key
        self.stack: list[_Open] = []
        self.result: Any = None
        self.lines: dict[Path_, int] = {}
        self.documents = 0

    def fail(self, event: Any, problem: str, hint: str | None = None) -> YamlFileError:
        return YamlFileError(self.source, problem, event.start_mark.line + 1, hint)

    def feed(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "DocumentStartEvent":
            self._document(event)
        elif kind == "AliasEvent" or getattr(event, "anchor", None) is not None:
            raise self.fail(event, "anchors and aliases (&name, *name) are not allowed",
                            "write the values out: an alias can expand a small file into an enormous one")
        elif kind in ("MappingStartEvent", "SequenceStartEvent"):
            self._open(event, {} if kind == "MappingStartEvent" else [])
        elif kind in ("MappingEndEvent", "SequenceEndEvent"):
            done = self.stack.pop()
            if self.line_key is not None and isinstance(done.value, dict):
                done.value[self.line_key] = done.line
            self._add(done.value, event, done.line)
        elif kind == "ScalarEvent":
            self._add(self._scalar(event), event, event.start_mark.line + 1)

    def _document(self, event: Any) -> None:
        self.documents += 1
        if self.documents > 1:
            raise self.fail(event, "holds more than one YAML document ('---'); a config file holds one")
        version = getattr(event, "version", None)
        if version is not None and tuple(version) != (1, 2):
            raise self.fail(event, f"declares YAML {'.'.join(map(str, version))}; only YAML 1.2 is read, as "
                            "Pulumi does", "remove the %YAML line")

    def _open(self, event: Any, value: Any) -> None:
        self._check_tag(event, "map" if isinstance(value, dict) else "seq")
        if len(self.stack) >= MAX_DEPTH:
            raise self.fail(event, f"nested more than {MAX_DEPTH} levels deep")
        self.stack.append(_Open(value, event.start_mark.line + 1, self._path_here()))

    def _path_here(self) -> Path_:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, dict):
            return (*top.path, top.pending_key) if top.pending_key is not None else top.path
        return (*top.path, len(top.value))

    def _add(self, value: Any, event: Any, line: int) -> None:
        if not self.stack:
            self.result = value
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            self.lines[(*top.path, len(top.value))] = line
            top.value.append(value)
        elif top.pending_key is None:
            top.pending_key = self._key(value, event, top)
        else:
            top.value[top.pending_key] = value
            top.pending_key = None

    def _key(self, value: Any, event: Any, top: _Open) -> str:
        if type(event).__name__ != "ScalarEvent":
            raise self.fail(event, "a key must be a plain value, not a list or a mapping")
        key = event.value  # the key as written: Go's reader gives a map[string]… its text
        line = event.start_mark.line + 1
        path = (*top.path, key)
        if key in top.value or (self.line_key is not None and key == self.line_key):
            first = self.lines.get(path)
            raise self.fail(event, f"duplicate key '{key}'" + (f" (first on line {first})" if first else ""),
                            "keep one: YAML forbids duplicate keys, and readers disagree on which one wins")
        self.lines[path] = line
        return key

    def _scalar(self, event: Any) -> Any:
        from ruamel.yaml.error import YAMLError
        from ruamel.yaml.nodes import ScalarNode

        self._check_tag(event, None)
        tag = event.tag or self.yaml.resolver.resolve(ScalarNode, event.value, event.implicit)
        tag = getattr(tag, "value", tag)
        if tag == "tag:yaml.org,2002:str":
            return event.value  # what the constructor would return, without its cost (most values are strings)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            value = self.yaml.constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, OverflowError) as exc:
            raise self.fail(event, f"cannot read the value {event.value[:40]!r}: {str(exc).splitlines()[0]}") from None
        if isinstance(value, _dt.date | _dt.datetime) or not isinstance(value, _PLAIN_TYPES):
            return event.value  # dates and the like: keep the text, as a string setting sees it
        return value

    def _check_tag(self, event: Any, collection: str | None) -> None:
        tag = getattr(event, "tag", None)
        tag = getattr(tag, "value", tag)
        if tag is None or tag == "!":
            return
        allowed = {f"tag:yaml.org,2002:{collection}"} if collection else _CORE_TAGS
        if tag not in allowed:
            raise self.fail(event, f"the tag {tag} is not allowed", "remove it: only plain YAML values are read")


@dataclass
class _Open:
    """A mapping or sequence being filled."""

    value: Any
    line: int
    path: Path_
    pending_key: str | None = None
