"""Shell commands the components deliver, built from quoted parts only.

Every value that comes from stack config reaches a shell through `shlex.quote`/`shlex.join`, and every
secret travels on the command's standard input (pulumi-command `stdin`), never in its text: the text
is stored in the Pulumi state, shown by `pulumi preview`, and becomes the process's command line on
the host. Environment variables are not used either: pulumi-command sends them with SSH `env`
requests, which a stock sshd refuses for any name outside its `AcceptEnv` list (Debian's accepts
`LANG LC_*` only), and the command then fails.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

# The Prometheus and Alertmanager services of Debian's packages; a changed file is loaded by a reload.
PROMETHEUS_SERVICE = "prometheus.service"
ALERTMANAGER_SERVICE = "prometheus-alertmanager.service"


def script(*lines: str) -> str:
    """A POSIX sh script that stops at the first failing command or unset variable."""
    return "\n".join(["set -eu", *lines]) + "\n"


def write_stdin_to(path: str, mode: str, *, required: bool = False, reload: str | None = None) -> str:
    """Write the command's standard input to `path` atomically, with `mode`.

    `mktemp` creates the temporary file 0600, so a secret is never readable by others, not even while
    it is written; `mv` replaces the file in one step, so a reader (Prometheus) never sees half of it.
    `required`: an empty input is an error (a token Pulumi could not read back must not become an empty
    token file). `reload`: a systemd service reloaded after the change, when it runs.
    """
    if not mode.isdigit() or len(mode) != 4:
        raise ValueError(f"mode {mode!r}: expected four octal digits such as 0644")
    directory = path.rsplit("/", 1)[0] or "/"
    lines = [
        f"mkdir -p -- {shlex.quote(directory)}",
        f"tmp=$(mktemp -- {shlex.quote(directory + '/.vzkeep.XXXXXX')})",
        'trap \'rm -f "$tmp"\' EXIT',
        'cat > "$tmp"',
    ]
    if required:
        lines.append(f'test -s "$tmp" || {{ echo {shlex.quote(f"{path}: nothing to write")} >&2; exit 1; }}')
    lines += [f'chmod {mode} "$tmp"', f'mv -f -- "$tmp" {shlex.quote(path)}', "trap - EXIT"]
    if reload:
        lines.append(reload_if_active(reload))
    return script(*lines)


def remove(*paths: str, reload: str | None = None) -> str:
    lines = [f"rm -f -- {shlex.join(paths)}"]
    if reload:
        lines.append(reload_if_active(reload))
    return script(*lines)


def reload_if_active(service: str) -> str:
    quoted = shlex.quote(service)
    return f"if systemctl is-active --quiet {quoted}; then systemctl reload {quoted}; fi"


def joined(argv: Iterable[str]) -> str:
    return shlex.join(list(argv))
