"""``pixel-server``: serve, make links and pixels, read and export the hit log.

Options that are settings (``--port``, ``--db``, ...) read the same ``PIXEL_*`` variable as
the server; the others read ``PIXEL_<COMMAND>_<OPTION>`` (for example ``PIXEL_EXPORT_FORMAT``).
Secrets (keys, API tokens) are environment-only, so they never show in a process list.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast
from urllib.parse import urlencode

import click

from .command import Failed, OneLineError, PixelGroup, flag_given
from .config import ConfigError, Settings, accepted, env_text
from .fields import UTM_KEYS
from .files import replaced_on_success
from .keys import DEFAULT_KEY_ID, KeyFile, Keyring
from .payload import CONTROL_KEYS
from .query import EQUALITY_FILTERS, HitQuery, QueryError, filter_names

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Sequence

    from .links import LinkError, Minter, Spec
    from .recipients import Recipient, RecipientsError
    from .store import Store
    from .storecopy import Named

# Each command imports what it needs inside its function: `pixel-server link` must not pay
# for the user-agent parser, SQLite driver or web stack (tests/test_links_cli.py checks).

FORMATS = ("csv", "ndjson")  # of --recipients output (recipients.write_rows)
FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
SECRET_FIELDS = {name for name, f in FIELDS.items() if not f.repr}
F = Callable[..., Any]
RESERVED_KEYS = ", ".join(CONTROL_KEYS)  # of a token's payload: no --field may be one


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


def keyring(settings: Settings, *, create: bool = False) -> Keyring:
    """The signing keys for a command; only ``create=True`` (the server) may make a key.

    A key problem is a ConfigError, which PixelGroup prints as one line with exit status 2."""
    return Keyring.create_or_load(settings) if create else Keyring.load(settings)


def id_options(fn: F) -> F:
    """The ids a link or pixel can carry, and the recipients list that mints one per row."""
    fn = click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False, allow_dash=True),
        help="With --recipients: where to write (default stdout; only if every row is good).",
    )(fn)
    fn = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        help="With --recipients: the output format, one row or line per recipient [default: csv].",
    )(fn)
    fn = carry_option(fn)
    fn = click.option(
        "--recipients",
        type=click.Path(exists=True, dir_okay=False, allow_dash=True),
        help="A CSV with a uid column (other columns: fields): one signed URL per row.",
    )(fn)
    return named_id_options(fn)


def carry_option(fn: F) -> F:
    """``--carry COLUMN``: a recipients column for the output only, signed into nothing."""
    return click.option(
        "--carry",
        multiple=True,
        metavar="COLUMN",
        help="With --recipients: a column copied to the output but signed into no token, such"
        " as the email address to send to (repeatable).",
    )(fn)


def named_id_options(fn: F) -> F:
    """The ids and fields a signed link, pixel or wrapped email carries."""
    for utm in reversed(UTM_KEYS):
        fn = click.option(f"--{utm.replace('_', '-')}", utm, help=f"{utm} value.")(fn)
    fn = click.option(
        "--field",
        "fields",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Any extra field to carry (repeatable; not {RESERVED_KEYS}, nor a key given twice).",
    )(fn)
    fn = click.option("--sid", help="Session id.")(fn)
    fn = click.option("--uid", help="User or recipient id (opaque; never an email address).")(fn)
    return click.option("--cid", help="Campaign id.")(fn)


# where the CLI names each input a LinkError can be about
PARAM_HINTS = {
    "url": "URL",
    "expires": "--expires",
    "field": "--field",
    "token": "the token",
    "sent_at": "--sent-at",
    "message_id": "--message-id",
}


def collect_spec(
    options: dict[str, Any],
    expires: str | None,
    append_utm: bool,
    *,
    link: bool,
    notrack: bool = False,
) -> Spec:
    """The ids, fields and expiry of the ``link``/``pixel`` options (removed from ``options``)."""
    from .fields import NAMED_KEYS
    from .links import LinkError, spec_from_options

    named = {key: options.pop(key) for key in NAMED_KEYS}
    try:
        fields = options.pop("fields")
        return spec_from_options(named, fields, expires, append_utm, link=link, notrack=notrack)
    except LinkError as exc:
        raise bad_link(exc) from None


def bad_link(exc: LinkError) -> click.BadParameter:
    """The usage error for ``exc``, naming the option at fault (``--uid``, not ``--field``,
    for a named id that holds an address)."""
    from .fields import NAMED_KEYS
    from .links import AddressInToken

    hint = PARAM_HINTS.get(exc.param, exc.param)
    if isinstance(exc, AddressInToken) and exc.key in NAMED_KEYS:
        hint = f"--{exc.key.replace('_', '-')}"
    return click.BadParameter(str(exc), param_hint=hint)


def mint_one(minter: Minter, spec: Spec, url: str | None = None) -> str:
    """One signed URL; the canonical target goes to stderr where it differs from ``url``."""
    from .links import LinkError

    try:
        signed = minter.mint(spec, url)
    except LinkError as exc:
        raise bad_link(exc) from None
    note_changed(minter)
    return signed


def note_changed(minter: Minter) -> None:
    """Say on stderr which targets are signed in another form than typed."""
    for typed, canonical in minter.changed.items():
        click.echo(f"note: signing {canonical} (a browser reads {typed} as that)", err=True)


def minter(settings: Settings, *, link: bool) -> Minter:
    """The signer of ``link`` or ``pixel`` (a key problem is a ConfigError: one line, exit 2)."""
    from .links import Minter

    return Minter.for_links(settings) if link else Minter.for_pixels(settings)


def no_bulk_options(fmt: str | None, output: str | None, carry: Sequence[str] = ()) -> None:
    if fmt is not None or output is not None or carry:
        raise click.UsageError("--format, --output and --carry go with --recipients")


def read_recipients_for(
    path: str, spec: Spec, column: str, *, link: bool, carry: Sequence[str] = ()
) -> tuple[list[str], list[Recipient]]:
    """The recipients CSV at ``path`` (``-``: stdin) for ``spec``: its columns may be neither
    the output ``column``, nor an id the options give, nor (unless carried) a token key;
    RecipientsError naming the line otherwise."""
    from .links import LinkError, add_fields
    from .recipients import RecipientsError, read_recipients

    name = "stdin" if path == "-" else path
    with _text_in(path) as fh:
        columns, recipients = read_recipients(fh, name, carry)
    if column in columns:
        raise RecipientsError(f"{name} line 1: {column!r} is the output column")
    clash = sorted(set(columns) & set(spec.ids))
    if clash:
        raise RecipientsError(f"{name} line 1: column {clash[0]!r} is also given as an option")
    try:
        add_fields({}, [(c, "") for c in columns if c not in carry], link=link)
    except LinkError as exc:
        raise RecipientsError(f"{name} line 1: {exc}") from None
    return columns, recipients


def recipient_error(name: str, line: int, exc: LinkError) -> RecipientsError:
    """A row that cannot be signed, as the error naming its line (and, for a column that
    holds email addresses, how to keep it in the output without signing it)."""
    from .links import AddressInToken
    from .recipients import RecipientsError

    hint = ""
    if isinstance(exc, AddressInToken) and exc.key != "uid":
        hint = f"; to copy it to the output unsigned: --carry {exc.key}"
    return RecipientsError(f"{name} line {line}: {exc}{hint}")


def mint_recipients(
    minter: Minter,
    spec: Spec,
    url: str | None,
    path: str,
    bulk: tuple[str | None, str | None, Sequence[str]],
) -> None:
    """``--recipients``: one signed URL per row, all checked before anything is written;
    ``bulk`` is the --format, --output and --carry given."""
    from .links import LinkError
    from .recipients import RecipientsError, write_rows

    column = "pixel" if url is None else "link"
    name = "stdin" if path == "-" else path
    fmt, output, carry = bulk[0] or "csv", bulk[1] or "-", bulk[2]
    try:
        link = url is not None
        columns, recipients = read_recipients_for(path, spec, column, link=link, carry=carry)
        mint_one(minter, spec, url)  # the target's problems once, not once per row
        rows = []
        for recipient in recipients:
            try:
                row_spec = spec.with_fields(recipient.fields, link=url is not None)
                rows.append((recipient, minter.mint(row_spec, url)))
            except LinkError as exc:
                raise recipient_error(name, recipient.line, exc) from None
    except RecipientsError as exc:
        raise click.UsageError(str(exc)) from None
    if output == "-":
        sys.stdout.writelines(write_rows(columns, rows, fmt, column))
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        out.writelines(write_rows(columns, rows, fmt, column))
    click.echo(f"wrote {len(rows)} {column}s to {output}", err=True)


def _text_in(path: str) -> TextIO:
    """``path`` (``-``: stdin) as CSV text: UTF-8, a spreadsheet's byte-order mark skipped."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


