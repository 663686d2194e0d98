"""One stack's settings: pydantic models, and the only place stack configuration is parsed.

Stack files (``Pulumi.<env>.yaml``) keep their values under ``config:`` with namespaced keys
(``vzkeep:backup``, ``proxmoxve:endpoint``). Pulumi hands a program those values as strings, objects
JSON-encoded, so both entry points below reduce to the same ``{key: string}`` map before validation:

- ``settings_from_config(values, secret_keys)`` — what the Pulumi program calls with its config;
- ``load_stack_file(path)`` — what the CLI, the sandbox and the tests call on a stack file.

Secure values (``{secure: ...}``) are never decrypted here: the settings only record that a secret
exists. A stack file may come from a fork: it is read with ``vzkeep.yamlfile`` (YAML 1.2 like
Pulumi's reader, bounded, no aliases, no duplicate keys), and a value that looks like a credential is
never printed. Every problem found is reported at once, in one ``ConfigError``, each with the file,
the line, the key path, the value and what is allowed (borgmatic's way).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from vzkeep import credentials
from vzkeep.credentials import CREDENTIAL_KEYS  # noqa: F401  (re-exported: components/stack.py)
from vzkeep.errors import UsageError
from vzkeep.monitoring import EXPORTER_PORT
from vzkeep.pve import calendar
from vzkeep.pve.values import load_zone
from vzkeep.yamlfile import YamlDocument, YamlFileError, load_yaml

PROJECT = "vzkeep"
SECRET_PLACEHOLDER = "[secret]"

# PVE's own identifier formats, so a bad id fails at preview rather than at `pulumi up`.
# Storage ids: pve-storage PVE/Storage/Plugin.pm parse_storage_id (`[a-z][a-z0-9\-\_\.]*[a-z0-9]`).
STORAGE_ID_RE = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"
# Pool ids: pve-access-control PVE/AccessControl.pm verify_poolname (`[A-Za-z0-9\.\-_]+`).
POOL_ID_RE = r"^[A-Za-z0-9.\-_]+$"
# Node names: pve-common JSONSchema.pm pve-node (a DNS label).
NODE_RE = r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$"
ENV_NAME_RE = r"^[a-z][a-z0-9-]{0,31}$"
HHMM_RE = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


_MISSING = object()  # a required key that is not there: shown as `(missing)`
_NO_VALUE = object()  # a problem about a key or the file itself: no value is shown


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a stack's config: where (key path, line), the value, what is allowed."""

    key: str
    value: Any
    allowed: str
    line: int | None = None

    def text(self) -> str:
        """``vzkeep:backup.retention.keepDaily = -1: Input should be greater than or equal to 0``."""
        if self.key == FILE_KEY:
            return self.allowed
        return f"{self.key}{_shown(self.key, self.value)}: {self.allowed}"


FILE_KEY = "(file)"  # a problem with the file itself (not found, not YAML), not with one key


class ConfigError(UsageError, ValueError):
    """A stack's config is wrong: every problem found, each with file, line, key, value and rule.

    ``key``, ``value`` and ``allowed`` are the first problem's; ``problems`` holds them all.
    """

    def __init__(self, source: str, key: str, value: Any, allowed: str, *, line: int | None = None,
                 problems: Sequence[Problem] = (), hint: str | None = None) -> None:
        self.problems = tuple(problems) or (Problem(key, value, allowed, line),)
        first = self.problems[0]
        self.source, self.key, self.value, self.allowed = source, first.key, first.value, first.allowed
        if len(self.problems) == 1:
            super().__init__(f"{_where(source, first.line)}: {first.text()}", hint or _fix_hint(source))
        else:
            super().__init__(
                f"{source} is not a valid vzkeep stack config ({len(self.problems)} problems):",
                hint or _fix_hint(source, plural=True),
                notes=[f"{_where('', p.line).lstrip(' ') or '(config)'}: {p.text()}" for p in self.problems],
            )

    def __str__(self) -> str:
        return "\n".join([self.message, *getattr(self, "__notes__", ())])


