"""How PVE words values in task logs and commands: sizes, durations, the vzdump command line, notes.

Each function is the Perl helper it names, so task logs read exactly like a node's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SHELL_SAFE = re.compile(r"^[-_.:/\w]+$")  # PVE::Tools::shellquote leaves these unquoted


def format_size(size: float) -> str:
    """``PVE::VZDump::format_size`` (``archive file size: 1.23GB``)."""
    kb = size / 1024
    if kb < 1024:
        return f"{int(kb)}KB"
    mb = size / 1024**2
    if mb < 1024:
        return f"{int(mb)}MB"
    gb = mb / 1024
    if gb < 1024:
        return f"{gb:.2f}GB"
    return f"{gb / 1024:.2f}TB"


def render_bytes(value: float, precision: int = 2) -> str:
    """``PVE::Tools::render_bytes``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    unit = 0
    while value > 1023 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{value:.{precision}f} {units[unit]}"


def hms(seconds: float) -> str:
    """``PVE::VZDump::format_time``: ``HH:MM:SS``."""
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def command_line(params: Mapping[str, Any]) -> str:
    """``PVE::VZDump::Common::command_line``: ``vzdump <vmids> --key value ...``."""
    cmd = "vzdump"
    if params.get("vmid"):
        cmd += " " + " ".join(split_list(params["vmid"]))
    for key, value in params.items():
        if key in ("id", "vmid", "starttime", "dow", "stdout"):
            continue
        text = str(int(value)) if isinstance(value, bool) else str(value)
        cmd += f" --{key} " + (text if _SHELL_SAFE.match(text) else "'" + text.replace("'", "'\"'\"'") + "'")
    return cmd


def split_list(value: Any) -> list[str]:
    """``PVE::Tools::split_list``: items separated by whitespace, commas or semicolons."""
    return [v for v in re.split(r"[\s,;]+", str(value)) if v]


def render_notes(template: str, cluster: str, guest_name: str, node: str, vmid: int) -> str:
    """vzdump's notes template (pve-manager ``PVE/VZDump.pm`` ``generate_notes``): ``\\n`` and ``\\\\``
    escapes, then ``{{cluster}}``, ``{{guestname}}``, ``{{node}}``, ``{{vmid}}``."""

    def unescape(m: re.Match[str]) -> str:
        char = m.group(1)
        if char == "\\":
            return "\\"
        if char == "n":
            return "\n"
        raise ValueError(f"unexpected escape character '{char}'")

    text = re.sub(r"\\(.)", unescape, template)
    values = {"cluster": cluster, "guestname": guest_name, "node": node, "vmid": str(vmid)}
    return re.sub(r"\{\{(cluster|guestname|node|vmid)\}\}", lambda m: values[m.group(1)], text)
