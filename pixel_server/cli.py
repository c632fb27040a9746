"""``pixel-server``: serve, make links and pixels, read and export the hit log.

Options that are settings (``--port``, ``--db``, ...) read the same ``PIXEL_*`` variable as
the server; the others read ``PIXEL_<COMMAND>_<OPTION>`` (for example ``PIXEL_EXPORT_FORMAT``).
Secrets (keys, API tokens) are environment-only, so they never show in a process list.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging.config
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import urlencode

import click

from .command import PixelGroup, flag_given
from .config import ConfigError, Settings, accepted, env_text
from .export import csv_header, csv_row, iter_rows, ndjson_row
from .hits import UTM_KEYS
from .keys import Keyring
from .logs import log_config
from .query import EQUALITY_FILTERS, HitQuery, QueryError, filter_names, parse_duration_ms
from .signing import PIXEL_SALT, REDIRECT_SALT, TokenSigner
from .store.sqlite import SQLiteStore
from .terminal import hits_table
from .urls import TargetRejected, normalize_target

FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
SECRET_FIELDS = {name for name, f in FIELDS.items() if not f.repr}
F = Callable[..., Any]


def settings_options(*names: str) -> Callable[[F], F]:
    """Click options for settings fields; each reads the field's own PIXEL_* variable."""

    def decorate(fn: F) -> F:
        for name in reversed(names):
            f = FIELDS[name]
            dash = name.replace("_", "-")
            kwargs: dict[str, Any] = {
                "default": None,
                "envvar": f.metadata["env"],
                "show_envvar": True,
                "help": f"{f.metadata['help']} Accepted: {accepted(f)}. [default: {f.default!r}]",
            }
            if isinstance(f.default, bool):
                decl = click.option(f"--{dash}/--no-{dash}", name, **kwargs)
            else:
                decl = click.option(f"--{dash}", name, type=str, **kwargs)
            fn = decl(fn)
        return fn

    return decorate


def load_settings(options: dict[str, Any]) -> Settings:
    """Settings from the environment, with this command's settings options laid over it."""
    env = dict(os.environ)
    for name in list(options):
        if name in FIELDS:
            value = options.pop(name)
            if value is not None:
                env[FIELDS[name].metadata["env"]] = env_text(value)
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        flag = flag_given(exc.setting)
        if flag is None:
            raise
        raise ConfigError(f"{flag} / {exc}", exc.setting) from None


def id_options(fn: F) -> F:
    """The ids a link or pixel can carry."""
    for utm in reversed(UTM_KEYS):
        fn = click.option(f"--{utm.replace('_', '-')}", utm, help=f"{utm} value.")(fn)
    fn = click.option(
        "--field",
        "fields",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any extra field to carry (repeatable).",
    )(fn)
    fn = click.option("--sid", help="Session id.")(fn)
    fn = click.option("--uid", help="User or recipient id (opaque; never an email address).")(fn)
    return click.option("--cid", help="Campaign id.")(fn)


