"""How fast a send is wrapped: `pixel-server wrap --recipients` over a 50 KB email.

Usage: .venv/bin/python bench/wrapping.py [--recipients 2000] [--links 25] [--runs 3]

The email is a newsletter-like table layout of about 50 KB with ``--links`` distinct tracked
links (and an MSO button, mailto and templated links left alone). Two figures, each the
median of ``--runs``:

1. the CLI: ``pixel-server wrap email.html --recipients r.csv -o out.ndjson`` (and with
   ``--out-dir out/``: a file each, each fsynced), process start, CSV reading and writing
   included, as wrapped emails per second;
2. in process: one ``Template.parse`` and a ``render`` per recipient with real signers (the
   CLI's work without the process and the files), on one core.

Each run is checked: one file per recipient, every link and pixel token distinct.
Issue 9's target: at least 1,000 wrapped 50 KB emails per second on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scenarios import SECRET_KEY as SECRET

BIN = Path(sys.executable).parent


def email(links: int) -> str:
    rows = []
    for i in range(links):
        rows.append(
            f'<tr><td style="padding:12px;font-family:Arial,sans-serif;color:#333">'
            f'<a href="https://shop.example/p/{i}?utm_content=row{i}&amp;ref=nl" '
            f'style="color:#c00;text-decoration:none">Product {i} — Grüße</a>'
            f"<p>{'Lorem ipsum dolor sit amet, consectetur adipiscing elit. ' * 32}</p></td></tr>"
        )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>td{font-size:14px}</style>'
        '</head><body style="margin:0"><table role="presentation" width="100%">'
        + "\n".join(rows)
        + '<!--[if mso]><v:roundrect href="https://shop.example/sale" arcsize="8%">'
        "<center>Buy</center></v:roundrect><![endif]-->"
        '<tr><td><a href="mailto:help@shop.example">Help</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr></table></body></html>'
    )


def run_cli(work: Path, count: int, ndjson: bool) -> float:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    (work / "out.ndjson").unlink(missing_ok=True)
    target: list[str | Path] = ["-o", work / "out.ndjson"] if ndjson else ["--out-dir", out]
    env = {**os.environ, "PIXEL_SECRET_KEY": SECRET, "PIXEL_PUBLIC_URL": "https://t.example"}
    env["PIXEL_DB"] = str(work / "pixel.db")
    started = time.perf_counter()
    subprocess.run(
        [
            BIN / "pixel-server",
            "wrap",
            work / "email.html",
            "--cid",
            "spring",
            "--recipients",
            work / "r.csv",
            *target,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    if ndjson:
        texts = [json.loads(line)["html"] for line in (work / "out.ndjson").open()]
    else:
        texts = [path.read_text() for path in out.iterdir()]
    assert len(texts) == count, len(texts)
    tokens = re.findall(r"/[rp]/([^\"]+)", texts[0]) + re.findall(r"/[rp]/([^\"]+)", texts[-1])
    assert len(set(tokens)) == len(tokens), "tokens repeat between recipients"
    return count / elapsed


def run_in_process(source: str, count: int) -> float:
    os.environ.update(PIXEL_SECRET_KEY=SECRET, PIXEL_PUBLIC_URL="https://t.example")
    from pixel_server.config import Settings
    from pixel_server.links import Minter, spec_from_options
    from pixel_server.wrap import Template

    settings = Settings.from_env()
    links, pixels = Minter.for_links(settings), Minter.for_pixels(settings)
    started = time.process_time()
    template = Template.parse(source, wrapped_prefix="https://t.example/r/")
    targets = template.targets()
    for number in range(count):
        named = {"cid": "spring", "uid": f"r-{number}"}
        link_spec = spec_from_options(named, (), None, False, link=True)
        pixel_spec = spec_from_options(named, (), None, False, link=False)
        urls = {target: links.mint(link_spec, target) for target in targets}
        template.render(urls.__getitem__, pixels.mint(pixel_spec))
    return count / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--links", type=int, default=25)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    source = email(args.links)
    with tempfile.TemporaryDirectory(prefix="bench-wrap-") as folder:
        work = Path(folder)
        (work / "email.html").write_text(source, encoding="utf-8")
        (work / "r.csv").write_text(
            "uid\n" + "".join(f"r-{i}\n" for i in range(args.recipients)), encoding="utf-8"
        )
        files = statistics.median(run_cli(work, args.recipients, False) for _ in range(args.runs))
        lines = statistics.median(run_cli(work, args.recipients, True) for _ in range(args.runs))
    inner = statistics.median(run_in_process(source, args.recipients) for _ in range(args.runs))
    size = len(source.encode()) / 1024
    print(f"email: {size:.1f} KiB, {args.links} tracked links + 1 VML button, one pixel")
    print(f"pixel-server wrap --recipients -o out.ndjson: {lines:,.0f} emails/s (process included)")
    print(f"pixel-server wrap --recipients --out-dir:    {files:,.0f} emails/s (a file each)")
    print(f"in process, one core (CPU time):             {inner:,.0f} emails/s")
    verdict = "PASS" if min(lines, inner) >= 1000 else "FAIL"
    print(f"target >= 1,000 wrapped 50 KB emails/s on one core: {verdict}")


if __name__ == "__main__":
    main()