def _where(source: str, line: int | None) -> str:
    return f"{source} line {line}" if line is not None else source


def _shown(key: str, value: Any) -> str:
    if value is _NO_VALUE:
        return ""
    if value is _MISSING:
        return " = (missing)"
    if credentials.hidden(key, value):
        return f" = {credentials.HIDDEN}"
    return f" = {json.dumps(value, default=str, ensure_ascii=False)}"


def _fix_hint(source: str, *, plural: bool = False) -> str:
    name = Path(source).name
    if name.startswith("Pulumi.") and name.endswith(".yaml"):
        stack = name.removeprefix("Pulumi.").removesuffix(".yaml")
        return f"fix {'them' if plural else 'it'} in {name}, then run: vzkeep preview --stack {stack}"
    return f"fix {'them' if plural else 'it'} with `pulumi config set`, then run `pulumi preview` again"


class _Model(BaseModel):
    """camelCase keys in stack files, snake_case in Python, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True,
        str_strip_whitespace=True,
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean_path(value: str, *, absolute: bool = True) -> str:
    """A path setting, normalised (``/mnt//backup/./prod/`` → ``/mnt/backup/prod``): absolute, no ``..``,
    no control characters (a path is written into PVE's config, unit files and scripts)."""
    if _CONTROL.search(value):
        raise ValueError("control characters (newline, tab, escape…) are not allowed in a path")
    if absolute and not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path: start it with /")
    if ".." in value.split("/"):
        raise ValueError(f"path {value!r} contains '..': name the directory itself")
    if not value:
        raise ValueError("empty path")
    cleaned = posixpath.normpath(value)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


AbsolutePath = Annotated[str, AfterValidator(_clean_path)]
RelativePath = Annotated[str, AfterValidator(lambda value: _clean_path(value, absolute=False))]


HHMM = Annotated[str, Field(pattern=HHMM_RE, description="local time HH:MM")]
NonNegative = Annotated[int, Field(ge=0)]


class EnvironmentSettings(_Model):
    name: Annotated[str, Field(pattern=ENV_NAME_RE)]
    pool: Annotated[str, Field(pattern=POOL_ID_RE)] | None = None
    nodes: Annotated[list[Annotated[str, Field(pattern=NODE_RE)]], Field(min_length=1)] = ["pve1"]
    timezone: str = "Europe/Paris"
    create_pool: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        load_zone(value)  # UnknownTimeZone is a ValueError: pydantic reports its message with the key
        return value

    @property
    def pool_id(self) -> str:
        return self.pool or self.name


class WindowSettings(_Model):
    start: HHMM = "01:00"
    end: HHMM = "06:00"

    @model_validator(mode="after")
    def _not_empty(self) -> WindowSettings:
        if self.start == self.end:
            raise ValueError(f"window start and end are both {self.start}: the window would be empty")
        return self

    def contains(self, minute_of_day: int) -> bool:
        """True if the local minute lies in [start, end); windows may cross midnight (22:00–04:00)."""
        start, end = _minutes(self.start), _minutes(self.end)
        if start < end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end


class StorageSettings(_Model):
    id: Annotated[str, Field(pattern=STORAGE_ID_RE, max_length=64)] | None = None
    path: str | None = None
    create: bool = True
    shared: bool = False

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"storage path {value!r} is not absolute: use a path such as /mnt/backup/prod")
        return _clean_path(value) if value is not None else None


class RetentionSettings(_Model):
    """PVE's prune-backups options (pve-storage PVE/Storage.pm `prune-backups`), camelCase."""

    keep_all: bool | None = None
    keep_last: NonNegative | None = None
    keep_hourly: NonNegative | None = None
    keep_daily: NonNegative | None = None
    keep_weekly: NonNegative | None = None
    keep_monthly: NonNegative | None = None
    keep_yearly: NonNegative | None = None

    @model_validator(mode="after")
    def _keeps_something(self) -> RetentionSettings:
        counts = {k: v for k, v in self.keeps().items() if v}
        if self.keep_all and counts:
            # PVE's own wording (validate_prune_backups).
            raise ValueError("keep-all cannot be set together with other options.")
        if not self.keep_all and not counts:
            raise ValueError(
                "retention keeps nothing: set at least one of keepLast, keepHourly, keepDaily, keepWeekly, "
                "keepMonthly, keepYearly above 0"
            )
        return self

    def keeps(self) -> dict[str, int]:
        """The keep-N options that are set, in PVE's order, with PVE's names."""
        names = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
        values = {n: getattr(self, f"keep_{n}") for n in names}
        return {f"keep-{n}": v for n, v in values.items() if v is not None}

    def prune_backups(self) -> dict[str, int]:
        """PVE's prune-backups mapping: keep-all alone, or the non-zero keeps."""
        if self.keep_all:
            return {"keep-all": 1}
        return {k: v for k, v in self.keeps().items() if v}


class _ScheduleSettings(_Model):
    """A schedule given as `frequency` (+ `at`, `day`) or as a raw PVE calendar event."""

    frequency: Literal["daily", "weekly"] | None = None
    at: HHMM | None = None
    day: Literal[WEEKDAYS] | None = None  # type: ignore[valid-type]
    schedule: str | None = None

    @model_validator(mode="after")
    def _one_way_to_say_when(self) -> _ScheduleSettings:
        if self.schedule is not None:
            given = [k for k in ("frequency", "at", "day") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"schedule cannot be combined with {', '.join(given)}: use one or the other")
            try:
                calendar.parse(self.schedule)
            except calendar.CalendarEventError as err:
                hint = f" ({err.hint})" if err.hint else ""
                raise ValueError(f"{err.pve_message}{hint}") from None
            return self
        if self.effective_frequency == "weekly" and self.day is None:
            raise ValueError("weekly needs a day: one of " + ", ".join(WEEKDAYS))
        if self.effective_frequency == "daily" and self.day is not None:
            raise ValueError("day is only allowed with frequency weekly")
        return self

    @property
    def effective_frequency(self) -> str:
        return self.frequency or "daily"

    def pve_schedule(self, default_at: str) -> str:
        """The PVE calendar event: daily `HH:MM` runs every day; weekly `sun HH:MM`."""
        if self.schedule is not None:
            return self.schedule
        at = self.at or default_at
        return f"{self.day} {at}" if self.effective_frequency == "weekly" else at


class BackupSettings(_ScheduleSettings):
    window: WindowSettings = WindowSettings()
    mode: Literal["snapshot", "suspend", "stop"] = "snapshot"
    compress: Literal["zstd", "gzip", "lzo", "0"] = "zstd"
    storage: StorageSettings = StorageSettings()
    retention: RetentionSettings = RetentionSettings(keep_daily=7)
    notes_template: Annotated[str, Field(max_length=1024)] | None = None
    bwlimit: NonNegative | None = None
    enabled: bool = True


class RemoteSettings(_ScheduleSettings):
    """Offsite copies on a NAS over NFS (DESIGN.md "Offsite")."""

    server: Annotated[str, Field(min_length=1)]
    export: str
    storage_id: Annotated[str, Field(pattern=STORAGE_ID_RE, max_length=64)] | None = None
    retention: RetentionSettings = RetentionSettings(keep_weekly=4)
    options: str | None = None

    @field_validator("export")
    @classmethod
    def _absolute_export(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"NFS export {value!r} is not absolute: use the server path, e.g. /volume1/pve")
        return _clean_path(value)


class InventoryGuest(_Model):
    """A guest that exists but is not created by this program (it must still be covered)."""

    vmid: Annotated[int, Field(ge=100, le=999_999_999)]
    name: Annotated[str, Field(min_length=1)]
    type: Literal["qemu", "lxc"]
    pool: Annotated[str, Field(pattern=POOL_ID_RE)] | None = None
    node: Annotated[str, Field(pattern=NODE_RE)] | None = None
    disk_gb: Annotated[int, Field(gt=0)] = 8


class TelegramSettings(_Model):
    chat_id: int
    # The bot token is the secret `vzkeep:telegramBotToken`, never a plain value here.


# The characters of a systemd calendar event (systemd.time(7), "CALENDAR EVENTS"): nothing that could end the
# `OnCalendar=` line or start another directive. `systemd-analyze calendar` checks the rest on the host.
SYSTEMD_CALENDAR_RE = r"^[A-Za-z0-9 ,.:*/~+-]{1,64}$"


CalendarEvent = Annotated[str, Field(pattern=SYSTEMD_CALENDAR_RE, description="systemd OnCalendar= event")]


class VerifyTimerSettings(_Model):
    """`vzkeep verify` on a systemd timer of the exporter host, over the directories where it sees archives."""

    schedule: CalendarEvent = "Sun 05:00"
    dirs: Annotated[list[AbsolutePath], Field(min_length=1)]


class DrillTimerSettings(_Model):
    """`vzkeep drill` on a systemd timer of the exporter host (token: the secret `vzkeep:drillApiToken`)."""

    schedule: CalendarEvent = "Sat 10:00"
    env: Annotated[str, Field(pattern=ENV_NAME_RE)] | None = None
    sample: Annotated[int, Field(ge=1, le=100)] = 1


class MonitoringSettings(_Model):
    """How this stack delivers its monitoring files.

    Every environment stack delivers its alert rules; the stack with `exporterHost` also declares the
    exporter's PVE identity and delivers the exporter (wheel, units, config, token, verify and drill
    timers), the Alertmanager route and the dashboard.
    """

    telegram: TelegramSettings | None = None
    deliver_to: Literal["local", "ssh"] = "local"
    local_dir: RelativePath = "out/monitoring"  # deliverTo local: laid out as `vzkeep monitoring render` does
    ssh_host: Annotated[str, Field(min_length=1)] | None = None
    ssh_user: str = "root"
    rules_dir: AbsolutePath = "/etc/prometheus/rules.d"
    scrape_config: AbsolutePath = "/etc/prometheus/scrape-vzkeep.yml"
    alertmanager_config: AbsolutePath = "/etc/prometheus/alertmanager.yml"
    dashboards_dir: AbsolutePath = "/var/lib/grafana/dashboards"
    exporter_host: bool = False  # this stack also delivers the exporter, the route and the dashboard
    exporter_listen: str = f"127.0.0.1:{EXPORTER_PORT}"
    scrape_targets: AbsolutePath = "/etc/prometheus/vzkeep-targets.yml"  # file_sd targets of the vzkeep job
    verify: VerifyTimerSettings | None = None
    drill: DrillTimerSettings | None = None
    exporter_fingerprint: Annotated[str, Field(pattern=r"^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$")] | None = None
    drill_stale_after_days: Annotated[int, Field(ge=1)] = 14

    @model_validator(mode="after")
    def _ssh_needs_a_host(self) -> MonitoringSettings:
        if self.deliver_to == "ssh" and not self.ssh_host:
            raise ValueError("deliverTo ssh needs sshHost: the host running Prometheus and Alertmanager")
        return self


class RetentionFloorSettings(_Model):
    """The least each keep-N option of the environment's local job may be (policy `retention-floor`)."""

    keep_last: NonNegative | None = None
    keep_hourly: NonNegative | None = None
    keep_daily: NonNegative | None = None
    keep_weekly: NonNegative | None = None
    keep_monthly: NonNegative | None = None
    keep_yearly: NonNegative | None = None

    def minimums(self) -> dict[str, int]:
        """PVE's option names (`keep-daily`) of the floors that are set."""
        names = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
        return {f"keep-{n}": v for n in names if (v := getattr(self, f"keep_{n}")) is not None}


class PolicySettings(_Model):
    """Settings the policy pack reads from the stack (through the BackupEnvironment's outputs)."""

    retention_floor: RetentionFloorSettings | None = None


class StateBucketSettings(_Model):
    """The versioned bucket of Pulumi's self-managed backend (DESIGN.md "State")."""

    endpoint: Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$")]  # host:port of the S3 server
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")] = "pulumi-state"
    ssl: bool = False
    region: str = "us-east-1"
    access_key: Annotated[str, Field(min_length=3)] = "vzkeep"
    noncurrent_expiration_days: Annotated[int, Field(ge=1)] = 90
    # The secret key is the secret `vzkeep:s3SecretKey`, never a plain value here.


class ObjectStoreSettings(_Model):
    """An LXC container of the monitoring pool running the S3 server that holds the state."""

    vmid: Annotated[int, Field(ge=100, le=999_999_999)]
    name: Annotated[str, Field(pattern=NODE_RE)] = "s3-state"
    node: Annotated[str, Field(pattern=NODE_RE)] | None = None
    server: Literal["seaweedfs", "minio"] = "seaweedfs"
    template: str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    disk_gb: Annotated[int, Field(gt=0)] = 32
    memory_mb: Annotated[int, Field(ge=256)] = 1024
    datastore: str = "local-lvm"
    bridge: str = "vmbr0"
    address: str | None = None  # CIDR, e.g. 192.168.1.50/24; dhcp when unset
    gateway: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 8333
    install: bool = True  # install and run the server over SSH once the container is up
    ssh_public_key: str | None = None  # root's key in the container; the private key is `vzkeep:sshPrivateKey`

    @model_validator(mode="after")
    def _install_needs_an_address(self) -> ObjectStoreSettings:
        if self.install and self.server == "seaweedfs" and not self.address:
            raise ValueError("install needs a static address (CIDR such as 192.168.1.50/24) to reach the "
                             "container over SSH; set address, or install: false")
        return self


class ProviderSettings(BaseModel):
    """The `proxmoxve:` provider keys we rely on. The token's value never enters the settings."""

    model_config = ConfigDict(frozen=True)
    endpoint: str
    insecure: bool = False
    api_token_present: bool = False
    api_token_secret: bool = False


class StackSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    stack: str
    source: str
    environment: EnvironmentSettings
    backup: BackupSettings
    inventory: tuple[InventoryGuest, ...] = ()
    remote: RemoteSettings | None = None
    monitoring: MonitoringSettings | None = None
    state_bucket: StateBucketSettings | None = None
    object_store: ObjectStoreSettings | None = None
    policy: PolicySettings = PolicySettings()
    provider: ProviderSettings
    secret_keys: frozenset[str] = frozenset()
    plain_keys: frozenset[str] = frozenset()  # every key given, to spot plaintext credentials
    # every key whose name or value looks like a credential (misspelled keys and other namespaces too):
    # the policy pack fails those that are not secrets
    credential_keys: frozenset[str] = frozenset()

    @property
    def env(self) -> str:
        return self.environment.name

    @property
    def storage_id(self) -> str:
        return self.backup.storage.id or f"backup-{self.env}"

    @property
    def storage_path(self) -> str:
        return self.backup.storage.path or f"/mnt/backup/{self.env}"


# ---------------------------------------------------------------------------------------------
# Parsing

_SECTIONS: dict[str, tuple[str, type[BaseModel]]] = {
    "environment": ("environment", EnvironmentSettings),
    "backup": ("backup", BackupSettings),
    "remote": ("remote", RemoteSettings),
    "monitoring": ("monitoring", MonitoringSettings),
    "stateBucket": ("state_bucket", StateBucketSettings),
    "objectStore": ("object_store", ObjectStoreSettings),
    "policy": ("policy", PolicySettings),
}
# Secrets the program reads itself (always `pulumi config set --secret`).
_SCALAR_KEYS = {"telegramBotToken", "s3SecretKey", "sshPrivateKey", "drillApiToken"}
_KNOWN_KEYS = [f"{PROJECT}:{name}" for name in [*_SECTIONS, "inventory", *sorted(_SCALAR_KEYS)]]
_INVALID = object()  # a section whose JSON could not be decoded (already reported)

# Where a key path lies in the stack file: (top key, nested keys or indexes…) → line, or None.
Locate = Callable[[Sequence[str | int]], int | None]


class _Problems:
    """Collects every problem of one stack's config before anything is raised."""

    def __init__(self, source: str, locate: Locate | None) -> None:
        self.source, self.locate, self.found = source, locate, []

    def add(self, path: Sequence[str | int], value: Any, allowed: str) -> None:
        line = self.locate(path) if self.locate else None
        self.found.append(Problem(_dotted(path), value, allowed, line))

    def unknown(self, path: Sequence[str | int], allowed: Sequence[str]) -> None:
        """An unknown key: named with the closest allowed one; its value is never shown."""
        name = str(path[-1])
        close = get_close_matches(name, allowed, n=1, cutoff=0.6)
        if close:
            text = f"unknown key {name} (did you mean {close[0]}?)"
        else:
            text = f"unknown key {name}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        self.add(path, _NO_VALUE, text)

    def raise_if_any(self) -> None:
        if self.found:
            self.found.sort(key=lambda problem: problem.line or 0)  # in file order, as an editor shows them
            first = self.found[0]
            raise ConfigError(self.source, first.key, first.value, first.allowed, line=first.line,
                              problems=self.found)


def _dotted(path: Sequence[str | int]) -> str:
    top, *rest = path
    return str(top) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)