def collect_ids(options: dict[str, Any]) -> dict[str, str]:
    ids = {key: options.pop(key) for key in ("cid", "uid", "sid", *UTM_KEYS)}
    payload = {key: value for key, value in ids.items() if value}
    for item in options.pop("fields"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--field")
        if key in ("u", "x", "a"):
            raise click.BadParameter(f"{key!r} is reserved", param_hint="--field")
        payload[key] = value
    return payload


def filter_options(fn: F) -> F:
    """Hit log filters, shared by ``hits`` and ``export``."""
    for name in reversed(EQUALITY_FILTERS):
        flag = "--event" if name == "e" else f"--{name.replace('_', '-')}"
        fn = click.option(flag, name, help=f"Only hits with this {flag[2:]}.")(fn)
    fn = click.option("--until", help="Before this time (same forms as --since).")(fn)
    return click.option(
        "--since", help="From this time: ISO 8601, epoch ms, or a duration ago (2h, 7d)."
    )(fn)


def build_query(options: dict[str, Any], limit: int | None) -> HitQuery:
    params = {name: options.pop(name) for name in filter_names()}
    params = {name: value for name, value in params.items() if value}
    if limit is not None:
        params["limit"] = str(limit)
    try:
        return HitQuery.from_params(params, max_limit=None)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None


def open_existing(settings: Settings) -> SQLiteStore:
    if not Path(settings.db).exists():
        raise click.UsageError(f"no database at {settings.db} (set --db or PIXEL_DB)")
    from .preflight import check_database_file

    check_database_file(Path(settings.db))
    return SQLiteStore(settings.db, settings.sqlite_synchronous)


@click.group(
    cls=PixelGroup,
    context_settings={"auto_envvar_prefix": "PIXEL", "show_default": True},
)
@click.version_option(package_name="pixel-server")
def main() -> None:
    """Tracking pixels, signed redirects and a hit log you can trust."""


@main.command()
@settings_options(*(name for name in FIELDS if name not in SECRET_FIELDS))
def serve(**options: Any) -> None:
    """Run the HTTP server (uvicorn) until SIGTERM or Ctrl-C.

    On SIGTERM it stops accepting connections, lets in-flight requests finish, writes every
    queued hit, and exits 0.

    \b
    Example:
      pixel-server serve --port 8000 --workers 2 --db /var/lib/pixel/pixel.db
    """
    from .preflight import build_once, check_paths
    from .server import run

    settings = load_settings(options)
    logging.config.dictConfig(log_config(settings.log_level))
    check_paths(settings)  # as this user, before anything is written: one line, not a traceback
    Keyring.from_settings(settings)  # create the key once, before workers race for it
    build_once(settings)  # what every worker builds, so that none meets a bad setting
    sys.exit(run(settings))


@main.command()
@click.argument("url")
@id_options
@click.option("--expires", help="Refuse clicks after this long, e.g. 30d or 12h.")
@click.option("--append-utm", is_flag=True, help="Add the UTM values to the target's query.")
@settings_options(
    "db", "public_url", "secret_file", "key_id", "redirect_hosts", "redirect_allow_ip"
)
def link(url: str, expires: str | None, append_utm: bool, **options: Any) -> None:
    """Print a signed redirect link to URL.

    \b
    Example:
      pixel-server link https://shop.example/sale --cid spring --uid r-1042 \\
          --utm-source newsletter --append-utm --expires 90d
    """
    settings = load_settings(options)
    payload: dict[str, Any] = collect_ids(options)
    from .preflight import redirect_policy

    policy = redirect_policy(settings)
    try:
        payload["u"] = normalize_target(url, policy)
    except TargetRejected as exc:
        raise click.BadParameter(f"{exc} ({exc.reason})", param_hint="URL") from None
    if expires:
        try:
            payload["x"] = int(time.time()) + parse_duration_ms(expires) // 1000
        except QueryError as exc:
            raise click.BadParameter(str(exc), param_hint="--expires") from None
    if append_utm:
        payload["a"] = 1
    signer = TokenSigner(Keyring.from_settings(settings), REDIRECT_SALT)
    click.echo(f"{settings.base_url}/r/{signer.dumps(payload)}")


@main.command()
@id_options
@click.option(
    "--unsigned", is_flag=True, help="A plain /p.gif URL (page views) instead of a token."
)
@settings_options("db", "public_url", "secret_file", "key_id")
def pixel(unsigned: bool, **options: Any) -> None:
    """Print a pixel URL and a ready <img> tag.

    Signed (default) for emails: recipients cannot forge opens for someone else.

    \b
    Example:
      pixel-server pixel --cid spring --uid r-1042
      pixel-server pixel --unsigned --cid landing --utm-source ads
    """
    settings = load_settings(options)
    payload = collect_ids(options)
    if unsigned:
        url = f"{settings.base_url}/p.gif" + (f"?{urlencode(payload)}" if payload else "")
    else:
        signer = TokenSigner(Keyring.from_settings(settings), PIXEL_SALT)
        url = f"{settings.base_url}/p/{signer.dumps(payload)}.gif"
    click.echo(url)
    click.echo(
        f'<img src="{url}" width="1" height="1" alt="" '
        'style="border:0;width:1px;height:1px;display:block">'
    )


@main.command()
@filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, help="How many hits.")
@settings_options("db")
def hits(limit: int, **options: Any) -> None:
    """Show recent hits as a table, newest first.

    \b
    Example:
      pixel-server hits --cid spring --since 24h --limit 50
    """
    settings = load_settings(options)
    query = build_query(options, limit)

    async def fetch() -> list[dict[str, Any]]:
        async with open_existing(settings) as store:
            return await store.query(query)

    click.echo(hits_table(asyncio.run(fetch())))


@main.command()
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "ndjson"]),
    default="csv",
    envvar="PIXEL_EXPORT_FORMAT",
    show_envvar=True,
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many hits (default: all).")
@settings_options("db")
def export(fmt: str, output: str, limit: int | None, **options: Any) -> None:
    """Export hits as CSV or NDJSON to stdout or a file (with a progress bar).

    CSV cells that a spreadsheet would run as a formula (= + - @) are prefixed with '.

    \b
    Example:
      pixel-server export --since 2026-11-01 --cid spring --format csv -o spring.csv
    """
    settings = load_settings(options)
    query = build_query(options, limit)
    line = csv_row if fmt == "csv" else ndjson_row

    async def write(out: TextIO, progress: bool) -> int:
        written = 0
        async with open_existing(settings) as store:
            total = await store.count(query)
            total = total if limit is None else min(total, limit)
            bar_file = cast(TextIO, sys.stderr if progress else _Null())
            with click.progressbar(length=total, label="exporting", file=bar_file) as bar:
                if fmt == "csv":
                    out.write(csv_header())
                async for row in iter_rows(store, query, limit):
                    out.write(line(row))
                    written += 1
                    bar.update(1)
        return written

    if output == "-":
        asyncio.run(write(sys.stdout, progress=False))
        return
    with open(output, "w", encoding="utf-8", newline="") as fh:
        written = asyncio.run(write(fh, progress=True))
    click.echo(f"wrote {written} hits to {output}", err=True)


class _Null:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None
