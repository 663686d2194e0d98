"""pulumi-command resources that deliver files, applied to a local directory standing in for the hosts.

``<sandbox dir>/apply/delivered/<host>/<path>`` receives what the program delivers to ``<host>``
(``localhost`` for ``command:local``): a ``command:remote:CopyToRemote`` copies its asset to
``remotePath``; a ``Command`` whose ``create`` only writes its ``stdin`` to a file (the script of
``components.shell.write_stdin_to``: ``cat > "$tmp"``, ``chmod MODE``, ``mv -f -- "$tmp" PATH``, or
a plain ``install -D -m MODE /dev/stdin PATH``) writes it with that mode, or copies a local file
(``install -D -m MODE -- SRC PATH``); its ``delete`` ``rm -f -- PATH`` removes it. A service reload
after the write has nothing to reload here. Any other command would run a shell on the host, which
has no stand-in: it is listed as not applied, with the command's first line. As pulumi-command does,
a change of ``triggers`` replaces the resource, any other change updates it (re-running ``update``,
else ``create``).
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vzkeep.apply.resources.base import Applied, Context, Inputs, NotApplied, ProviderError, ResourceKind
from vzkeep.atomic import write_atomic

_INSTALL = re.compile(r"^install -D -m (?P<mode>[0-7]{3,4}) /dev/stdin (?P<path>\S.*)$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_]*$")


class _Delivery(ResourceKind):
    replace_on = frozenset({"triggers"})

    def host(self, inputs: Inputs) -> str:
        host = str((inputs.get("connection") or {}).get("host", "localhost"))
        if not _HOST.match(host):
            raise NotApplied(f"host {host!r} is not a plain host name")
        return host

    def target(self, ctx: Context, inputs: Inputs, remote_path: str) -> Path:
        """Where ``remote_path`` on the host lands locally; never outside the delivery directory."""
        if not remote_path.startswith("/"):
            raise NotApplied(f"{remote_path!r} is not an absolute path")
        relative = posixpath.normpath(remote_path).lstrip("/")
        return ctx.files_root / self.host(inputs) / relative

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        return applied if Path(applied.id).exists() else None


class InstallCommand(_Delivery):
    """``command:remote:Command`` / ``command:local:Command`` that only write one file."""

    tokens = ("command:remote:Command", "command:local:Command")
    title = "delivered file"
    source = "pulumi-command remote/command.py, local/command.py (create, update, delete, stdin, triggers)"

    def pve_id(self, inputs: Inputs) -> str:
        return self._file(inputs).path

    def describe(self, inputs: Inputs) -> str:
        try:
            return f"file {self._file(inputs).path} on {self.host(inputs)}"
        except NotApplied:
            return "command"

    def _file(self, inputs: Inputs) -> WrittenFile:
        script = str(inputs.get("create") or "")
        found = written_file(script, has_stdin=inputs.get("stdin") is not None)
        if found is None:
            first = next((line for line in script.splitlines() if line.strip() and line.strip() != "set -eu"),
                         "(no create command)")
            where = (inputs.get("connection") or {}).get("host", "this machine")
            raise NotApplied(f"runs `{first.strip()[:80]}` on {where}; sandbox apply has no stand-in for a shell there")
        return found

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        found = self._file(inputs)
        local = self.target(ctx, inputs, found.path)
        if found.source is not None:
            _copy(ctx.files_root, Path(found.source), local)
            os.chmod(local, found.mode)
        else:
            text = str(inputs["stdin"])
            if found.required and not text:
                raise ProviderError("Command create", f"{found.path}: nothing to write")  # the script's `test -s`
            _write(ctx.files_root, local, text, found.mode)
        return Applied(str(local), {**inputs, "stdout": "", "stderr": ""})

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        result = self.create(ctx, new)
        if applied.id != result.id:
            Path(applied.id).unlink(missing_ok=True)
        return result

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        removed = removed_paths(str(inputs.get("delete") or ""))
        if self._file(inputs).path in removed:
            Path(applied.id).unlink(missing_ok=True)
        # no delete command (or another one): pulumi-command leaves the file where it is


@dataclass(frozen=True)
class WrittenFile:
    path: str
    mode: int
    source: str | None = None  # a local file copied, else the command's stdin
    required: bool = False  # the script refuses an empty stdin


_WRITE_LINES = (  # components.shell.write_stdin_to, line by line
    re.compile(r"^set -eu$"),
    re.compile(r"^mkdir -p -- \S.*$"),
    re.compile(r"^tmp=\$\(mktemp -- \S.*\)$"),
    re.compile(r"""^trap 'rm -f "\$tmp"' EXIT$"""),
    re.compile(r"""^cat > "\$tmp"$"""),
    re.compile(r"""^test -s "\$tmp" \|\| \{ echo .* >&2; exit 1; \}$"""),
    re.compile(r"""^chmod (?P<mode>[0-7]{4}) "\$tmp"$"""),
    re.compile(r"""^mv -f -- "\$tmp" (?P<path>\S.*)$"""),
    re.compile(r"^trap - EXIT$"),
    re.compile(r"^if systemctl is-active --quiet (\S+); then systemctl reload \1; fi$"),
)
_LOCAL_INSTALL = re.compile(r"^install -D -m (?P<mode>[0-7]{3,4}) -- (?P<args>\S.*)$")


def written_file(script: str, *, has_stdin: bool) -> WrittenFile | None:
    """The file a delivery script writes, or None when the script does anything else."""
    lines = [line.strip() for line in script.strip().splitlines() if line.strip()]
    single = _INSTALL.match(lines[0]) if len(lines) == 1 else None
    if single is not None and has_stdin:
        return _one_path(single["path"], int(single["mode"], 8))
    body = [line for line in lines if line != "set -eu"]
    if len(body) == 1 and not has_stdin and (local := _LOCAL_INSTALL.match(body[0])):
        args = shlex.split(local["args"])
        return WrittenFile(args[1], int(local["mode"], 8), source=args[0]) if len(args) == 2 else None
    if not has_stdin or 'cat > "$tmp"' not in lines:
        return None
    mode = path = None
    for line in lines:
        match = next((m for m in (pattern.match(line) for pattern in _WRITE_LINES) if m), None)
        if match is None:
            return None
        mode = match.groupdict().get("mode") or mode
        path = match.groupdict().get("path") or path
    if mode is None or path is None:
        return None
    found = _one_path(path, int(mode, 8))
    required = any(line.startswith("test -s ") for line in lines)
    return None if found is None else WrittenFile(found.path, found.mode, required=required)


def removed_paths(script: str) -> set[str]:
    """The paths a delete script removes (``rm -f [--] PATH…``, maybe followed by a service reload)."""
    paths: set[str] = set()
    for line in (line.strip() for line in script.strip().splitlines()):
        if line.startswith("rm -f "):
            args = shlex.split(line)[2:]
            paths.update(arg for arg in args if arg != "--")
    return paths


def _one_path(quoted: str, mode: int) -> WrittenFile | None:
    parts = shlex.split(quoted)
    return WrittenFile(parts[0], mode) if len(parts) == 1 else None


class CopyToRemote(_Delivery):
    """``command:remote:CopyToRemote``: an asset or archive copied to ``remotePath``."""

    tokens = ("command:remote:CopyToRemote",)
    title = "copied file"
    source = "pulumi-command remote/copy_to_remote.py (source, remotePath, triggers)"

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs.get("remotePath", ""))

    def describe(self, inputs: Inputs) -> str:
        return f"copy to {inputs.get('remotePath')} on {(inputs.get('connection') or {}).get('host', '?')}"

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        local = self.target(ctx, inputs, str(inputs["remotePath"]))
        source: dict[str, Any] = inputs.get("source") or {}
        kind = source.get("asset")
        if kind == "string":
            _write(ctx.files_root, local, source["text"], 0o644)
        elif kind in ("file", "archive") and Path(source["path"]).exists():
            _copy(ctx.files_root, Path(source["path"]), local)
        else:
            raise NotApplied(f"a {kind or 'missing'} source has no local stand-in")
        return Applied(str(local), dict(inputs))

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        result = self.create(ctx, new)
        if applied.id != result.id:
            _remove(Path(applied.id))
        return result

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        return None  # pulumi-command's CopyToRemote leaves copied files on the host when deleted


def _private_root(root: Path) -> None:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # delivered files may hold secrets: nobody else may walk in


def _write(root: Path, path: Path, text: str, mode: int) -> None:
    _private_root(root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text, mode=mode)


def _copy(root: Path, source: Path, target: Path) -> None:
    _private_root(root)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