class FilterValue(click.types.StringParamType):
    """A filter option's value. The options are ``multiple`` so that a repeated one reaches
    HitQuery (which refuses it) instead of click keeping the last; a ``PIXEL_*`` variable
    still holds one value, spaces included, not a whitespace-split list."""

    envvar_list_splitter = "\0"  # no environment variable holds a NUL: never split


def filter_options(fn: F) -> F:
    """Hit log filters, shared by ``hits`` and ``export``; each may be given once."""
    for name in reversed(EQUALITY_FILTERS):
        flag = "--event" if name == "e" else f"--{name.replace('_', '-')}"
        fn = click.option(
            flag, name, multiple=True, type=FilterValue(), help=f"Only hits with this {flag[2:]}."
        )(fn)
    fn = click.option(
        "--until", multiple=True, type=FilterValue(), help="Before this time (forms as --since)."
    )(fn)
    return click.option(
        "--since",
        multiple=True,
        type=FilterValue(),
        help="From this time: ISO 8601 (2026-11-01, 20261101), 13-digit epoch ms,"
        " or a duration ago (2h, 7d).",
    )(fn)


def build_query(options: dict[str, Any], limit: int | None) -> HitQuery:
    """The query the filter options ask for; the API's rules apply (a repeated one is refused)."""
    pairs = [(name, value) for name in filter_names() for value in options.pop(name) if value]
    if limit is not None:
        pairs.append(("limit", str(limit)))
    try:
        return HitQuery.from_params(pairs, max_limit=None)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None


