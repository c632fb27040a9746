"""``pixel-server revoke``: revoke links, a campaign or a target (revocations.py), list the
revocations, undo one. Registered on cli.py's group when it is imported.

Heavy modules are imported inside the command, as in cli.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from .cli import load_settings, main, open_existing, settings_options
from .command import Failed, OneLineError
from .revocations import Revocation, RevocationError, from_request


@main.command()
@click.argument("links", nargs=-1, metavar="[URL|TOKEN]...")
@click.option("--cid", help="Revoke every link of this campaign (with --target: only those).")
@click.option("--target", help="Revoke the links to this URL, or to this host (shop.example).")
@click.option("--reason", default="", help="Why: kept, listed, and shown on the link's page.")
@click.option(
    "--offer-continue",
    is_flag=True,
    help="The revoked page still offers to continue to the target (if the rules allow it).",
)
@click.option("--list", "listing", is_flag=True, help="List the revocations and exit.")
@click.option("--undo", is_flag=True, help="Take back the revocation these options name.")
@settings_options("db", "data_dir", "secret_file", "key_id", "redirect_hosts", "redirect_allow_ip")
def revoke(
    links: tuple[str, ...],
    cid: str | None,
    target: str | None,
    reason: str,
    offer_continue: bool,
    listing: bool,
    undo: bool,
    **options: Any,
) -> None:
    """Revoke signed links: their clicks get a "no longer available" page, not the target.

    Every server sees it within PIXEL_REVOCATIONS_TTL seconds (5). Name links by their URL
    or token (verified with the signing key), or a campaign with --cid, or a target with
    --target (a URL, or a host: every link to it).

    \b
    Example:
      pixel-server revoke https://t.example/r/k1._k2ArLijKzEuXYSv... --reason "sent by mistake"
      pixel-server revoke --cid spring --reason "the sale is over" --offer-continue
      pixel-server revoke --target shop.example
      pixel-server revoke --cid spring --undo
      pixel-server revoke --list
    """
    import asyncio

    settings = load_settings(options)
    if listing:
        if links or cid or target or undo:
            raise click.UsageError("--list takes no links, --cid, --target or --undo")
        rules = asyncio.run(_listed(settings))
        for rule in rules:
            click.echo(_line(rule))
        return
    rules = _rules(settings, links, cid, target, reason, offer_continue)
    asyncio.run(_apply(settings, rules, undo))


def _rules(
    settings: Any,
    links: tuple[str, ...],
    cid: str | None,
    target: str | None,
    reason: str,
    offer_continue: bool,
) -> list[Revocation]:
    if links and (cid is not None or target is not None):
        raise click.UsageError("name links, or --cid / --target, not both")
    if not links and cid is None and target is None:
        raise click.UsageError("name a link (URL or token), --cid or --target (or --list)")
    from .urls import TargetPolicy, normalize_target

    policy = TargetPolicy.from_settings(settings)
    loads = _loads(settings) if links else _no_loads
    now_ms = time.time_ns() // 1_000_000
    common = {"reason": reason, "offer_continue": offer_continue}
    named = {key: value for key, value in (("cid", cid), ("target", target)) if value is not None}
    items = [{"link": link, **common} for link in links] or [{**named, **common}]
    rules = []
    for item in items:
        try:
            rules.append(
                from_request(item, loads, lambda url: normalize_target(url, policy), now_ms)
            )
        except RevocationError as exc:
            raise OneLineError(f"--{exc.param.replace('_', '-')}: {exc}") from None
    return rules


def _loads(settings: Any) -> Callable[[str], dict[str, Any]]:
    from .config import ConfigError
    from .links import signing_keyring
    from .signing import REDIRECT_SALT, TokenSigner

    try:
        keyring = signing_keyring(settings)
    except ConfigError as exc:
        raise OneLineError(str(exc)) from None
    return TokenSigner(keyring, REDIRECT_SALT, settings.max_token_bytes).loads


def _no_loads(_token: str) -> dict[str, Any]:
    raise AssertionError("no link to read")


async def _listed(settings: Any) -> list[Revocation]:
    async with open_existing(settings) as store:
        return await store.revocations()


async def _apply(settings: Any, rules: list[Revocation], undo: bool) -> None:
    missing = []
    async with open_existing(settings) as store:
        for rule in rules:
            if not undo:
                await store.add_revocation(rule)
                click.echo(f"revoked {_line(rule)}")
            elif await store.remove_revocation(rule.id) is None:
                missing.append(rule)
            else:
                click.echo(f"undone {_line(rule)}")
    if missing:
        raise Failed(f"no such revocation: {_what(missing[0])} (see `pixel-server revoke --list`)")


def _what(rule: Revocation) -> str:
    if rule.kind == "link":
        return f"link {rule.link}"
    if rule.kind == "campaign":
        return f"campaign {rule.cid}" + (f" to {rule.target}" if rule.target else "")
    return f"target {rule.target}"


def _line(rule: Revocation) -> str:
    from .export import iso_time

    offer = "offers continue" if rule.offer_continue else "no continue"
    shown = [_shown(_what(rule)), _shown(rule.reason)]
    return "\t".join((rule.id, iso_time(rule.created_ms), shown[0], offer, shown[1]))


def _shown(text: str) -> str:
    """``text`` safe on a terminal: no escape sequence, no control character."""
    return click.unstyle(text).encode("unicode_escape").decode("ascii")
