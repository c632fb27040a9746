"""Where a pixel's CPU goes: a sampling profile of `pixel-server serve` under wrk load.

    .venv/bin/pip install py-spy        # not a project dependency: only this script uses it
    .venv/bin/python bench/profile.py [--path /r/<token>] [--seconds 10] [--server granian]

The server runs on core 1 and wrk on core 0, as in `make bench`. py-spy samples every thread
(without --native, time in C is charged to the Python frame that called it) and the samples
are grouped by component; the table is what docs/benchmarks.md quotes.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
PIXEL_PATH = (
    "/p.gif?cid=spring-sale-2026&uid=8f14e45fceea167a5a36dedd4bea2543&utm_source=newsletter"
    "&utm_medium=email&utm_campaign=spring_sale_2026&utm_content=hero_banner"
)
HEADERS = [
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Accept: image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.9",
    "Accept-Encoding: gzip, deflate, br",
]
# first matching rule wins; matched against "function (file:line)"
COMPONENTS = [
    ("SQLite writer thread (executemany, COMMIT + fsync)", ("store/sqlite.py", "thread.py")),
    ("spill/writer task (batching, futures, metrics)", ("writer.py", "metrics.py", "prometheus")),
    ("hit building (query parse, headers, UA cache, IP)", ("hits.py", "clientip.py", "useragent")),
    (
        "tokens and targets (HMAC, payload, validation)",
        ("signing.py", "compact.py", "legacy_tokens.py", "itsdangerous", "urls.py"),
    ),
    ("our endpoints and dispatch", ("endpoints.py", "app.py", "runtime.py", "responses.py")),
    ("uvicorn protocol (httptools callbacks, send, socket writes)", ("uvicorn/",)),
    ("granian glue", ("granian",)),
    ("asyncio / uvloop event loop", ("asyncio/", "uvloop", "runners.py")),
    ("starlette", ("starlette/",)),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def component(frame: str) -> str:
    for name, needles in COMPONENTS:
        if any(needle in frame for needle in needles):
            return name
    return "other (stdlib, json, re, ...)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=PIXEL_PATH, help="request path (default: the pixel)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--server", default="uvicorn", choices=["uvicorn", "granian"])
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install wrk util-linux")
    if not (BIN / "py-spy").exists():
        sys.exit(f"py-spy is missing: {BIN / 'pip'} install py-spy")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pixel-profile-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXEL_")}
    env |= {
        "PIXEL_PORT": str(port),
        "PIXEL_DB": str(workdir / "pixel.db"),
        "PIXEL_SECRET_KEY": "profile-secret-0123456789abcdef",
        "PIXEL_LOG_LEVEL": "warning",
        "PIXEL_SERVER": args.server,
    }
    server = subprocess.Popen(
        ["taskset", "-c", "1", str(BIN / "pixel-server"), "serve"], env=env, cwd=workdir
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                # S310: a fixed http:// URL on loopback, built above
                urllib.request.urlopen(f"{url}/healthz", timeout=1).read()  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        wrk = ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{args.seconds + 4}s"]
        for header in HEADERS:
            wrk += ["-H", header]
        load = subprocess.Popen([*wrk, url + args.path], stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        raw = workdir / "profile.txt"
        pid = str(server.pid)
        if args.server == "granian":  # the worker process serves; the parent only supervises
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            pid = children[0]
        subprocess.run(
            [str(BIN / "py-spy"), "record", "--nonblocking", "-r", "250", "-d",
             str(args.seconds), "-p", pid, "-f", "raw", "-o", str(raw)],
            check=True, capture_output=True,
        )  # fmt: skip
        output, _ = load.communicate()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        counts[component(leaf)] += int(count)
        total += int(count)
    lines = output.splitlines()
    rps = next((ln.split()[1] for ln in lines if ln.startswith("Requests/sec")), "?")
    print(
        f"{args.server}, {args.path[:40]}..., {rps} req/s under load, {total} samples (self time)"
    )
    print("| component | share of samples |")
    print("|---|---:|")
    for name, samples in counts.most_common():
        print(f"| {name} | {100 * samples / total:.1f}% |")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