def open_existing(settings: Settings) -> AbstractAsyncContextManager[Store]:
    """The configured store, opened for an ``async with`` block; a SQLite file must exist
    (reading must not create an empty database somewhere unexpected)."""
    from .store import open_store, opened

    path = settings.sqlite_path
    if path is not None:
        if not Path(path).exists():
            hint = "PIXEL_DATABASE_URL" if settings.database_url else "--db or PIXEL_DB"
            raise click.UsageError(f"no database at {path} (set {hint})")
        from .preflight import check_database_file

        check_database_file(Path(path))
    return opened(open_store(settings))


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
    import logging.config

    from .logs import log_config
    from .preflight import build_once, check_paths, check_store
    from .server import run

    settings = load_settings(options)
    logging.config.dictConfig(log_config(settings.log_level))
    check_paths(settings)  # as this user, before anything is written: one line, not a traceback
    keyring(settings, create=True)  # create the key once, before workers race for it
    build_once(settings)  # what every worker builds, so that none meets a bad setting
    check_store(settings)  # reachable and migrated once, before workers start
    sys.exit(run(settings))


@main.command()
@click.argument("url")
@id_options
@click.option("--expires", help="Refuse clicks after this long, e.g. 30d or 12h (at most 3650d).")
@click.option("--append-utm", is_flag=True, help="Add the UTM values to the target's query.")
@click.option("--notrack", is_flag=True, help="The link redirects but its clicks are never stored.")
@settings_options(
    "db",
    "data_dir",
    "public_url",
    "secret_file",
    "key_id",
    "redirect_hosts",
    "redirect_allow_ip",
)
def link(
    url: str,
    expires: str | None,
    append_utm: bool,
    notrack: bool,
    recipients: str | None,
    fmt: str | None,
    output: str | None,
    carry: tuple[str, ...],
    **options: Any,
) -> None:
    """Print a signed redirect link to URL, or one per recipient with --recipients.

    The target is signed in its canonical form (what a browser visits); where that differs
    from URL as typed, a note on stderr says so.

    \b
    Example:
      pixel-server link https://shop.example/sale --cid spring --uid r-1042 \\
          --utm-source newsletter --append-utm --expires 90d
      pixel-server link https://shop.example/sale --cid spring --expires 90d \\
          --recipients recipients.csv --carry email --format csv -o links.csv
    """
    settings = load_settings(options)
    spec = collect_spec(options, expires, append_utm, link=True, notrack=notrack)
    signer = minter(settings, link=True)
    if recipients is not None:
        mint_recipients(signer, spec, url, recipients, (fmt, output, carry))
    else:
        no_bulk_options(fmt, output, carry)
        click.echo(mint_one(signer, spec, url))


