"""``pixel-server loss``: the loss report (loss.py) in a terminal, or as the API's JSON.

Registered on cli.py's group when cli.py is imported; heavy modules load inside the command.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from .cli import load_settings, main, open_existing, settings_options

COLUMNS = (
    ("day", 10),
    ("cid", 16),
    ("sessions", 8),
    ("sent", 8),
    ("received", 8),
    ("lost", 7),
    ("loss", 7),
    ("repeated", 8),
    ("duplicates", 10),
)


@main.command()
@click.option("--since", default="7d", show_default=True, help="Sessions begun since (7d, ISO).")
@click.option("--until", default=None, help="Sessions begun before (default now).")
@click.option("--cid", default=None, help="Only this campaign ('' for events without one).")
@click.option("--json", "as_json", is_flag=True, help="The JSON of GET /api/loss instead.")
@settings_options("db")
def loss(since: str, until: str | None, cid: str | None, as_json: bool, **options: Any) -> None:
    """Events sent but never arrived (gaps in seq), and arrived twice, per day and campaign.

    A session counts on the UTC day it began; docs/events.md explains what is counted.

    \b
    Example:
      pixel-server loss --since 7d
      pixel-server loss --since 2026-11-01 --until 2026-12-01 --cid spring --json
    """
    import asyncio

    from .loss import LossRow, parse_request, total
    from .query import QueryError
    from .terminal import escape, fit

    settings = load_settings(options)
    pairs = [("since", since)] + [
        (k, v) for k, v in (("until", until), ("cid", cid)) if v is not None
    ]
    try:
        span, campaign = parse_request(pairs, time.time_ns() // 1_000_000)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def fetch() -> list[LossRow]:
        async with open_existing(settings) as store:
            return await store.loss_report(span, campaign)

    rows = asyncio.run(fetch())
    if as_json:
        days = [row.as_dict() for row in rows]
        summary = total(rows).summary()
        click.echo(json.dumps({"days": days, "total": summary}, ensure_ascii=False))
        return
    if not rows:
        click.echo("no sessions with numbered events (seq) in that span")
        return
    click.echo("  ".join(fit(name, width) for name, width in COLUMNS).rstrip())
    for row in rows:
        cells = [
            row.date,
            escape(row.cid),
            row.sessions,
            row.sent,
            row.received,
            row.lost,
            f"{row.loss_rate:.2%}",
            row.repeated,
            row.duplicates,
        ]
        line = "  ".join(fit(str(c), w) for c, (_, w) in zip(cells, COLUMNS, strict=True))
        click.echo(line.rstrip())
    whole = total(rows)
    click.echo(
        f"total: {whole.sent} sent, {whole.lost} lost ({whole.loss_rate:.2%}),"
        f" {whole.repeated} repeated, {whole.duplicates} duplicates suppressed"
    )


@main.command()
@click.argument("cid")
@click.option("--since", default=None, help="Hits since (ISO, epoch ms, 7d; default: all).")
@click.option("--until", default=None, help="Hits before (default now).")
@click.option("--machines", is_flag=True, help="Count machine classes in the totals too.")
@click.option("--json", "as_json", is_flag=True, help="The JSON of GET /api/campaigns/CID.")
@settings_options("db")
def campaign(
    cid: str,
    since: str | None,
    until: str | None,
    machines: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """A campaign's opens, clicks, unique ones, CTOR and links: people, then machines.

    People are human and mail-proxy hits; machine classes (Apple MPP, scanners, bots) are
    shown apart with their reasons. docs/campaigns.md defines every figure.

    \b
    Example:
      pixel-server campaign spring
      pixel-server campaign spring --since 2026-11-01 --machines --json
    """
    import asyncio

    from .query import QueryError
    from .totals import Campaign, campaign_totals, parse_request

    settings = load_settings(options)
    pairs = [(k, v) for k, v in (("since", since), ("until", until)) if v is not None]
    pairs.append(("machines", "1" if machines else "0"))
    try:
        span, include = parse_request(
            cid, pairs, time.time_ns() // 1_000_000, settings.max_value_chars
        )
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def fetch() -> Campaign:
        async with open_existing(settings) as store:
            return await store.campaign_groups(cid, span)

    report = campaign_totals(cid, span, asyncio.run(fetch()), include)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    from .campaigns_table import campaign_table

    click.echo(campaign_table(report))
