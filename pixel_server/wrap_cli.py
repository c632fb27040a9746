"""``pixel-server wrap``: an HTML email with its links signed and an open pixel (wrap.py).

Registered on cli.py's group when cli.py is imported. One recipient, or a recipients CSV (one
email a row: NDJSON lines, or UID.html files); the template is tokenized once.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli import (
    bad_link,
    carry_option,
    collect_spec,
    load_settings,
    main,
    minter,
    named_id_options,
    note_changed,
    read_recipients_for,
    recipient_error,
    settings_options,
)
from .command import OneLineError
from .files import replaced_on_success, write_batch
from .ndjson import ndjson_line

if TYPE_CHECKING:
    from .links import Minter, Spec
    from .recipients import Recipient
    from .wrap import Template

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")  # a uid that is a file name as is


@main.command()
@click.argument("email")  # read after the settings are checked: their errors first
@named_id_options
@click.option("--expires", help="Refuse clicks and opens after this long, e.g. 90d.")
@click.option("--append-utm", is_flag=True, help="Add the UTM values to each target's query.")
@click.option("--no-pixel", is_flag=True, help="Wrap the links only; insert no open pixel.")
@click.option(
    "--trap",
    is_flag=True,
    help="Also insert a hidden link no person sees: whoever follows it, and the other clicks of"
    " the message with it, are a link scanner's (docs/traffic.md).",
)
@click.option(
    "--sent-at",
    default="now",
    show_default=True,
    help="When the email goes out (epoch seconds or ISO time, e.g. 2026-03-01T09:00Z): opens"
    " and clicks are timed from it. Give it when a send is scheduled.",
)
@click.option("--message-id", help="The id of this send (a mailing, or the email's Message-ID).")
@click.option(
    "--leave",
    "leave",
    multiple=True,
    metavar="REGEX",
    help="Also leave alone hrefs matching this regular expression (your own merge tags, e.g."
    " '%%\\w+%%'; repeatable), besides the usual templated ones.",
)
@click.option("-o", "--output", help="Write here (default stdout; only if every link signs).")
@click.option(
    "--recipients",
    help="A CSV with a uid column (other columns: fields): one email per row, as NDJSON lines"
    ' (the columns and "html") or, with --out-dir, a UID.html file each.',
)
@click.option(
    "--out-dir",
    help="With --recipients: write UID.html files into this folder, flushed to disk once"
    " for the batch (docs/wrap.md).",
)
@carry_option
@settings_options(
    "db", "data_dir", "public_url", "secret_file", "key_id", "redirect_hosts", "redirect_allow_ip"
)
def wrap(
    email: str,
    expires: str | None,
    append_utm: bool,
    no_pixel: bool,
    trap: bool,
    sent_at: str,
    message_id: str | None,
    leave: tuple[str, ...],
    output: str | None,
    recipients: str | None,
    out_dir: str | None,
    carry: tuple[str, ...],
    **options: Any,
) -> None:
    """Print EMAIL (an HTML file, - for stdin) with every http(s) link wrapped in a signed
    redirect and a signed open pixel right after <body>; everything else byte for byte.

    Left alone: mailto:, tel:, #anchors, templated hrefs ({{ ... }}, *|UNSUB|*,
    [unsubscribe_link], {unsubscribe_url}), links marked data-notrack, links already ours.

    \b
    Example:
      pixel-server wrap spring.html --cid spring --uid r-1042 --utm-source newsletter -o out.html
      pixel-server wrap spring.html --cid spring --recipients recipients.csv --carry email \\
          -o send.ndjson
    """
    from .links import LinkError, parse_sent, public_base
    from .wrap import Template, skip_patterns

    settings = load_settings(options)
    try:
        skip = skip_patterns(leave)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--leave") from None
    link_spec = collect_spec(dict(options), expires, append_utm, link=True)
    pixel_spec = collect_spec(options, expires, False, link=False)
    try:
        send = parse_sent(sent_at), message_id
        link_spec, pixel_spec = link_spec.sent_as(*send), pixel_spec.sent_as(*send)
    except LinkError as exc:
        raise bad_link(exc) from None
    links, pixels = minter(settings, link=True), minter(settings, link=False)
    if email == "-" and recipients == "-":
        raise click.UsageError("the email and the recipients cannot both come from stdin")
    source = _read(email)
    template = Template.parse(source, wrapped_prefix=f"{public_base(settings)}/r/", skip=skip)
    if recipients is not None:
        _wrap_recipients(
            template,
            (link_spec, pixel_spec),
            (links, pixels),
            no_pixel,
            trap,
            recipients,
            (out_dir, output, carry),
        )
        return
    if out_dir is not None or carry:
        raise click.UsageError("--out-dir and --carry go with --recipients")
    try:
        signed = links.mint_each(link_spec, template.targets())
        pixel = None if no_pixel else pixels.mint(pixel_spec)
        trap_url = links.mint_trap(link_spec) if trap else None
    except LinkError as exc:
        raise bad_link(exc) from None
    note_changed(links)
    text = template.render(signed.__getitem__, pixel, trap_url)
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    _write(Path(output), text)
    shown = f"{len(signed)} links" + ("" if no_pixel else " and the pixel")
    shown += " and the trap link" if trap else ""
    click.echo(f"wrote {output}: {shown} signed", err=True)


def _wrap_recipients(
    template: Template,
    specs: tuple[Spec, Spec],
    minters: tuple[Minter, Minter],
    no_pixel: bool,
    trap: bool,
    path: str,
    bulk: tuple[str | None, str | None, tuple[str, ...]],
) -> None:
    """One email per recipient row: every token signed (and every problem found, naming its
    line) before anything is written; the template tokenized once. ``bulk`` is the
    --out-dir, --output and --carry given."""
    from .links import LinkError
    from .recipients import RecipientsError

    (link_spec, pixel_spec), (links, pixels) = specs, minters
    out_dir, output, carry = bulk
    if out_dir is not None and output is not None:
        raise click.UsageError("give --out-dir or --output, not both")
    name = "stdin" if path == "-" else path
    targets = template.targets()
    signed: list[tuple[Recipient, dict[str, str], str | None, str | None]] = []
    try:
        _, rows = read_recipients_for(path, link_spec, "html", link=True, carry=carry)
        for row in rows:
            try:
                row_links = link_spec.with_fields(row.fields, link=True)
                urls = links.mint_each(row_links, targets)
                row_pixel = pixel_spec.with_fields(row.fields, link=False)
                pixel = None if no_pixel else pixels.mint(row_pixel)
                trap_url = links.mint_trap(row_links) if trap else None
            except LinkError as exc:
                raise recipient_error(name, row.line, exc) from None
            if out_dir is not None and not SAFE_NAME.fullmatch(row.cells["uid"]):
                uid = row.cells["uid"][:40]
                message = f"uid {uid!r} cannot be a file name; write NDJSON instead of --out-dir"
                raise RecipientsError(f"{name} line {row.line}: {message}")
            signed.append((row, urls, pixel, trap_url))
    except RecipientsError as exc:
        raise click.UsageError(str(exc)) from None
    note_changed(links)
    if out_dir is not None:
        folder = Path(out_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OneLineError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
        plain = template.compiled()
        emails = (
            (f"{row.cells['uid']}.html", plain.render(urls.__getitem__, pixel, trap_url))
            for row, urls, pixel, trap_url in signed
        )
        try:  # all written, then one flush for the batch (files.write_batch)
            count = write_batch(folder, emails)
        except OSError as exc:
            raise OneLineError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
        click.echo(f"wrote {count} emails to {out_dir}", err=True)
        return
    # the email's text is JSON-escaped once, not once per recipient: the escape is per
    # character, so the pieces escaped apart join to the escaped email
    escaped = template.compiled(_json_text)
    lines = (
        _json_head(row.cells) + escaped.render(urls.__getitem__, pixel, trap_url) + '"}\n'
        for row, urls, pixel, trap_url in signed
    )
    if output is None or output == "-":
        sys.stdout.writelines(lines)
        return
    try:
        with replaced_on_success(Path(output)) as fh:
            fh.writelines(lines)
    except OSError as exc:
        raise OneLineError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {len(signed)} emails to {output}", err=True)


def _json_text(text: str) -> str:
    """``text`` as the inside of a JSON string on an NDJSON line."""
    return ndjson_line(json.dumps(text, ensure_ascii=False)[1:-1])[:-1]


def _json_head(cells: dict[str, str]) -> str:
    """A recipient's NDJSON line up to the opening quote of its "html" value (the last key:
    a recipients file has no "html" column)."""
    line = ndjson_line(json.dumps({**cells, "html": ""}, ensure_ascii=False))
    return line.removesuffix('"}\n')


def _write(path: Path, text: str) -> None:
    try:
        with replaced_on_success(path) as fh:  # a failure keeps the old file whole
            fh.write(text)
    except OSError as exc:
        raise OneLineError(f"cannot write {path}: {exc.strerror or exc}") from None


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
