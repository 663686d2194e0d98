"""`vzkeep monitoring`: generate alert rules, the Alertmanager route and the Grafana dashboard of a stack."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vzkeep.cli import output
from vzkeep.cli.common import sub_app
from vzkeep.config import load_stack_file, project_root, stack_file
from vzkeep.errors import UsageError
from vzkeep.monitoring import alertmanager as am
from vzkeep.monitoring import render as renderer
from vzkeep.monitoring import rules
from vzkeep.plan import plan_stack

TOKEN_ENV = "VZKEEP_TELEGRAM_BOT_TOKEN"

app = sub_app("Monitoring: alert rules, Alertmanager route to Telegram, Grafana dashboard.")


@app.callback()
def monitoring_group() -> None:
    """Monitoring: alert rules, Alertmanager route to Telegram, Grafana dashboard."""


@app.command("render")
def render(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name: reads Pulumi.<stack>.yaml.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output directory (default: vzkeep:monitoring.localDir, else out/monitoring).")] = None,
    bot_token_file: Annotated[Path | None, typer.Option(
        "--bot-token-file", help=f"File holding the Telegram bot token (else ${TOKEN_ENV}). Needed when the "
        "stack sets vzkeep:monitoring.telegram.")] = None,
    exporter_target: Annotated[list[str] | None, typer.Option(
        "--exporter-target", help="host:port Prometheus scrapes the vzkeep exporter at; repeatable.")] = None,
    runbook_base: Annotated[str, typer.Option(
        "--runbook-base", help="Base URL or path of the alert runbook; alerts link to <base>#<alertname>.")]
    = rules.DEFAULT_RUNBOOK_BASE,
    telegram_api_url: Annotated[str | None, typer.Option(
        "--telegram-api-url", help="Bot API base URL (Alertmanager api_url), e.g. a local relay.")] = None,
    root: Annotated[Path | None, typer.Option(help="Directory holding Pulumi.yaml (default: found upwards).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the written files as JSON.")] = False,
) -> None:
    """Write the stack's Prometheus rules, Alertmanager config and Grafana dashboard.

    Always writes prometheus/rules/vzkeep-<env>.rules.yml (thresholds from the stack: 48 h or two
    schedule gaps for missing backups, 80% storage, the backup window). A stack with
    vzkeep:monitoring.exporterHost also gets the global rules, the scrape job and the dashboard; a stack
    with vzkeep:monitoring.telegram gets alertmanager/alertmanager.yml, which holds the bot token
    (Alertmanager 0.25 has no bot_token_file) and is written with mode 0600. The token is never printed.

    Exit codes: 0 written, 2 bad stack config or missing token.

    Examples:

        vzkeep monitoring render --stack prod --out out/monitoring

        pulumi config get vzkeep:telegramBotToken -s monitoring > /run/tg-token
        vzkeep monitoring render -s monitoring --bot-token-file /run/tg-token --exporter-target pve1:9120

        VZKEEP_TELEGRAM_BOT_TOKEN=... vzkeep monitoring render -s monitoring --json | jq '.files[].path'
    """
    root = root or project_root()
    plan = plan_stack(load_stack_file(stack_file(stack, root)))
    monitoring = plan.settings.monitoring
    telegram = None
    if plan.telegram is not None:
        token = _bot_token(bot_token_file, stack)
        telegram = _telegram_target(plan.telegram.chat_id, token, telegram_api_url, stack)
    options = renderer.RenderOptions(
        exporter_host=bool(monitoring and monitoring.exporter_host),
        telegram=telegram,
        state_bucket=plan.settings.state_bucket is not None,
        runbook_base=runbook_base,
        exporter_targets=tuple(exporter_target or [renderer.DEFAULT_EXPORTER_TARGET]),
    )
    out_dir = out or root / (monitoring.local_dir if monitoring else "out/monitoring")
    try:
        written = renderer.render_monitoring(plan.thresholds, out_dir, options)
    except OSError as err:
        raise UsageError(f"cannot write to {out_dir}: {err.strerror} ({err.filename})",
                         "choose another --out") from None
    _report(stack, plan.thresholds.env, written, as_json)


def _bot_token(path: Path | None, stack: str) -> str:
    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as err:
            raise UsageError(f"--bot-token-file {path}: {err.strerror}",
                             "pass a readable file holding only the token") from None
        if not token:
            raise UsageError(f"--bot-token-file {path} is empty; it must hold the Telegram bot token",
                             "pulumi config get vzkeep:telegramBotToken > FILE")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"stack {stack} sets vzkeep:monitoring.telegram, so the bot token is needed",
                         f"pass --bot-token-file FILE or set {TOKEN_ENV} (the secret vzkeep:telegramBotToken)")
    return token


def _telegram_target(chat_id: int, token: str, api_url: str | None, stack: str) -> am.TelegramTarget:
    try:
        return am.TelegramTarget(chat_id=chat_id, bot_token=token, api_url=api_url)
    except ValueError as err:
        raise UsageError(f"Pulumi.{stack}.yaml: vzkeep:monitoring.telegram: {err}",
                         "check chatId under vzkeep:monitoring.telegram and the bot token") from None


def _report(stack: str, env: str, written: list[renderer.RenderedFile], as_json: bool) -> None:
    files = [{"path": str(f.path), "kind": f.kind, "mode": f"{f.path.stat().st_mode & 0o777:04o}"} for f in written]
    if as_json:
        output.emit_json({"stack": stack, "env": env, "files": files})
        return
    table = Table(title=f"monitoring files of stack {stack} (env {env})")
    for column in ("kind", "mode", "path"):
        table.add_column(column)
    for entry in files:
        table.add_row(entry["kind"], entry["mode"], entry["path"])
    output.console().print(table)