def settings_from_config(
    values: Mapping[str, str], secret_keys: Iterable[str] = (), *, stack: str, source: str = "stack config",
    locate: Locate | None = None,
) -> StackSettings:
    """Validate one stack's config, given as Pulumi hands it over: full keys → strings.

    Every problem is collected and raised together as one ``ConfigError``; ``locate`` gives the line
    of a key path when the values come from a file.
    """
    secret_keys = frozenset(secret_keys)
    problems = _Problems(source, locate)
    sections: dict[str, Any] = {}
    for key, raw in values.items():
        _check_urls(problems, key, raw)
        namespace, _, name = key.partition(":")
        if namespace != PROJECT or name in _SCALAR_KEYS:
            continue
        if name in _SECTIONS or name == "inventory":
            sections[name] = _decode(problems, key, raw)
        else:
            problems.unknown([key], _KNOWN_KEYS)
    if "environment" not in sections:
        problems.add([f"{PROJECT}:environment"], _MISSING, "required: at least {name: <env>}")
    parsed = {}
    for name, (attr, model) in _SECTIONS.items():
        if sections.get(name, _INVALID) is not _INVALID:
            parsed[attr] = _validate(problems, f"{PROJECT}:{name}", model, sections[name])
    inventory = _validate_inventory(problems, sections.get("inventory", []))
    provider = _provider(problems, values, secret_keys)
    problems.raise_if_any()
    parsed.setdefault("backup", BackupSettings())
    settings = StackSettings(
        stack=stack, source=source, inventory=inventory, provider=provider, secret_keys=secret_keys,
        plain_keys=frozenset(values), credential_keys=_credential_keys(values), **parsed,
    )
    _check_cross_section(settings, problems)
    problems.raise_if_any()
    return settings


