"""``pixel-server purge`` (retention.py) and ``pixel-server admin-log`` (adminlog.py).
Registered on cli.py's group when cli.py is imported."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from .cli import load_settings, main, open_existing, settings_options


@main.command()
@click.option("--dry-run", is_flag=True, help="Say what would be purged; change nothing.")
@click.option("--format", "output", type=click.Choice(("text", "json")), default="text")
@settings_options("db", "retain_days", "retain_raw_days", "retain_raw_fields", "report_zone")
def purge(dry_run: bool, output: str, **options: Any) -> None:
    """Delete the hits older than PIXEL_RETAIN_DAYS and clear the raw fields of those older
    than PIXEL_RETAIN_RAW_DAYS, now; then give the space back to the system (SQLite:
    incremental vacuum, or a VACUUM on a database made before it; PostgreSQL: whole months
    dropped, the rest vacuumed). The reports' rollups are kept. The server does the same
    every hour by itself; each purge is written to the admin log. docs/privacy.md.

    \b
    Example:
      pixel-server purge --retain-days 395 --retain-raw-days 30 --dry-run
      pixel-server purge --retain-days 395
    """
    import asyncio

    from .retention import RollupsIncomplete, plan, purge

    settings = load_settings(options)
    the_plan = plan(settings, time.time_ns() // 1_000_000, dry_run=dry_run, vacuum=True)
    if not the_plan.active:
        raise click.UsageError(
            "no retention is set: give --retain-days or --retain-raw-days (PIXEL_RETAIN_DAYS,"
            " PIXEL_RETAIN_RAW_DAYS)"
        )

    async def work() -> Any:
        async with open_existing(settings) as store:
            return await purge(store, the_plan, "cli")

    try:
        report = asyncio.run(work())
    except RollupsIncomplete as exc:
        raise click.ClickException(str(exc)) from None
    if output == "json":
        click.echo(json.dumps(report.as_dict()))
        return
    verb = ("would delete", "would clear") if dry_run else ("deleted", "cleared")
    click.echo(f"{verb[0]} {_n(report.hits_deleted, 'hit')} older than {_day(report.hits_before)}")
    if report.raw_before is not None:
        fields = ", ".join(report.fields)
        click.echo(
            f"{verb[1]} {fields} of {_n(report.hits_cleared, 'hit')} older than"
            f" {_day(report.raw_before)}"
        )
    if report.partitions_dropped:
        click.echo(f"partitions dropped: {', '.join(report.partitions_dropped)}")
    if not dry_run and report.bytes_before is not None and report.bytes_after is not None:
        click.echo(f"store size {report.bytes_before} -> {report.bytes_after} bytes")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _day(ms: int | None) -> str:
    if ms is None:
        return "-"
    from .export import iso_time

    return iso_time(ms)


@main.command("admin-log")
@click.option("--since", default="30d", show_default=True, help="From (30d, ISO, epoch ms).")
@click.option("--until", default=None, help="Until (default now).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@settings_options("db")
def admin_log(since: str, until: str | None, limit: int, **options: Any) -> None:
    """The admin log as NDJSON, oldest first: keys made and revoked, purges, erasures,
    subject exports (who, when, what; never a secret or an erased id in clear).

    \b
    Example:
      pixel-server admin-log --since 7d
    """
    import asyncio

    from .export import iso_time
    from .query import QueryError, parse_time

    settings = load_settings(options)
    now = time.time_ns() // 1_000_000
    try:
        start = parse_time(since, now, "since") or 0
        end = parse_time(until, now, "until") or now + 1
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def work() -> Any:
        async with open_existing(settings) as store:
            return await store.admin_log((start, end), limit)

    for entry in asyncio.run(work()):
        line = {"time": iso_time(entry.ts), **entry.as_dict()}
        click.echo(json.dumps(line, ensure_ascii=False))


@main.command()
@click.option("--uid", required=True, help="The data subject's uid.")
@settings_options("db")
def erase(uid: str, **options: Any) -> None:
    """Erase every trace of a uid: its hits and events (by uid, a parameter value or a query
    value of url, ref or referer), their rollup contributions, their lines in the spill
    journals; then leave no bytes of them in the files (docs/privacy.md). The admin log
    records it by a keyed hash of the uid.

    \b
    Example:
      pixel-server erase --uid r-1042
    """
    import asyncio

    from .erasure import Erasure, erase

    settings = load_settings(options)
    subject, secret = _subject(uid, settings)

    async def work() -> Erasure:
        async with open_existing(settings) as store:
            return await erase(store, subject, secret, settings.spill_path, "cli")

    result = asyncio.run(work())
    click.echo(
        f"erased {_n(result.hits_deleted, 'hit')}, redacted {_n(result.hits_redacted, 'other')}"
        f" that mentioned it, blanked {_n(result.journal_lines, 'spill journal line')}"
        f" (admin log subject {result.subject})"
    )


@main.command("subject-export")
@click.option("--uid", required=True, help="The data subject's uid.")
@settings_options("db")
def subject_export(uid: str, **options: Any) -> None:
    """Everything stored about a uid, as one JSON document: its hits and events, found as
    `erase` finds them (a subject access request; the export is in the admin log).

    \b
    Example:
      pixel-server subject-export --uid r-1042 > r-1042.json
    """
    import asyncio

    from .erasure import export

    settings = load_settings(options)
    subject, secret = _subject(uid, settings)

    async def work() -> dict[str, Any]:
        async with open_existing(settings) as store:
            return await export(store, subject, secret, "cli")

    click.echo(json.dumps(asyncio.run(work()), ensure_ascii=False))


def _subject(uid: str, settings: Any) -> tuple[Any, str]:
    """The data subject ``uid`` names, and the signing key (it keys the admin log's hash)."""
    from .erasure import BadSubject, Subject
    from .keys import KeyMissing, Keyring

    try:
        subject = Subject(uid)
    except BadSubject as exc:
        raise click.UsageError(str(exc)) from None
    try:
        keyring = Keyring.load(settings)
    except KeyMissing as exc:
        raise click.ClickException(str(exc)) from None
    return subject, keyring.secrets[keyring.signing_id]