@main.command()
@id_options
@click.option(
    "--unsigned", is_flag=True, help="A plain /p.gif URL (page views) instead of a token."
)
@settings_options("db", "data_dir", "public_url", "secret_file", "key_id")
def pixel(
    unsigned: bool,
    recipients: str | None,
    fmt: str | None,
    output: str | None,
    carry: tuple[str, ...],
    **options: Any,
) -> None:
    """Print a pixel URL and a ready <img> tag, or one URL per recipient with --recipients.

    Signed (default) for emails: recipients cannot forge opens for someone else.

    \b
    Example:
      pixel-server pixel --cid spring --uid r-1042
      pixel-server pixel --unsigned --cid landing --utm-source ads
      pixel-server pixel --cid spring --recipients recipients.csv -o pixels.csv
    """
    settings = load_settings(options)
    spec = collect_spec(options, None, False, link=False)
    if recipients is None:
        no_bulk_options(fmt, output, carry)
    if unsigned:
        if recipients is not None:
            raise click.UsageError("--recipients mints signed pixels; drop --unsigned")
        from .links import public_base

        try:
            base = public_base(settings)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        url = f"{base}/p.gif" + (f"?{urlencode(spec.ids)}" if spec.ids else "")
    else:
        signer = minter(settings, link=False)
        if recipients is not None:
            mint_recipients(signer, spec, None, recipients, (fmt, output, carry))
            return
        url = mint_one(signer, spec)
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
    import asyncio

    from .terminal import hits_table

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

    With -o the export goes to a temporary file next to the target, renamed over it when
    complete: a failed export leaves an existing file as it was.

    \b
    Example:
      pixel-server export --since 2026-11-01 --cid spring --format csv -o spring.csv
    """
    import asyncio

    from .export import csv_header, csv_rows, iter_pages, ndjson_rows

    settings = load_settings(options)
    query = build_query(options, limit)
    lines = csv_rows if fmt == "csv" else ndjson_rows

    async def write(out: TextIO, progress: bool) -> int:
        written = 0
        async with open_existing(settings) as store:
            total = await store.count(query)
            total = total if limit is None else min(total, limit)
            bar_file = cast(TextIO, sys.stderr if progress else _Null())
            with click.progressbar(length=total, label="exporting", file=bar_file) as bar:
                if fmt == "csv":
                    out.write(csv_header())
                async for page in iter_pages(store, query, limit):
                    out.write(lines(page))
                    written += len(page)
                    bar.update(len(page))
        return written

    if output == "-":
        asyncio.run(write(sys.stdout, progress=False))
        return
    try:
        with replaced_on_success(Path(output)) as fh:  # a failed export keeps the old file
            written = asyncio.run(write(fh, progress=True))
    except OSError as exc:
        raise OneLineError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {written} hits to {output}", err=True)


@main.command()
@settings_options("db")
def migrate(**options: Any) -> None:
    """Create the store's tables or bring them up to date, then exit.

    `serve` does the same at start (safely when several instances start at once: the
    migrations run under a lock); run this first to upgrade the schema on its own, e.g. from
    a deploy job. The store is PIXEL_DATABASE_URL (PostgreSQL) or the SQLite file PIXEL_DB.

    \b
    Example:
      PIXEL_DATABASE_URL=postgresql://pixel@db.internal/pixel pixel-server migrate
    """
    import asyncio

    from .store import open_store, opened

    settings = load_settings(options)
    if settings.sqlite_path is not None:
        from .preflight import check_paths

        check_paths(settings)

    async def run() -> int:
        async with opened(open_store(settings)) as store:
            return int(await store.schema_version())

    version = asyncio.run(run())
    click.echo(f"{settings.store.shown}: schema v{version}, up to date")


@main.command("copy")
@click.argument("source")
@click.argument("dest")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue a copy into DEST that stopped (Ctrl-C, kill, an outage), or add the hits"
    " SOURCE received since it ended.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1, 100_000),
    default=10_000,
    help="Hits per transaction (a stopped copy has to redo at most the two it was writing).",
)
@settings_options()
def copy_hits(source: str, dest: str, resume: bool, chunk_size: int, **options: Any) -> None:
    """Copy the hit log from SOURCE to DEST, e.g. from SQLite to PostgreSQL, and check it.

    SOURCE and DEST are store URLs (sqlite:///PATH, postgresql://USER@HOST/DATABASE) or the
    path of a SQLite file. DEST must be empty or hold a stopped copy of SOURCE: --resume
    continues it exactly where it stopped, without duplicates. Every column and the
    deduplication by eid are kept; hits get new ids. The copy goes up to SOURCE's newest hit
    at the start; at the end the hits of each kind are counted in both, and a difference is
    an error (exit 1). Put a PostgreSQL password in PGPASSWORD or ~/.pgpass, not in the URL:
    a command line shows in the process list.

    \b
    Example:
      pixel-server copy /var/lib/pixel/pixel.db postgresql://pixel@db.internal/pixel
      pixel-server copy --resume sqlite:///pixel.db postgresql://pixel@db.internal/pixel
    """
    import asyncio
    import time

    from . import storecopy

    settings = load_settings(options)
    try:
        names = storecopy.named("SOURCE", source), storecopy.named("DEST", dest)
        storecopy.check_files(*names)
    except storecopy.CopyRefused as exc:
        raise OneLineError(str(exc)) from None
    started = time.monotonic()
    try:
        copied, totals, resumed = asyncio.run(_copy(settings, *names, resume, chunk_size))
    except KeyboardInterrupt:
        raise Failed(
            "interrupted: the hits copied so far are kept; run the same command with --resume"
            " to continue"
        ) from None
    elapsed = time.monotonic() - started
    click.echo(f"{copied} hits in {elapsed:.1f} s ({copied / max(elapsed, 1e-9):.0f}/s)", err=True)
    click.echo(storecopy.summary(copied, totals, resumed))


async def _copy(
    settings: Settings, source: Named, dest: Named, resume: bool, chunk_size: int
) -> tuple[int, Counter[str], bool]:
    """Open both stores, check them, copy and verify: (copied, DEST's hits per kind, resumed)."""
    from contextlib import AsyncExitStack

    from . import storecopy
    from .export import iso_time
    from .store import StoreUnavailable, opened, store_at

    async with AsyncExitStack() as stack:
        stores: list[Store] = []
        for name in (source, dest):
            try:
                store = store_at(name.url, settings, storecopy.TIMEOUT)
                stores.append(await stack.enter_async_context(opened(store)))
            except StoreUnavailable as exc:
                raise Failed(f"{name.role} {name.shown}: {exc}") from None
            except RuntimeError as exc:  # a schema from a newer release
                if "newer" not in str(exc):
                    raise
                raise OneLineError(f"{name.role} {name.shown}: {exc}") from None
        try:
            from_store, to_store = stores
            plan = await storecopy.plan(from_store, to_store, source, dest, resume=resume)
            for name in (source, dest):
                if name.url.shown != name.url.url:
                    click.echo(
                        f"note: the password in {name.role} shows in the process list while"
                        " the copy runs; PGPASSWORD or ~/.pgpass keep it out of sight",
                        err=True,
                    )
            if plan.position is not None:
                click.echo(
                    f"resuming after {plan.position.copied} hits copied, up to"
                    f" {iso_time(plan.position.last[0])}",
                    err=True,
                )
            with click.progressbar(length=plan.remaining, label="copying", file=sys.stderr) as bar:
                copied = await storecopy.run(plan, chunk_size, bar.update)
            return copied, await storecopy.verify(plan), plan.position is not None
        except storecopy.CopyRefused as exc:
            raise OneLineError(str(exc)) from None
        except storecopy.CopyFailed as exc:
            raise Failed(str(exc)) from None
        except StoreUnavailable as exc:
            raise Failed(
                f"{exc}; the hits copied so far are kept: run the same command with --resume"
                " when the store is back"
            ) from None


@main.group()
def keys() -> None:
    """The signing keys (init, show, rotate) and the API keys (create, list, revoke).

    Signing keys sign links and pixels. The key file is PIXEL_SECRET_FILE (default: PIXEL_DB
    + .key), one id:secret line per key: the first signs, the others still verify links
    signed before a rotation; its secrets are never printed.

    API keys let servers post events (scope ingest) and read the API (read, admin); they
    live in the store, hashed, and each is printed once, when it is created.

    \b
    Example:
      pixel-server keys init --db /var/lib/pixel/pixel.db
      pixel-server keys show
      pixel-server keys rotate
      pixel-server keys create --name checkout --scope ingest
    """


@keys.command("init")
@settings_options("db", "data_dir", "secret_file", "key_id")
def keys_init(**options: Any) -> None:
    """Create the key file with a new random key; refuses to overwrite one.

    \b
    Example:
      pixel-server keys init --db /var/lib/pixel/pixel.db
    """
    settings = load_settings(options)
    if settings.secret_key:
        raise OneLineError("PIXEL_SECRET_KEY is set: that is the key, no key file is used")
    path = settings.secret_path.absolute()
    try:
        created = KeyFile.create(path, settings.key_id or DEFAULT_KEY_ID)
    except ConfigError as exc:
        raise OneLineError(str(exc)) from None
    if not created:
        raise OneLineError(f"{path} already exists: not overwriting it (`pixel-server keys show`)")
    ring = keyring(settings)
    click.echo(f"created key {ring.signing_id} in {path} (mode 0600): back this file up")


@keys.command("show")
@settings_options("db", "data_dir", "secret_file", "key_id")
def keys_show(**options: Any) -> None:
    """List the key ids, which one signs, where each comes from, and a fingerprint.

    The fingerprint is a one-way tag: equal fingerprints on two machines mean the same key.

    \b
    Example:
      pixel-server keys show --db /var/lib/pixel/pixel.db
    """
    ring = keyring(load_settings(options))
    for kid, source in ring.sources.items():
        role = "signs" if kid == ring.signing_id else "verifies"
        click.echo(f"{kid}\t{role}\t{ring.fingerprint(kid)}\t{source}")


@keys.command("rotate")
@click.option("--id", "new_id", help="Id of the new key [default: the next kN].")
@settings_options("db", "data_dir", "secret_file")
def keys_rotate(new_id: str | None, **options: Any) -> None:
    """Put a new signing key on top of the key file; the old keys keep verifying.

    Restart the server before you send links signed with the new key: it reads its keys
    at start-up.

    \b
    Example:
      pixel-server keys rotate --db /var/lib/pixel/pixel.db
      pixel-server keys rotate --id 2026-spring
    """
    settings = load_settings(options)
    if settings.secret_key:
        raise OneLineError(
            "the signing key is PIXEL_SECRET_KEY, not a key file: rotate it there "
            "(PIXEL_SECRET_KEY=<new secret> PIXEL_KEY_ID=<new id> "
            "PIXEL_VERIFY_KEYS=<old id>:<old secret>)"
        )
    keyring(settings)  # the current file must load (present, private, well-formed)
    try:
        rotated = KeyFile.read(settings.secret_path).rotated(new_id)
        rotated.replace()
    except ConfigError as exc:
        raise OneLineError(str(exc)) from None
    click.echo(
        f"{rotated.path}: new key {rotated.signing_id} signs; "
        f"{', '.join(kid for kid, _ in rotated.keys[1:])} still verify. "
        "Restart the server before sending links signed with it."
    )


class _Null:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None


# `keys create|list|revoke` (API keys) live in their own module; importing it registers them
from . import apikeys_cli as apikeys_cli  # noqa: E402
from . import audit_cli as audit_cli  # noqa: E402  (`audit`)
from . import privacy_cli as privacy_cli  # noqa: E402  (`purge`, `admin-log`, `erase`, ...)
from . import reclassify_cli as reclassify_cli  # noqa: E402  (`reclassify`)
from . import reports_cli as reports_cli  # noqa: E402  (`loss`, registered the same way)
from . import revocations_cli as revocations_cli  # noqa: E402  (`revoke`)
from . import stats_cli as stats_cli  # noqa: E402  (`stats`, `rollups`)
from . import wrap_cli as wrap_cli  # noqa: E402  (`wrap`)
