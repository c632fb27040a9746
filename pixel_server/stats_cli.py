"""``pixel-server stats`` (a report, stats.py: a table, JSON or CSV) and ``pixel-server
rollups rebuild``. Registered on cli.py's group when cli.py is imported."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from .cli import load_settings, main, open_existing, settings_options

SERIES_OPTIONS = ("outliers", "threshold", "window", "smooth", "smooth_window", "alpha")
NAME_WIDTH = 25
NUMBER_WIDTH = 13


@main.command()
@click.option("--since", default=None, help="From (ISO, epoch ms, 30d; default 30d).")
@click.option("--until", default=None, help="Until (default now).")
@click.option(
    "--interval",
    type=click.Choice(("hour", "day", "week", "month")),
    default=None,
    help="Bucket size (default: from the span).",
)
@click.option("--zone", default=None, help="Time zone of the buckets (PIXEL_REPORT_ZONE).")
@click.option("--group", default=None, help="Group by this dimension (e.g. utm_source).")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="DIM=VALUE",
    help="Only hits with this value (repeatable: cid=spring, device=mobile).",
)
@click.option("--machines", is_flag=True, help="Count machine classes too.")
@click.option("--metrics", default=None, help="Comma-separated metrics (default: all).")
@click.option("--outliers", type=click.Choice(("zscore", "iqr")), default=None)
@click.option("--threshold", default=None, help="Outlier threshold (z: 3, IQR k: 1.5).")
@click.option("--window", default=None, help="Rolling window of the z-score (points).")
@click.option("--smooth", type=click.Choice(("ma", "ema")), default=None)
@click.option("--smooth-window", default=None, help="Moving-average window (points).")
@click.option("--alpha", default=None, help="Exponential smoothing factor (0, 1].")
@click.option(
    "--format",
    "output",
    type=click.Choice(("table", "json", "csv")),
    default="table",
    show_default=True,
)
@click.option(
    "--table",
    type=click.Choice(("series", "breakdown", "rows")),
    default=None,
    help="The CSV's table (default: breakdown when grouped, else series).",
)
@settings_options("db", "report_zone")
def stats(filters: tuple[str, ...], output: str, table: str | None, **options: Any) -> None:
    """Counts, uniques, sums and averages over time, per bucket and group.

    The parameters are GET /api/stats's; docs/stats.md defines every metric.

    \b
    Example:
      pixel-server stats --since 30d --filter cid=spring --interval day
      pixel-server stats --group utm_source --metrics opens,clicks,ctor,sum:total_value
      pixel-server stats --zone Europe/Berlin --outliers zscore --format json
    """
    import asyncio

    from .query import QueryError
    from .stats import Stats, parse_request, run

    names = ("since", "until", "interval", "zone", "group", "metrics", *SERIES_OPTIONS)
    pairs = [(name, str(options.pop(name))) for name in names if options.get(name) is not None]
    for name in names:
        options.pop(name, None)
    if options.pop("machines"):
        pairs.append(("machines", "1"))
    for given in filters:
        dim, sep, value = given.partition("=")
        if not sep:
            raise click.UsageError(f"--filter {given!r}: give DIM=VALUE")
        pairs.append((dim, value))
    settings = load_settings(options)

    async def fetch() -> Stats:
        async with open_existing(settings) as store:
            try:
                query = parse_request(
                    pairs, time.time_ns() // 1_000_000, store.spec, settings.report_zone
                )
            except QueryError as exc:
                raise click.UsageError(str(exc)) from None
            return await run(store, query)

    report = asyncio.run(fetch())
    if output == "json":
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    elif output == "csv":
        grouped = report.query.group is not None
        click.echo(report.csv(table or ("breakdown" if grouped else "series")), nl=False)
    else:
        click.echo(render(report))


def render(report: Any) -> str:
    """The report as terminal tables: the series, then the breakdown if grouped, then the
    totals; every value from a hit escaped (terminal.escape)."""
    from .terminal import escape, fit

    metrics = list(report.query.metrics)
    lines = [f"{report.as_dict()['since']} .. {report.as_dict()['until']}"]
    lines[0] += f"  {report.query.interval}s in {report.query.zone}  (from {report.source})"

    def row(first: str, values: dict[str, Any], marks: str = "") -> str:
        cells = [fit(first, NAME_WIDTH)]
        cells += [fit(_shown(values.get(m)), NUMBER_WIDTH) for m in metrics]
        return ("  ".join(cells) + marks).rstrip()

    lines.append(row("bucket", {m: m for m in metrics}))
    for point in report.series:
        flagged = point.get("outlier")
        lines.append(
            row(point["bucket"], point, "  outlier: " + ",".join(flagged) if flagged else "")
        )
    if report.query.group:
        lines.append("")
        lines.append(row(escape(report.query.group), {m: m for m in metrics}))
        for entry in report.breakdown:
            value = entry.get(report.query.group)
            lines.append(row("(none)" if value is None else escape(value), entry))
    lines.append("")
    lines.append(row("total", report.totals))
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@main.group()
def rollups() -> None:
    """The pre-counted report tables (docs/stats.md).

    \b
    Example:
      pixel-server rollups rebuild
    """


@rollups.command()
@settings_options("db")
def rebuild(**options: Any) -> None:
    """Recompute every rollup exactly from the stored hits, in one transaction.

    Needed after upgrading a database that held hits before the rollups existed, or after
    changing PIXEL_EVENT_SCHEMAS (which parameters are dimensions and sums). The server may
    keep running: its writes wait (and spill, then replay) meanwhile.

    \b
    Example:
      pixel-server rollups rebuild --db pixel.db
    """
    import asyncio

    settings = load_settings(options)

    async def work() -> int:
        async with open_existing(settings) as store:
            return await store.rebuild_rollups()

    started = time.monotonic()
    read = asyncio.run(work())
    click.echo(f"rollups rebuilt from {read} hits in {time.monotonic() - started:.1f} s")
