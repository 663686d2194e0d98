"""pulumi-command resources that deliver files, applied to a local directory standing in for the hosts.

``<sandbox state>/apply/delivered/<host>/<path>`` receives what the program delivers to ``<host>``
(``localhost`` for ``command:local``): a ``command:remote:CopyToRemote`` copies its asset to
``remotePath``; a ``Command`` whose ``create`` is ``install -D -m MODE /dev/stdin PATH`` writes its
``stdin`` with that mode, and its ``delete`` ``rm -f PATH`` removes it. Any other command would run a
shell on the host, which has no stand-in here: it is listed as not applied, with the command's first
line. As pulumi-command does, a change of ``triggers`` replaces the resource, any other change updates it
(a command's update re-runs ``create`` when it has no ``update``).
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from vzkeep.apply.resources.base import Applied, Context, Inputs, NotApplied, ResourceKind
from vzkeep.atomic import write_atomic

_INSTALL = re.compile(r"^install -D -m (?P<mode>[0-7]{3,4}) /dev/stdin (?P<path>\S.*)$")
_REMOVE = re.compile(r"^rm -f (?P<path>\S.*)$")
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
    """``command:remote:Command`` / ``command:local:Command`` that install a file from stdin."""

    tokens = ("command:remote:Command", "command:local:Command")
    title = "delivered file"
    source = "pulumi-command remote/command.py, local/command.py (create, update, delete, stdin, triggers)"

    def pve_id(self, inputs: Inputs) -> str:
        return self._install(inputs)[1]

    def describe(self, inputs: Inputs) -> str:
        try:
            return f"file {self._install(inputs)[1]} on {self.host(inputs)}"
        except NotApplied:
            return "command"

    def _install(self, inputs: Inputs) -> tuple[int, str]:
        script = str(inputs.get("create") or "").strip()
        match = _INSTALL.match(script)
        if match is None or inputs.get("stdin") is None:
            first = script.splitlines()[0] if script else "(no create command)"
            where = (inputs.get("connection") or {}).get("host", "this machine")
            raise NotApplied(f"runs `{first[:80]}` on {where}; sandbox apply has no stand-in for a shell there")
        path = shlex.split(match["path"])
        if len(path) != 1:
            raise NotApplied(f"`{script[:80]}` installs more than one path")
        return int(match["mode"], 8), path[0]

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        mode, remote = self._install(inputs)
        local = self.target(ctx, inputs, remote)
        _write(ctx.files_root, local, str(inputs["stdin"]), mode)
        return Applied(str(local), {**inputs, "stdout": "", "stderr": ""})

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        result = self.create(ctx, new)
        if applied.id != result.id:
            Path(applied.id).unlink(missing_ok=True)
        return result

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        script = str(inputs.get("delete") or "").strip()
        match = _REMOVE.match(script)
        if match is None or shlex.split(match["path"]) != [self._install(inputs)[1]]:
            return  # no delete command (or another one): pulumi-command leaves the file where it is
        Path(applied.id).unlink(missing_ok=True)


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
