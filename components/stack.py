"""The whole program of one stack: read its settings, plan, declare, export."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi.runtime import config as runtime_config

from components.backup_environment import BackupEnvironment, BackupEnvironmentArgs
from components.backup_monitoring import BackupMonitoring, BackupMonitoringArgs
from components.exporter_identity import ExporterIdentity, ExporterIdentityArgs
from components.object_store import ObjectStore, ObjectStoreArgs
from components.state_bucket import StateBucket, StateBucketArgs, minio_provider
from vzkeep.config import CREDENTIAL_KEYS, StackSettings, settings_from_config
from vzkeep.plan import StackPlan, plan_stack

NEXT_RUNS_SHOWN = 5
ROOT = Path(__file__).resolve().parent.parent  # the checkout: locks/ and the sources of the exporter's wheel


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
    if environment.remote is not None:
        pulumi.export("offsiteStorageId", environment.remote.storage_id)
        pulumi.export("offsiteJobId", environment.remote.job_id)
    declare_state(settings, provider, environment)
    declare_monitoring(plan, provider)
    return plan


def declare_monitoring(plan: StackPlan, provider: proxmoxve.Provider) -> None:
    """The stack's alert rules (and, on the exporter host, the exporter's identity and deployment)."""
    settings = plan.settings
    if settings.monitoring is None:
        return
    cfg = pulumi.Config("vzkeep")
    monitoring = settings.monitoring
    exporter_token = None
    if plan.exporter_identity is not None:
        identity = ExporterIdentity(f"{plan.env}-exporter-identity", ExporterIdentityArgs(plan.exporter_identity),
                                    opts=pulumi.ResourceOptions(providers={"proxmoxve": provider}))
        exporter_token = identity.token
    BackupMonitoring(
        f"{plan.env}-monitoring",
        BackupMonitoringArgs(
            plan=plan, settings=monitoring, provider=settings.provider, root=ROOT,
            telegram_bot_token=_secret(cfg, "telegramBotToken") if monitoring.telegram else None,
            exporter_token=exporter_token,
            drill_token=_secret(cfg, "drillApiToken") if monitoring.exporter_host and monitoring.drill else None,
            ssh_private_key=_secret(cfg, "sshPrivateKey") if monitoring.deliver_to == "ssh" else None,
        ),
    )


def declare_state(settings: StackSettings, provider: proxmoxve.Provider, environment: BackupEnvironment) -> None:
    """The monitoring stack's S3 server and the versioned state bucket, when configured."""
    if settings.object_store is None and settings.state_bucket is None:
        return
    cfg = pulumi.Config("vzkeep")
    secret_key = _secret(cfg, "s3SecretKey")
    server: list[pulumi.Resource] = []
    if settings.object_store is not None:
        store = settings.object_store
        object_store = ObjectStore(
            f"{settings.env}-object-store",
            ObjectStoreArgs(
                settings=store, node=store.node or settings.environment.nodes[0],
                pool_id=environment.pool.pool_id,
                access_key=settings.state_bucket.access_key if settings.state_bucket else "vzkeep",
                secret_key=secret_key, ssh_private_key=_secret(cfg, "sshPrivateKey"), root=ROOT,
                depends_on=[environment.pool],
            ),
            opts=pulumi.ResourceOptions(providers={"proxmoxve": provider}),
        )
        # The bucket is created through the server's S3 API: the server must be installed and running.
        server = [object_store.install or object_store.container]
    if settings.state_bucket is not None:
        bucket = StateBucket(
            "state", StateBucketArgs(settings.state_bucket, depends_on=server),
            opts=pulumi.ResourceOptions(providers={"minio": minio_provider(settings.state_bucket, secret_key)}),
        )
        pulumi.export("stateBackendUrl", bucket.backend_url)


def _secret(cfg: pulumi.Config, key: str) -> pulumi.Output[str] | None:
    """A secret from stack config; missing is a warning in preview and an error in `pulumi up`."""
    value = cfg.get_secret(key)
    if value is None:
        message = f"vzkeep:{key} is not set: run `pulumi config set --secret vzkeep:{key} <value>`"
        if not pulumi.runtime.is_dry_run():
            raise pulumi.RunError(message)
        pulumi.log.warn(message)
    return value


def local_time(epoch: int, tz: str) -> str:
    return datetime.fromtimestamp(epoch, ZoneInfo(tz)).isoformat()


def read_settings() -> StackSettings:
    """Every config value of the stack, exactly as the engine hands them over, parsed by vzkeep.config."""
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = {key for key in values if runtime_config.is_config_secret(key)}
    return settings_from_config(values, secret_keys, stack=pulumi.get_stack())


def credential_kinds(settings: StackSettings) -> dict[str, str]:
    """For each credential the stack config holds: "secret" or "plain" (never the value). Misspelled keys
    and values shaped like credentials count too (``settings.credential_keys``)."""
    return {key: ("secret" if key in settings.secret_keys else "plain")
            for key in sorted((CREDENTIAL_KEYS & settings.plain_keys) | settings.credential_keys)}


def proxmox_provider(settings: StackSettings) -> proxmoxve.Provider:
    """An explicit provider: the bridged provider's nested configuration is not read from stack config
    (pulumi-proxmoxve README)."""
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
