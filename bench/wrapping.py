"""How fast a send is wrapped: `pixel-server wrap --recipients` over a 50 KB email.

Part of ``make bench`` (the ``wrap`` step; ``BENCH_ARGS="--only wrap"`` for it alone), or on
its own: .venv/bin/python bench/wrapping.py [--recipients 2000] [--links 25] [--runs 3]

The email is a newsletter-like table layout of about 50 KB with ``--links`` distinct tracked
links (and an MSO button, mailto and templated links left alone). Three figures, each the
median of ``--runs``:

1. the CLI: ``pixel-server wrap email.html --recipients r.csv -o out.ndjson``, process start,
   CSV reading and writing included;
2. the same with ``--out-dir out/``: a file each, all flushed once (files.write_batch);
3. in process: one ``Template.parse`` (and ``compiled``), a ``render`` per recipient with
   real signers (the CLI's work without the process and the files).

The CLI runs pinned to one core (``taskset -c 1`` where there is one) and is reported two
ways: emails per second of wall time, and per second of the process's CPU time (user + sys),
which is "per second on one core" even when other programs share the machine. Each run is
checked: one email per recipient, every link and pixel token distinct. Issue 9's target: at
least 1,000 wrapped 50 KB emails per second on one core, reported as a ratio (no assertion).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scenarios import SECRET_KEY as SECRET

NAME = "wrap"
TARGET = 1000  # wrapped 50 KB emails per second on one core (issue 9)
BIN = Path(sys.executable).parent
PIN = ["taskset", "-c", "1"] if shutil.which("taskset") and os.cpu_count() != 1 else []


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


def run_cli(work: Path, count: int, ndjson: bool) -> tuple[float, float]:
    """One CLI batch: (emails per wall second, emails per CPU second of the process)."""
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    (work / "out.ndjson").unlink(missing_ok=True)
    target: list[str | Path] = ["-o", work / "out.ndjson"] if ndjson else ["--out-dir", out]
    env = {**os.environ, "PIXEL_SECRET_KEY": SECRET, "PIXEL_PUBLIC_URL": "https://t.example"}
    env["PIXEL_DB"] = str(work / "pixel.db")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [
            *PIN,
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
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if ndjson:
        lines = (work / "out.ndjson").read_text(encoding="utf-8").splitlines()
        texts = [json.loads(line)["html"] for line in lines]
    else:
        texts = [path.read_text(encoding="utf-8") for path in out.iterdir()]
    assert len(texts) == count, len(texts)
    tokens = re.findall(r"/[rp]/([^\"]+)", texts[0]) + re.findall(r"/[rp]/([^\"]+)", texts[-1])
    assert len(set(tokens)) == len(tokens), "tokens repeat between recipients"
    return count / elapsed, count / cpu


def run_in_process(source: str, count: int) -> float:
    os.environ.update(PIXEL_SECRET_KEY=SECRET, PIXEL_PUBLIC_URL="https://t.example")
    from pixel_server.config import Settings
    from pixel_server.links import Minter, spec_from_options
    from pixel_server.wrap import Template

    settings = Settings.from_env()
    links, pixels = Minter.for_links(settings), Minter.for_pixels(settings)
    started = time.process_time()
    template = Template.parse(source, wrapped_prefix="https://t.example/r/")
    targets, compiled = template.targets(), template.compiled()
    for number in range(count):
        named = {"cid": "spring", "uid": f"r-{number}"}
        link_spec = spec_from_options(named, (), None, False, link=True)
        pixel_spec = spec_from_options(named, (), None, False, link=False)
        urls = {target: links.mint(link_spec, target) for target in targets}
        compiled.render(urls.__getitem__, pixels.mint(pixel_spec))
    return count / (time.process_time() - started)


def run(
    work: Path,
    say: Callable[[str], None],
    recipients: int = 2000,
    links: int = 25,
    runs: int = 3,
) -> dict[str, Any]:
    """Measure under ``work``; the figures (medians of ``runs``) and the target's ratios."""
    source = email(links)
    folder = work / "wrap"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "email.html").write_text(source, encoding="utf-8")
    (folder / "r.csv").write_text(
        "uid\n" + "".join(f"r-{i}\n" for i in range(recipients)), encoding="utf-8"
    )
    say(f"{NAME}: {recipients:,} recipients x {runs} runs, NDJSON and --out-dir")
    result: dict[str, Any] = {
        "email_kib": round(len(source.encode()) / 1024, 1),
        "links": links,
        "recipients": recipients,
        "runs": runs,
        "pinned": " ".join(PIN) or "no",
    }
    for key, ndjson in (("ndjson", True), ("out_dir", False)):
        measured = [run_cli(folder, recipients, ndjson) for _ in range(runs)]
        result[key] = {
            "wall_per_s": statistics.median(m[0] for m in measured),
            "cpu_per_s": statistics.median(m[1] for m in measured),
        }
    result["in_process_cpu_per_s"] = statistics.median(
        run_in_process(source, recipients) for _ in range(runs)
    )
    shutil.rmtree(folder, ignore_errors=True)
    result["ratios"] = {
        "ndjson_cpu": result["ndjson"]["cpu_per_s"] / TARGET,
        "out_dir_cpu": result["out_dir"]["cpu_per_s"] / TARGET,
        "in_process": result["in_process_cpu_per_s"] / TARGET,
    }
    return result


def report(result: dict[str, Any]) -> str:
    def row(what: str, figures: dict[str, float]) -> str:
        wall, cpu = figures["wall_per_s"], figures["cpu_per_s"]
        return f"  {what:<46} {wall:>9,.0f} {cpu:>9,.0f} {cpu / TARGET:>7.2f}"

    inner = result["in_process_cpu_per_s"]
    lines = [
        f"wrap: a {result['email_kib']} KiB email, {result['links']} tracked links + 1 VML"
        f" button, one pixel; {result['recipients']:,} recipients, median of {result['runs']}"
        f" (pinned: {result['pinned']})",
        f"  {'wrapped emails/s':<46} {'wall':>9} {'CPU':>9} {'÷ 1,000':>7}",
        row("pixel-server wrap --recipients -o out.ndjson", result["ndjson"]),
        row("pixel-server wrap --recipients --out-dir", result["out_dir"]),
        f"  {'in process (Template.parse once, render each)':<46} {'':>9} {inner:>9,.0f}"
        f" {inner / TARGET:>7.2f}",
        f"  target: >= {TARGET:,} wrapped 50 KB emails/s on one core (the CPU column;"
        " a ratio >= 1 meets it)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--links", type=int, default=25)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-wrap-") as folder:
        result = run(Path(folder), print, args.recipients, args.links, args.runs)
    print(report(result))


if __name__ == "__main__":
    main()
