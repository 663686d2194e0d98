"""State locks: reading Pulumi's and Terraform's, and taking one of our own that both tools respect.

**Pulumi** (pulumi `pkg/backend/diy/lock.go`): `Lock` lists the stack's lock directory (`listBucket`:
prefix `<dir>/`, delimiter `/`, so only direct children count), refuses if any object other than its own
is there, writes its own `<dir>/<uuid>.json`, and lists again (undoing its lock if another appeared). The
lock file is `json.Marshal(lockContent)`::

    {"pid":48213,"username":"alice","hostname":"laptop","timestamp":"2026-11-26T21:14:07.318274912+01:00"}

(`timestamp` is Go's `time.Now()`, RFC 3339 with nanoseconds and the local offset). An object we write
into that directory, in that format, therefore stops any `pulumi up` that starts while it is there, and
Pulumi names it in its error: "created by <user>@<host> (pid N) at <time>".

**Terraform** (`internal/backend/remote-state/s3/client.go` `lockWithFile`, Terraform >= 1.10 with
`use_lockfile = true`): the lock is `<state key>.tflock`, written with `If-None-Match: *`, holding
`json.Marshal(statemgr.LockInfo)` (`ID`, `Operation`, `Info`, `Who`, `Version`, `Created`, `Path`); it
is the same object for every client, so ours excludes Terraform exactly as another Terraform would.

**Ours** is written with `If-None-Match: *` at a fixed key (`StateTarget.restore_lock_key`), so two
restores can never both hold it, then written a second time with the same condition: a server that
honours conditional writes must refuse that second write (it does: SeaweedFS checks the condition and
writes under one per-object lock, seaweedfs `weed/s3api/s3api_object_handlers_put.go`
`withObjectWriteLock`); one that accepts it would let two restores both "win", so the restore refuses.
The lock is released with a DELETE conditional on its ETag, so it never removes someone else's.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vzkeep import __version__
from vzkeep.state.s3 import (
    RestoreRefused,
    StateError,
    client_error_text,
    object_head,
    paginate,
    precondition_failed,
    transport_error_text,
)
from vzkeep.state.targets import StateTarget

MAX_LOCK_BYTES = 64 * 1024  # a lock file is a few hundred bytes; never read a huge object into a message


@dataclass(frozen=True)
class Lock:
    """A lock found on the target: its key, whose it is and since when (from its content), when written."""

    key: str
    kind: str  # "pulumi" | "terraform": whose format the content is in
    owner: str  # "alice@laptop (pid 48213)", or Terraform's "Who for Operation (lock ID …)"
    since: str | None  # the time the content gives (Pulumi `timestamp`, Terraform `Created`), RFC 3339
    written: datetime | None  # the object's LastModified, by the server's clock
    content: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def description(self) -> str:
        # Pulumi's own words (pkg/backend/diy/lock.go checkForLock): "created by user@host (pid N) at time".
        text = f"created by {self.owner} at {self.since or '?'}" if self.kind == "pulumi" else (
            f"held by {self.owner} since {self.since or '?'}")
        if self.written is not None:
            text += f" (lock object written {self.written.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"
        return text


@dataclass(frozen=True)
class HeldLock:
    """Our own lock: its key and the ETag of what we wrote (released only while it is still ours)."""

    key: str
    etag: str


# --- reading locks -------------------------------------------------------------------------------------


def find_locks(client: Any, bucket: str, target: StateTarget, *, ignore: str | None = None) -> list[Lock]:
    """Locks held on the target now, except the object `ignore` (our own): Pulumi's or Terraform's."""
    if target.lock_key:
        head = object_head(client, bucket, target.lock_key)
        if head is None or target.lock_key == ignore:
            return []
        return [_terraform_lock(target.lock_key, _read_json(client, bucket, target.lock_key), head.get("LastModified"))]
    locks = []
    for directory in target.lock_dirs:
        # Exactly Pulumi's listing: direct children of the directory, whatever their name.
        for page in paginate(client, "list_objects_v2", Bucket=bucket, Prefix=directory, Delimiter="/"):
            for item in page.get("Contents", []):
                if item["Key"] != ignore and item["Key"] != directory:
                    content = _read_json(client, bucket, item["Key"])
                    locks.append(_pulumi_lock(item["Key"], content, item.get("LastModified")))
    return locks


def refuse_if_locked(client: Any, bucket: str, target: StateTarget, *, ignore: str | None = None) -> None:
    locks = find_locks(client, bucket, target, ignore=ignore)
    if not locks:
        return
    listed = "; ".join(f"{lock.key} {lock.description}" for lock in locks)
    if target.kind == "pulumi":
        hint = ("wait for the running `pulumi` (or `vzkeep state restore`) to end; if its process died, remove "
                "the lock with `pulumi cancel` (or delete the object above) and retry")
    else:
        hint = ("wait for the running `terraform` (or `vzkeep state restore`) to end; if it died, remove the "
                "lock with `terraform force-unlock <ID>` and retry")
    raise RestoreRefused(f"{target.label} is locked by {len(locks)} lock(s): {listed}. Nothing was changed", hint)


def _pulumi_lock(key: str, content: dict[str, Any], written: datetime | None) -> Lock:
    owner = f"{content.get('username', '?')}@{content.get('hostname', '?')} (pid {content.get('pid', '?')})"
    return Lock(key, "pulumi", owner, _rfc3339(content.get("timestamp")), written, content)


def _terraform_lock(key: str, content: dict[str, Any], written: datetime | None) -> Lock:
    owner = f"{content.get('Who', '?')} for {content.get('Operation') or '?'} (lock ID {content.get('ID', '?')})"
    return Lock(key, "terraform", owner, _rfc3339(content.get("Created")), written, content)


def _rfc3339(value: Any) -> str | None:
    """A Go `time.Time` from JSON, shown as Pulumi shows it (`Format(time.RFC3339)`: seconds, with offset)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value  # shown as written: the lock still blocks
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _read_json(client: Any, bucket: str, key: str) -> dict[str, Any]:
    # A lock blocks whatever its content; the content only makes the message more helpful.
    with contextlib.suppress(StateError, ValueError, ClientError, BotoCoreError):
        response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_LOCK_BYTES - 1}")
        document = json.loads(response["Body"].read())
        if isinstance(document, dict):
            return document
    return {}


