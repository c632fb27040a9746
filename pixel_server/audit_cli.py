"""``pixel-server audit``: the audit (audit.py) as a table or JSON; exit status 1 when a
threshold is crossed, 2 for a usage or config error. Registered on cli.py's group."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from .cli import load_settings, main, open_existing, settings_options

NAME_WIDTH = 20
VALUE_WIDTH = 12


@main.command()
@click.option("--since", default="7d", show_default=True, help="From (7d, ISO, epoch ms).")
@click.option("--until", default=None, help="Until (default now).")
@click.option("--cid", default=None, help="Only this campaign.")
@click.option(
    "--config",
    "config_path",
    default=None,
    help="Expectations and thresholds (JSON; default PIXEL_AUDIT_CONFIG).",
)
@click.option("--format", "output", type=click.Choice(("table", "json")), default="table")
@settings_options("db", "event_schemas", "report_zone")
def audit(
    since: str,
    until: str | None,
    cid: str | None,
    config_path: str | None,
    output: str,
    **options: Any,
) -> None:
    """Check that tracking works: duplicates, lost events, missing and unknown parameters,
    schema violations, invalid tokens, machine share, campaigns that stopped or dropped.

    Exits 1 when a threshold is crossed (for cron and CI), 0 when every check passes.
    docs/audit.md explains each check and the config file.

    \b
    Example:
      pixel-server audit --since 7d
      pixel-server audit --cid spring --config audit.json --format json
    """
    import asyncio

    from .audit import Audit, AuditConfig, AuditConfigError, check_span, load_config, run
    from .eventschema import load
    from .query import QueryError, parse_time
    from .terminal import escape, fit

    settings = load_settings(options)
    path = config_path if config_path is not None else settings.audit_config
    try:
        config = load_config(path) if path else AuditConfig()
    except AuditConfigError as exc:
        raise click.UsageError(str(exc)) from None
    now = time.time_ns() // 1_000_000
    try:
        start = parse_time(since, now, "since") or 0
        end = parse_time(until, now, "until") or now
        check_span((start, end))
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None
    registry = load(settings.event_schemas) if settings.event_schemas else None

    async def work() -> Audit:
        async with open_existing(settings) as store:
            return await run(store, (start, end), cid, config, registry, settings.report_zone)

    report = asyncio.run(work())
    if output == "json":
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        head = [fit("check", NAME_WIDTH), fit("value", VALUE_WIDTH), fit("threshold", VALUE_WIDTH)]
        click.echo("  ".join(head) + "  result")
        for check in report.checks:
            shown = check.as_dict()
            value = f"{check.value:.2%}" if isinstance(check.value, float) else str(check.value)
            limit = "-" if check.threshold is None else str(check.threshold)
            verdict = "ok" if check.ok else "FAIL"
            detail = shown.get("top") or shown.get("campaigns") or {}
            extra = ", ".join(f"{escape(k)} ({escape(v)})" for k, v in list(detail.items())[:5])
            line = [fit(check.name, NAME_WIDTH), fit(value, VALUE_WIDTH), fit(limit, VALUE_WIDTH)]
            click.echo(("  ".join(line) + f"  {verdict}  {extra}").rstrip())
        click.echo("audit: ok" if report.ok else "audit: FAILED (a threshold was crossed)")
    if not report.ok:
        raise SystemExit(1)
