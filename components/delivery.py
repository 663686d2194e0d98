"""Delivery: pulumi-command resources that write files and run scripts on a host, over SSH or locally.

Every command has an `update` equal to its `create`: without one pulumi-command replaces the resource
when an input changes, creating the new one and then running the old one's `delete` — which would
remove the file just written, or stop the service just restarted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command as command

from components import shell


@dataclass(frozen=True)
class Target:
    """Where commands run: `host` over SSH (as `user`, with the private key), or this machine (`host=None`)."""

    host: str | None
    user: str = "root"
    private_key: pulumi.Input[str] | None = None

    @property
    def local(self) -> bool:
        return self.host is None


class Delivery:
    """Declares the commands of one component on one target."""

    def __init__(self, parent: pulumi.Resource, target: Target) -> None:
        self.parent, self.target = parent, target

    def file(self, name: str, path: str, content: pulumi.Input[str], *, mode: str = "0644", secret: bool = False,
             reload: str | None = None, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.Resource:
        """A file whose content travels on stdin; a secret one is written 0600 and its command logs nothing."""
        create = shell.write_stdin_to(path, mode, required=secret, reload=reload)
        return self.run(name, create, delete=shell.remove(path, reload=reload), stdin=content, quiet=secret,
                        depends_on=depends_on)

    def run(self, name: str, create: str, *, delete: str | None = None, stdin: pulumi.Input[str] | None = None,
            quiet: bool = False, triggers: Sequence[Any] | None = None,
            depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.Resource:
        opts = pulumi.ResourceOptions(parent=self.parent, depends_on=list(depends_on))
        if self.target.local:
            return command.local.Command(
                name, create=create, update=create, delete=delete, stdin=stdin, triggers=triggers,
                logging=command.local.Logging.NONE if quiet else None, opts=opts)
        return command.remote.Command(
            name, connection=self.connection(), create=create, update=create, delete=delete, stdin=stdin,
            triggers=triggers, logging=command.remote.Logging.NONE if quiet else None,
            # The previous run's output would be sent as environment variables (refused by a stock sshd).
            add_previous_output_in_env=False, opts=opts)

    def copy(self, name: str, source: pulumi.Asset, path: str, *, triggers: Sequence[Any],
             depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.Resource:
        """A file copied as-is (SFTP over the same SSH connection); locally, `install` does the same."""
        opts = pulumi.ResourceOptions(parent=self.parent, depends_on=list(depends_on))
        if self.target.local:
            assert isinstance(source, pulumi.FileAsset)
            create = shell.script(shell.joined(["install", "-D", "-m", "0644", "--", source.path, path]))
            return command.local.Command(name, create=create, update=create, delete=shell.remove(path),
                                         triggers=triggers, opts=opts)
        return command.remote.CopyToRemote(name, connection=self.connection(), source=source, remote_path=path,
                                           triggers=triggers, opts=opts)

    def connection(self) -> command.remote.ConnectionArgs:
        assert self.target.host is not None
        return command.remote.ConnectionArgs(host=self.target.host, user=self.target.user,
                                             private_key=self.target.private_key)
