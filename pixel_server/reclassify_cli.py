"""``pixel-server reclassify``: stored hits judged again under the current rules
(reclassify.py). Registered on cli.py's group when cli.py is imported."""

from __future__ import annotations

import time
from typing import Any

import click

from .cli import load_settings, main, open_existing, settings_options


@main.command()
@click.option("--since", default="30d", show_default=True, help="Hits since (30d, ISO time).")
@click.option("--until", default=None, help="Hits before (default now).")
@click.option("--dry-run", is_flag=True, help="Count what would change; change nothing.")
@settings_options("db")
def reclassify(since: str, until: str | None, dry_run: bool, **options: Any) -> None:
    """Judge stored hits again under the current traffic rules and the burst rules, from what
    each hit stored (never the full address: docs/traffic.md says which rules cannot be
    re-applied exactly), and report the changes per class.

    \b
    Example:
      pixel-server reclassify --since 30d --dry-run
      pixel-server reclassify --since 2026-11-01 --until 2026-12-01
    """
    import asyncio

    from .burstpass import thresholds
    from .networks import load as load_networks
    from .query import QueryError, parse_time
    from .reclassify import Outcome
    from .reclassify import reclassify as run

    settings = load_settings(options)
    now = time.time_ns() // 1_000_000
    try:
        span = (parse_time(since, now, "since"), parse_time(until, now, "until"))
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def work() -> Outcome:
        async with open_existing(settings) as store:
            networks = load_networks(settings.networks)
            return await run(store, span, thresholds(settings), dry_run=dry_run, networks=networks)

    outcome = asyncio.run(work())
    verb = "would change" if dry_run else "changed"
    for (before, after), n in sorted(outcome.changed.items()):
        click.echo(f"{before} -> {after}: {n}")
    total = sum(outcome.changed.values())
    written = "" if dry_run else f" ({outcome.written} written)"
    click.echo(f"{outcome.read} hits read, {verb} {total}{written}")
