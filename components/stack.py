"""The whole program of one stack: read its settings, plan, declare, export."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi.runtime import config as runtime_config

from components.backup_environment import BackupEnvironment, BackupEnvironmentArgs
from vzkeep.config import CREDENTIAL_KEYS, StackSettings, settings_from_config
from vzkeep.plan import StackPlan, plan_stack

NEXT_RUNS_SHOWN = 5


def build_stack() -> StackPlan:
    """Declare one environment's backups; `__main__.py` calls this and nothing else."""
    settings = read_settings()
    plan = plan_stack(settings)
    provider = proxmox_provider(settings)
    environment = BackupEnvironment(
        plan.env,
        BackupEnvironmentArgs(plan=plan, credentials=credential_kinds(settings)),
        opts=pulumi.ResourceOptions(providers={"proxmoxve": provider}),
    )
    pulumi.export("pool", environment.pool.pool_id)
    pulumi.export("storageId", environment.storage.storage_id)
    pulumi.export("jobId", environment.schedule.job_id)
    pulumi.export("schedule", plan.job.schedule)
    pulumi.export("timezone", plan.job.timezone)
    pulumi.export("nextRuns", [local_time(t, plan.job.timezone) for t in plan.job.next_runs(NEXT_RUNS_SHOWN)])
    pulumi.export("retention", environment.retention.summary)
    return plan


def local_time(epoch: int, tz: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(tz)).isoformat()


def read_settings() -> StackSettings:
    """Every config value of the stack, exactly as the engine hands them over, parsed by vzkeep.config."""
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {key for key in values if runtime_config.is_config_secret(key)}
    return settings_from_config(values, secret_keys, stack=pulumi.get_stack())


def credential_kinds(settings: StackSettings) -> dict[str, str]:
    """For each credential the stack config holds: "secret" or "plain" (never the value)."""
    return {key: ("secret" if key in settings.secret_keys else "plain")
            for key in sorted(CREDENTIAL_KEYS & settings.plain_keys)}


def proxmox_provider(settings: StackSettings) -> proxmoxve.Provider:
    """An explicit provider: the bridged provider's nested config is not read (reference §5.7)."""
    cfg = pulumi.Config("proxmoxve")
    # A secret token stays a secret Output. A plain one is passed as given, and the policy pack's
    # no-plaintext-secrets rule fails the preview instead of the mistake being hidden.
    token = cfg.get_secret("apiToken") if settings.provider.api_token_secret else cfg.get("apiToken")
    return proxmoxve.Provider(
        "proxmoxve",
        endpoint=settings.provider.endpoint,
        api_token=token,
        insecure=settings.provider.insecure,
    )
