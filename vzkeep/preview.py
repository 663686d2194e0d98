"""Run the real Pulumi program of one stack under Pulumi's mocks and record what it declares.

No provider is called and nothing is decrypted: this is the technique Pulumi documents for unit
tests ("Unit testing Pulumi programs": ``pulumi.runtime.set_mocks``), turned into a product feature so
a pull request can be checked without credentials. Tests and `vzkeep preview` share it.
"""

from __future__ import annotations

import logging
import runpy
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from vzkeep import credentials
from vzkeep.config import PROJECT, StackSettings, load_stack_document, settings_from_document, stack_file_values
from vzkeep.plan import plan_stack

SECRET_SIG_KEY = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_SIG_VALUE = rpc._special_secret_sig


@dataclass
class Registration:
    """One resource the program registered, as the engine would have seen it."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    custom: bool
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    provider: str = ""
    protect: bool = False
    read: bool = False  # `Resource.get(...)`: read from the cluster, not managed
    read_id: str = ""  # the id a read looks up
    outputs: dict[str, Any] = field(default_factory=dict)  # components: what register_outputs gave


@dataclass
class ProgramRun:
    stack: str
    settings: StackSettings
    registrations: list[Registration]
    outputs: dict[str, Any]
    warnings: list[str] = field(default_factory=list)  # what the program logged with pulumi.log.warn, once each

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def job(self, job_id: str | None = None) -> Registration:
        """The backup job with PVE id `job_id` (default: the environment's main job `vzkeep-<stack>`)."""
        wanted = job_id or f"vzkeep-{self.stack}"
        return next(r for r in self.of_type("proxmoxve:backup/job:Job") if r.inputs.get("resourceId") == wanted)

    def one(self, type_token: str) -> Registration:
        found = self.of_type(type_token)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_token}, the program declared {len(found)}")
        return found[0]


class Provisioner(Protocol):
    """What answers the program's registrations: the engine's part of `pulumi up` or `pulumi preview`.

    `register` gets each resource the program declares (or reads, `registration.read`) and returns its
    id and outputs, as a provider's Create/Update/Read would. The default echoes the inputs (a provider
    that accepts everything, no network); `vzkeep sandbox apply` answers with the sandbox's PVE.
    """

    def register(self, registration: Registration) -> tuple[str, dict[str, Any]]: ...


class EchoProvisioner:
    """Echo inputs as outputs, like a provider that accepted everything (no network)."""

    def register(self, registration: Registration) -> tuple[str, dict[str, Any]]:
        if registration.read:  # a read: pretend the cluster has it
            return registration.read_id, {**registration.inputs, "resourceId": registration.read_id}
        return f"{registration.name}-id", dict(registration.inputs)