@dataclass(frozen=True)
class StackDocument:
    """A stack file as read: its ``config:`` mapping and where each key is."""

    path: Path
    stack: str
    config: dict[str, Any]
    yaml: YamlDocument

    def locate(self, path: Sequence[str | int]) -> int | None:
        return self.yaml.line_of(("config", *path))


def load_stack_document(path: Path | str) -> StackDocument:
    """Read ``Pulumi.<stack>.yaml`` as Pulumi would (YAML 1.2), safely; a bad file is a ConfigError."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        known = ", ".join(stack_names(path.parent)) or "none"
        raise ConfigError(source, FILE_KEY, _NO_VALUE, "stack file not found",
                          hint=f"stacks in {path.parent}: {known}")
    try:
        document = load_yaml(path)
    except YamlFileError as err:
        raise ConfigError(source, FILE_KEY, _NO_VALUE, err.problem, line=err.line, hint=err.hint) from None
    data = {} if document.data is None else document.data
    config = data.get("config", {}) if isinstance(data, dict) else None
    if config is None:
        config = {}
    if not isinstance(data, dict) or not isinstance(config, dict):
        raise ConfigError(source, "config", _NO_VALUE, "a stack file is a mapping holding a `config:` mapping",
                          line=document.line_of(("config",)) or 1)
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    return StackDocument(path, stack, config, document)


def settings_from_document(document: StackDocument) -> StackSettings:
    values, secrets = stack_file_values(document.config)
    return settings_from_config(values, secrets, stack=document.stack, source=str(document.path),
                                locate=document.locate)


def load_stack_file(path: Path | str) -> StackSettings:
    """Read ``Pulumi.<stack>.yaml``; secure values become placeholders, never decrypted."""
    return settings_from_document(load_stack_document(path))


def stack_file_values(config: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Turn a stack file's `config:` into what the Pulumi engine gives a program.

    Objects become JSON strings, scalars strings, and `{secure: ...}` ciphertexts a placeholder
    (listed in the returned secret keys), as the Pulumi engine does (pulumi `sdk/go/common/resource/
    config`: object values are passed to a program as JSON).
    """
    values: dict[str, str] = {}
    secrets: set[str] = set()
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = SECRET_PLACEHOLDER
            secrets.add(key)
        elif isinstance(value, str):
            values[key] = value
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        else:
            values[key] = json.dumps(value, default=str)
    return values, secrets


