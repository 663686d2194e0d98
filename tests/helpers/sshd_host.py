"""A stand-in for the exporter host: Debian's OpenSSH sshd on 127.0.0.1, with a stock configuration.

The delivered commands run as root and write where they would on a real host (/etc, /opt, /var/lib),
so sshd runs in a private mount namespace where those directories are overlays on a temp directory:
the commands see the machine's files, their writes land in the overlay and this machine stays as it
was. Two programs are replaced inside the namespace only, because no systemd runs here: `systemctl`
records its arguments, and `apt-get` fails (the test host has python3-venv; nothing may be installed
on it). pip finds packages in a wheelhouse the test fills from the lock files (pip's configuration
files are replaced in the namespace), so installs are offline and still checked by `--require-hashes`.

The sshd configuration has no `ForceCommand` and no `AcceptEnv`: commands that relied on environment
variables would fail here as on a stock host.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.background import Background
from tests.helpers.waits import wait_until
from vzkeep.net import free_port
from vzkeep.processes import stop_process

OVERLAID = ("/etc", "/opt", "/var/lib")
SYSTEMCTL_STUB = """#!/bin/sh
echo "$*" >> {log}
case "$1" in is-active) exit 3;; esac
exit 0
"""
PORT_ATTEMPTS = 5
APT_STUB = """#!/bin/sh
echo "apt-get $* (refused: the test host must not change)" >> {log}
exit 1
"""


@dataclass
class SshHost:
    work: Path
    wheelhouse: Path
    port: int = 0  # picked by start()
    process: subprocess.Popen[bytes] | None = None

    @property
    def key(self) -> Path:
        return self.work / "client_key"

    @property
    def sshd_log(self) -> Path:
        return self.work / "sshd.log"

    @property
    def systemctl_log(self) -> Path:
        return self.work / "systemctl.log"

    def upper(self, host_path: str) -> Path:
        """Where a file the commands wrote at `host_path` is, seen from this machine."""
        for root in OVERLAID:
            if host_path.startswith(root + "/"):
                return self.work / "upper" / root.strip("/").replace("/", "-") / host_path[len(root) + 1:]
        raise ValueError(f"{host_path} is not under an overlaid directory {OVERLAID}")

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        for name in ("ssh_host_ed25519_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.work / name)], check=True)
        (self.work / "authorized_keys").write_text((self.work / "client_key.pub").read_text())
        config = self.work / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"HostKey {self.work}/ssh_host_ed25519_key",
            f"PidFile {self.work}/sshd.pid",
            f"AuthorizedKeysFile {self.work}/authorized_keys",
            "StrictModes no",  # the temp directory's parents (/tmp) are world-writable
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "LogLevel DEBUG3",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
        ]) + "\n")
        stubs = self.work / "stubs"
        stubs.mkdir(exist_ok=True)
        (stubs / "systemctl").write_text(SYSTEMCTL_STUB.format(log=self.systemctl_log))
        (stubs / "apt-get").write_text(APT_STUB.format(log=self.systemctl_log))
        for stub in stubs.iterdir():
            stub.chmod(0o755)
        pip_conf = self.work / "pip.conf"
        pip_conf.write_text(f"[global]\nno-index = true\nfind-links = {self.wheelhouse}\nno-cache-dir = true\n")
        # sshd takes no port 0: pick one now, and another one if something else took it before sshd bound it.
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", self._namespace_script(pip_conf)],
                stdout=subprocess.DEVNULL, stderr=self.sshd_log.open("wb"))
            if self._wait_until_listening() or attempt == PORT_ATTEMPTS:
                break
        assert self.process.poll() is None, f"sshd found no free port: {self.sshd_log.read_text()[-2000:]}"

    def _namespace_script(self, pip_conf: Path) -> str:
        w = self.work
        lines = ["set -e"]
        for root in OVERLAID:
            name = root.strip("/").replace("/", "-")
            upper, scratch = w / "upper" / name, w / "overlay-work" / name
            upper.mkdir(parents=True, exist_ok=True)
            scratch.mkdir(parents=True, exist_ok=True)
            lines.append(f"mount -t overlay overlay -o lowerdir={root},upperdir={upper},workdir={scratch} {root}")
        lines += [
            "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && chmod 0755 /run/sshd",
            f"mount --bind {w}/stubs/systemctl /usr/bin/systemctl",
            f"mount --bind {w}/stubs/apt-get /usr/bin/apt-get",
            # pip reads /etc/pip.conf, /etc/xdg/pip/pip.conf and root's own files: only ours remains.
            f"cp {pip_conf} /etc/pip.conf && mkdir -p /etc/xdg/pip && cp {pip_conf} /etc/xdg/pip/pip.conf",
            "for d in /root/.config/pip /root/.pip; do if [ -d $d ]; then mount -t tmpfs tmpfs $d; fi; done",
            f"exec /usr/sbin/sshd -D -e -f {w}/sshd_config -p {self.port}",
        ]
        return "\n".join(lines)

    def _wait_until_listening(self) -> bool:
        """True once sshd accepts a login; False when it exited because its port was taken."""
        process = self.process
        assert process is not None

        def up() -> str | None:
            if process.poll() is not None:
                log = self.sshd_log.read_text()
                if "Address already in use" in log:
                    return "port taken"
                raise RuntimeError(f"sshd exited: {log[-2000:]}")
            return "listening" if self.run("true", timeout=5).returncode == 0 else None

        return wait_until(up, 20, f"sshd to accept a login on port {self.port}") == "listening"

    def _ssh_options(self) -> list[str]:
        # -F /dev/null: no client config, so no SendEnv either.
        return ["-F", "/dev/null", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

    def run(self, command: str, stdin: str = "", *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """What pulumi-command's remote Command does: one SSH session, `command` as the exec request, stdin."""
        return subprocess.run(["ssh", *self._ssh_options(), "-p", str(self.port), "root@127.0.0.1", command],
                              input=stdin, capture_output=True, text=True, timeout=timeout, check=False)

    def copy(self, local: Path, remote: str) -> subprocess.CompletedProcess[str]:
        """What CopyToRemote does: SFTP, parent directories created, the file written as-is."""
        parents, batch = remote.split("/")[1:-1], []
        for i in range(1, len(parents) + 1):
            batch.append("-mkdir " + shlex.quote("/" + "/".join(parents[:i])))
        batch.append(f"put {shlex.quote(str(local))} {shlex.quote(remote)}")
        return subprocess.run(["sftp", *self._ssh_options(), "-P", str(self.port), "-b", "-", "root@127.0.0.1"],
                              input="\n".join(batch) + "\n", capture_output=True, text=True, timeout=120,
                              check=False)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


class CommandLineWatch(Background):
    """Samples every process's command line while commands run, and keeps those holding a secret."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(0.01, "command-line-watch")
        self.secrets = [s for s in secrets if s]
        self.leaks: list[str] = []
        self.samples = 0

    def tick(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(secret in text for secret in self.secrets):
                self.leaks.append(text[:300])
        self.samples += 1