class _Mocks(pulumi.runtime.Mocks):
    """Invokes answer nothing; registrations never reach here (the monitor hands them to a Provisioner)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        raise AssertionError("registrations are answered by the Provisioner")

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


class _WarningLog(logging.Handler):
    """Keeps what the program logs at warning level and above (under mocks, pulumi.log goes to a logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


def _program_logger() -> tuple[logging.Logger, _WarningLog]:
    logger = logging.Logger("vzkeep.preview.program")  # not registered: nothing else sees these records
    handler = _WarningLog()
    logger.addHandler(handler)
    return logger, handler


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps what `MockResourceArgs` lacks (parent, dependencies, protect, components' outputs) and lets a
    `Provisioner` answer each registration with the whole `Registration` in hand."""

    def __init__(self, mocks: _Mocks, provisioner: Provisioner) -> None:
        super().__init__(mocks)
        self.provisioner = provisioner
        self.registrations: list[Registration] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        urn = self.make_urn(request.parent, request.type, request.name)
        registration = self._registration(request, urn, read=False)
        resource_id, state = self._provision(registration, request)
        obj = _serialize(state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=obj)

    def ReadResource(self, request: Any) -> Any:
        urn = self.make_urn(request.parent, request.type, request.name)
        registration = self._registration(request, urn, read=True)
        _, state = self._provision(registration, request)
        return resource_pb2.ReadResourceResponse(urn=urn, properties=_serialize(state))

    def RegisterResourceOutputs(self, request: Any) -> Any:
        outputs = rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        with self._lock:
            self.component_outputs[request.urn] = outputs
        return super().RegisterResourceOutputs(request)

    def _provision(self, registration: Registration, request: Any) -> tuple[str, dict[str, Any]]:
        resource_id, state = self.provisioner.register(registration)
        # What the provider declares secret (`additional_secret_outputs`) comes back as a secret.
        for key in getattr(request, "additionalSecretOutputs", []) or []:
            if key in state and state[key] is not None and not is_secret(state[key]):
                state[key] = {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": state[key]}
        with self._lock:
            self.resources[registration.urn] = pulumi_mocks.MockMonitor.ResourceRegistration(
                registration.urn, resource_id, state)
            self.registrations.append(registration)
        return resource_id, state

    @staticmethod
    def _registration(request: Any, urn: str, *, read: bool) -> Registration:
        _ensure_event_loop()  # deserializing resource references needs a loop on this thread
        inputs = rpc.deserialize_properties(request.properties if read else request.object)
        return Registration(
            type=request.type, name=request.name, urn=urn, inputs=dict(inputs),
            custom=bool(getattr(request, "custom", True)) or read, parent=request.parent,
            dependencies=list(getattr(request, "dependencies", [])), provider=request.provider,
            protect=bool(getattr(request, "protect", False)), read=read, read_id=request.id if read else "",
        )


def _serialize(state: dict[str, Any]) -> Any:
    return _sync_await(rpc.serialize_properties(state, {}))


def run_stack_file(path: Path | str, *, root: Path | None = None) -> ProgramRun:
    """Validate `Pulumi.<stack>.yaml`, then run the program in `root` with its config under mocks.

    `root` defaults to the stack file's directory when it holds the program, else to this checkout.
    """
    path = Path(path)
    document = load_stack_document(path)  # read once: the settings and the program see the same values
    settings = settings_from_document(document)
    plan_stack(settings)  # every ConfigError surfaces here, before anything is declared
    values, secrets = stack_file_values(document.config)
    return run_program(settings.stack, values, secrets, root=root or program_root(path), settings=settings)


def program_root(stack_path: Path) -> Path:
    here = stack_path.resolve().parent
    if (here / "__main__.py").is_file():
        return here
    return Path(__file__).resolve().parent.parent


def _drop_loop_teardown_noise(unraisable: Any) -> None:
    """Pulumi's mock monitor gives each worker thread an event loop it never closes; at exit their
    `__del__` fails on an already closed self-pipe. Harmless, but it would end every preview with a
    traceback, so only that one case is silenced; everything else reaches the default hook."""
    obj = getattr(unraisable, "object", None)
    if getattr(obj, "__qualname__", "") == "BaseEventLoop.__del__" or isinstance(obj, socket.socket):
        return
    _default_unraisable_hook(unraisable)


_default_unraisable_hook = sys.unraisablehook


def run_program(
    stack: str, values: dict[str, str], secret_keys: set[str], *, root: Path,
    settings: StackSettings | None = None, provisioner: Provisioner | None = None, dry_run: bool = True,
) -> ProgramRun:
    """Run `<root>/__main__.py` with the given config (full keys → strings) under recording mocks.

    `provisioner` answers each registration (default: echo the inputs); `dry_run` is what
    `pulumi.runtime.is_dry_run()` tells the program (preview: True, `up`: False).
    """
    sys.unraisablehook = _drop_loop_teardown_noise
    mocks = _Mocks()
    monitor = _RecordingMonitor(mocks, provisioner or EchoProvisioner())
    logger, warnings = _program_logger()
    # set_mocks keeps an existing root Stack, and with it the previous run's exports: start afresh.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=dry_run, monitor=monitor, logger=logger)
    pulumi.runtime.set_all_config(values, sorted(secret_keys))
    outputs: dict[str, Any] = {}
    with _importable(root):
        _run_main(root / "__main__.py", outputs)
    if settings is None:
        from vzkeep.config import settings_from_config

        settings = settings_from_config(values, secret_keys, stack=stack)
    for registration in monitor.registrations:
        registration.outputs = monitor.component_outputs.get(registration.urn, {})
    return ProgramRun(stack=stack, settings=settings, registrations=monitor.registrations, outputs=outputs,
                      warnings=warnings.messages)


@pulumi.runtime.test
def _run_main(main: Path, outputs: dict[str, Any]) -> pulumi.Output[None]:
    # `@pulumi.runtime.test` waits for every outstanding registration and for the returned Output
    # (pulumi/runtime/mocks.py, `test`): without it, half the resources would be missing.
    runpy.run_path(str(main), run_name="__main__")
    exported = getattr(pulumi.runtime.settings.get_root_resource(), "outputs", {})
    return pulumi.Output.all(**exported).apply(outputs.update)


class _importable:
    """Put the program's directory first on sys.path so `import components` finds its components."""

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve())

    def __enter__(self) -> None:
        sys.path.insert(0, self.root)

    def __exit__(self, *exc: object) -> None:
        if self.root in sys.path:
            sys.path.remove(self.root)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE


def masked(value: Any, key: str = "") -> Any:
    """The value with every secret replaced by a placeholder, for printing; a plain value that looks like
    a credential (by its key or its shape: a stack from a fork may hold one in clear) is hidden too."""
    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if isinstance(value, str) and credentials.is_credential(key, value):
        return "[hidden: plain credential]"
    return value


def walk_secrets(value: Any) -> Iterator[Any]:
    """Every secret envelope inside a value (for tests proving nothing leaks)."""
    if is_secret(value):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from walk_secrets(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk_secrets(v)