def stack_file(name: str, root: Path | None = None) -> Path:
    """The path of ``Pulumi.<name>.yaml`` under `root` (default: the project root)."""
    return (root or project_root()) / f"Pulumi.{name}.yaml"


def stack_names(root: Path | None = None) -> list[str]:
    root = root or project_root()
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))


def project_root() -> Path:
    """The directory holding Pulumi.yaml: the working directory or one of its parents, else the package's."""
    for candidate in [Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parent.parent]:
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return Path.cwd()


def _decode(problems: _Problems, key: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, TypeError, RecursionError):
        problems.add([key], raw, "expected an object (a YAML mapping in the stack file)")
        return _INVALID


def _validate(problems: _Problems, key: str, model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        for error in err.errors(include_url=False):
            _add_validation_error(problems, key, error, model)
        return None


def _validate_inventory(problems: _Problems, data: Any) -> tuple[InventoryGuest, ...]:
    key = f"{PROJECT}:inventory"
    if data is _INVALID:
        return ()
    if not isinstance(data, list):
        problems.add([key], data, "a list of guests {vmid, name, type, pool?, node?}")
        return ()
    guests: list[InventoryGuest] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(data):
        guest = _validate(problems, f"{key}[{i}]", InventoryGuest, item)
        if guest is None:
            continue
        if guest.vmid in seen:
            problems.add([key, i, "vmid"], guest.vmid,
                         f"duplicated: {key}[{seen[guest.vmid]}] has the same vmid; vmids are unique")
        seen.setdefault(guest.vmid, i)
        guests.append(guest)
    return tuple(guests)


def _provider(problems: _Problems, values: Mapping[str, str], secret_keys: frozenset[str]) -> ProviderSettings | None:
    key = "proxmoxve:endpoint"
    endpoint = values.get(key)
    if not endpoint:
        problems.add([key], _MISSING, "required: the PVE API URL, e.g. https://pve1.home.arpa:8006/")
    elif credentials.has_userinfo(endpoint):
        pass  # reported by _check_urls, without the password
    elif not re.match(r"^https?://[^/\s@]+", endpoint):
        problems.add([key], endpoint, "a URL such as https://pve1.home.arpa:8006/")
    insecure = values.get("proxmoxve:insecure", "false").lower()
    if insecure not in ("true", "false"):
        problems.add(["proxmoxve:insecure"], insecure, "true or false")
    if problems.found:
        return None
    return ProviderSettings(
        endpoint=endpoint, insecure=insecure == "true",
        api_token_present="proxmoxve:apiToken" in values,
        api_token_secret="proxmoxve:apiToken" in secret_keys,
    )


def _check_urls(problems: _Problems, key: str, raw: str) -> None:
    """No URL anywhere in the config may carry a user name or password: it would be stored and shown in
    clear. Reported with the user and password replaced by ***."""
    for path, text in _string_leaves(key, raw):
        for word in text.split():
            if credentials.has_userinfo(word):
                problems.add(path, credentials.without_userinfo(word),
                             "a URL must not hold a user name or password: put credentials in a secret "
                             "(pulumi config set --secret proxmoxve:apiToken …)")


def _string_leaves(key: str, raw: str) -> list[tuple[list[str | int], str]]:
    try:
        decoded = json.loads(raw) if raw[:1] in "{[" else raw
    except (json.JSONDecodeError, RecursionError):
        decoded = raw
    found: list[tuple[list[str | int], str]] = []

    def walk(path: list[str | int], value: Any) -> None:
        if isinstance(value, str):
            found.append((path, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk([*path, k], v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk([*path, i], v)

    walk([key], decoded)
    return found


def _credential_keys(values: Mapping[str, str]) -> frozenset[str]:
    return frozenset(key for key, raw in values.items() if credentials.is_credential(key, raw))


def _check_cross_section(settings: StackSettings, problems: _Problems) -> None:
    """Rules that span sections: inventory pools, offsite vs local storage."""
    for i, guest in enumerate(settings.inventory):
        if guest.node is not None and guest.node not in settings.environment.nodes:
            problems.add([f"{PROJECT}:inventory", i, "node"], guest.node,
                         f"one of the environment's nodes: {', '.join(settings.environment.nodes)}")
    store = settings.object_store
    if store is not None and any(g.vmid == store.vmid for g in settings.inventory):
        problems.add([f"{PROJECT}:objectStore", "vmid"], store.vmid,
                     "already used by a guest of vzkeep:inventory; the container needs its own vmid")
    remote = settings.remote
    if remote is not None and (remote.storage_id or f"offsite-{settings.env}") == settings.storage_id:
        problems.add([f"{PROJECT}:remote", "storageId"], remote.storage_id,
                     f"must differ from the local backup storage {settings.storage_id!r}")


def _add_validation_error(problems: _Problems, key: str, error: Any, model: type[BaseModel]) -> None:
    """One pydantic error as a problem: the full key path, the value, and the rule in plain words."""
    top, _, index = key.partition("[")
    base: list[str | int] = [top] + ([int(index.rstrip("]"))] if index else [])
    loc = list(error["loc"])
    value = _MISSING if error["type"] == "missing" else error.get("input", _MISSING)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        problems.unknown([*base, *loc], _fields_at(model, loc[:-1]))
        return
    if error["type"] == "string_pattern_mismatch":
        message = f"{message} ({_pattern_hint(error['ctx']['pattern'])})"
    if isinstance(value, dict):  # a rule over a whole mapping: the message names what is wrong in it
        value = _NO_VALUE
    problems.add([*base, *loc], value, message)


def _fields_at(model: Any, loc: Sequence[Any]) -> list[str]:
    """The camelCase keys allowed at `loc` inside `model`, for 'unknown key' messages."""
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        annotation = getattr(field, "annotation", None)
        model = next((a for a in _flatten_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _flatten_args(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [inner for arg in args for inner in _flatten_args(arg)]


_PATTERN_HINTS = {
    STORAGE_ID_RE: "PVE storage ids: a lowercase letter, then lowercase letters, digits, '-', '_', '.'",
    POOL_ID_RE: "PVE pool ids use letters, digits, '.', '-', '_'",
    NODE_RE: "a node name is a DNS label: letters, digits, '-'",
    ENV_NAME_RE: "a lowercase id: letters, digits, '-', starting with a letter",
    HHMM_RE: "local time as HH:MM, 00:00 to 23:59",
}


def _pattern_hint(pattern: str) -> str:
    return _PATTERN_HINTS.get(pattern, f"must match {pattern}")


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
