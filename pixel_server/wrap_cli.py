"""``pixel-server wrap``: an HTML email with its links signed and an open pixel (wrap.py).

Registered on cli.py's group when cli.py is imported. One recipient a call for now; the
recipients batch is the next step (docs/wrap.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .cli import (
    bad_link,
    collect_spec,
    load_settings,
    main,
    minter,
    named_id_options,
    note_changed,
    settings_options,
)
from .command import OneLineError
from .files import replaced_on_success


@main.command()
@click.argument("email")  # read after the settings are checked: their errors first
@named_id_options
@click.option("--expires", help="Refuse clicks and opens after this long, e.g. 90d.")
@click.option("--append-utm", is_flag=True, help="Add the UTM values to each target's query.")
@click.option("--no-pixel", is_flag=True, help="Wrap the links only; insert no open pixel.")
@click.option("-o", "--output", help="Write here (default stdout; only if every link signs).")
@settings_options(
    "db", "data_dir", "public_url", "secret_file", "key_id", "redirect_hosts", "redirect_allow_ip"
)
def wrap(
    email: str,
    expires: str | None,
    append_utm: bool,
    no_pixel: bool,
    output: str | None,
    **options: Any,
) -> None:
    """Print EMAIL (an HTML file, - for stdin) with every http(s) link wrapped in a signed
    redirect and a signed open pixel right after <body>; everything else byte for byte.

    Left alone: mailto:, tel:, #anchors, templated hrefs ({{ ... }}, *|UNSUB|*,
    [unsubscribe_link], {unsubscribe_url}), links marked data-notrack, links already ours.

    \b
    Example:
      pixel-server wrap spring.html --cid spring --uid r-1042 --utm-source newsletter -o out.html
    """
    from .links import LinkError, public_base
    from .wrap import Template

    settings = load_settings(options)
    link_spec = collect_spec(dict(options), expires, append_utm, link=True)
    pixel_spec = collect_spec(options, expires, False, link=False)
    links, pixels = minter(settings, link=True), minter(settings, link=False)
    source = _read(email)
    template = Template.parse(source, wrapped_prefix=f"{public_base(settings)}/r/")
    try:
        signed = {target: links.mint(link_spec, target) for target in template.targets()}
        pixel = None if no_pixel else pixels.mint(pixel_spec)
    except LinkError as exc:
        raise bad_link(exc) from None
    note_changed(links)
    text = template.render(signed.__getitem__, pixel)
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    try:
        with replaced_on_success(Path(output)) as fh:  # a failure keeps the old file whole
            fh.write(text)
    except OSError as exc:
        raise OneLineError(f"cannot write {output}: {exc.strerror or exc}") from None
    shown = f"{len(signed)} links" + ("" if no_pixel else " and the pixel")
    click.echo(f"wrote {output}: {shown} signed", err=True)


def _read(path: str) -> str:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror or exc}", param_hint="EMAIL"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(
            f"not UTF-8 ({exc.reason} at byte {exc.start})", param_hint="EMAIL"
        ) from None