# --- our own lock --------------------------------------------------------------------------------------


def lock_content(target: StateTarget, bucket: str, purpose: str, now: datetime | None = None) -> bytes:
    """Our lock's bytes, in the format of the tool that owns the lock path (so that it can read it)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    user, host = _username(), socket.gethostname()
    stamp = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if target.kind == "pulumi":
        document: dict[str, Any] = {"pid": os.getpid(), "username": user, "hostname": host, "timestamp": stamp}
    else:
        document = {"ID": str(uuid.uuid4()), "Operation": "vzkeep state restore", "Info": purpose,
                    "Who": f"{user}@{host}", "Version": __version__, "Created": stamp,
                    "Path": f"{bucket}/{target.key}"}
    return json.dumps(document, separators=(",", ":")).encode()


def acquire(client: Any, bucket: str, target: StateTarget, purpose: str, now: datetime | None = None) -> HeldLock:
    """Take the restore lock on `target`, or raise RestoreRefused naming who holds it."""
    key = target.restore_lock_key
    body = lock_content(target, bucket, purpose, now)
    try:
        etag = _put_if_absent(client, bucket, key, body)
    except _Taken:
        held = find_locks(client, bucket, target) or []
        holder = next((lock for lock in held if lock.key == key), None)
        who = f": {holder.description}" if holder else ""
        raise RestoreRefused(
            f"{target.label} is locked: {key}{who}. Another `vzkeep state restore` (or "
            f"{'Terraform' if target.kind == 'terraform' else 'a tool'}) holds it; nothing was changed",
            "wait for it to end and list the versions again; if its process died, delete that lock object",
        ) from None
    mine = HeldLock(key, etag)
    try:
        _put_if_absent(client, bucket, key, body)
    except _Taken:
        return mine
    release(client, bucket, mine)
    raise RestoreRefused(
        f"the S3 server accepted a second If-None-Match: * write of {key}: it ignores conditional writes, "
        "so two restores (or Terraform's lock) could not exclude each other; nothing was changed",
        "use a server that honours If-None-Match (SeaweedFS, MinIO, AWS S3); `vzkeep state check` tests it",
    )


def release(client: Any, bucket: str, held: HeldLock) -> None:
    """Delete our lock as Pulumi and Terraform delete theirs (a plain DELETE), only if it is still ours.

    `If-Match` keeps us from deleting a lock someone else wrote over ours; a plain delete (a delete marker
    in a versioned bucket, old lock versions expire with the lifecycle rule) rather than deleting versions,
    because SeaweedFS then lists the emptied lock directory itself as an object, which Pulumi would take
    for a lock.
    """
    try:
        client.delete_object(Bucket=bucket, Key=held.key, IfMatch=held.etag)
    except ClientError as exc:
        if precondition_failed(exc):
            return  # not ours any more: leave it to whoever wrote it
        raise StateError(client_error_text(exc, f"s3://{bucket}/{held.key}") +
                         "; the restore lock is still there: delete it once nothing runs") from exc
    except BotoCoreError as exc:
        raise StateError(transport_error_text(exc)) from exc


class _Taken(Exception):
    """The lock key already exists (the conditional write was refused)."""


def _put_if_absent(client: Any, bucket: str, key: str, body: bytes) -> str:
    try:
        response = client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*",
                                     ContentType="application/json")
    except ClientError as exc:
        if precondition_failed(exc):
            raise _Taken from None
        raise StateError(client_error_text(exc, f"s3://{bucket}/{key}")) from exc
    except BotoCoreError as exc:
        raise StateError(transport_error_text(exc)) from exc
    return response["ETag"]


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): Go's user.Current() would fail the same way
        return str(os.getuid())
