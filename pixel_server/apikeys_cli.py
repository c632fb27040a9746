"""``pixel-server keys create|list|revoke``: the API keys (apikeys.py), kept in the store.

Registered on the ``keys`` group of cli.py, beside the signing-key commands, when cli.py is
imported. Heavy modules are imported inside each command, as in cli.py.
"""

from __future__ import annotations

import time
from typing import Any

import click

from .apikeys import SCOPES
from .cli import keys, load_settings, open_existing, settings_options
from .command import Failed, OneLineError


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@keys.command("create")
@click.option("--name", required=True, help="What the key is for (shown by `keys list`).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="ingest (server calls to POST /e), read (the read API), admin (everything);"
    " repeat for several.",
)
@settings_options("db")
def keys_create(name: str, scopes: tuple[str, ...], **options: Any) -> None:
    """Create an API key and print it, once: only its hash is kept.

    Every server sharing the store accepts it at once; a revoked key stops working
    within 5 seconds.

    \b
    Example:
      pixel-server keys create --name checkout --scope ingest
      pixel-server keys create --name reports --scope read
    """
    import asyncio

    from .apikeys import new_key
    from .store import open_store, opened

    settings = load_settings(options)
    try:
        text, key = new_key(name, scopes, _now_ms())
    except ValueError as exc:
        raise OneLineError(f"--name / --scope: {exc}") from None

    async def create() -> None:
        async with opened(open_store(settings)) as store:
            await store.add_api_key(key)
            detail = {"key": key.id, "name": key.name, "scopes": list(key.scopes)}
            await store.log_admin(key.created_ms, "key_created", "cli", detail)

    asyncio.run(create())
    click.echo(text)
    click.echo(
        f"created API key {key.id} ({', '.join(key.scopes)}) for {name!r}: it is shown only"
        " now, so keep it in a secret store",
        err=True,
    )


@keys.command("list")
@settings_options("db")
def keys_list(**options: Any) -> None:
    """List the API keys: id, scopes, created, revoked, name (never a secret).

    \b
    Example:
      pixel-server keys list
    """
    import asyncio

    from .apikeys import ApiKey
    from .export import iso_time

    settings = load_settings(options)

    async def fetch() -> list[ApiKey]:
        async with open_existing(settings) as store:
            return await store.api_keys()

    for key in asyncio.run(fetch()):
        revoked = "-" if key.revoked_ms is None else iso_time(key.revoked_ms)
        shown = click.unstyle(key.name).encode("unicode_escape").decode("ascii")
        click.echo(
            f"{key.id}\t{','.join(key.scopes)}\t{iso_time(key.created_ms)}\t{revoked}\t{shown}"
        )


@keys.command("revoke")
@click.argument("key_id")
@settings_options("db")
def keys_revoke(key_id: str, **options: Any) -> None:
    """Revoke an API key by its id (from `keys list`); it stops working within 5 seconds.

    \b
    Example:
      pixel-server keys revoke 3k9x0q2m7b1c
    """
    import asyncio

    from .apikeys import ApiKey

    settings = load_settings(options)

    async def revoke() -> ApiKey | None:
        async with open_existing(settings) as store:
            key = await store.revoke_api_key(key_id, _now_ms())
            if key is not None:
                detail = {"key": key.id, "name": key.name}
                await store.log_admin(key.revoked_ms or _now_ms(), "key_revoked", "cli", detail)
            return key

    key = asyncio.run(revoke())
    if key is None:
        shown = key_id.encode("unicode_escape").decode("ascii")
        raise Failed(f"no API key {shown!r} (see `pixel-server keys list`)")
    click.echo(f"revoked API key {key.id} ({key.name})")
