"""How fast links are minted for a send: one CLI call per link, the bulk CLI, POST /api/links.

Usage: .venv/bin/python bench/links.py [--count 10000] [--runs 5]

1. ``pixel-server link URL ...`` once per recipient: the median of ``--single`` calls, scaled
   to ``--count`` recipients (what a shell loop over the list costs);
2. ``pixel-server link URL --recipients r.csv -o links.csv`` for ``--count`` rows;
3. ``POST /api/links`` with ``--count`` items to a real ``pixel-server serve`` process.

Each run is checked: the right number of links, every token distinct. Wall-clock times;
the figures in docs/benchmarks.md come from this script.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("pixel-server")
TARGET = "https://shop.example/sale"
SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway key for a scratch db)
TOKEN = "bench-api-token"  # noqa: S105 (the scratch server's own token)


def timed(runs: int, fn: Callable[[], None]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def show(label: str, times: list[float], scale: float = 1.0) -> None:
    med, low = statistics.median(times) * scale, min(times) * scale
    print(f"{label:<52} median {med:8.3f} s   min {low:8.3f} s   ({len(times)} runs)")


def write_recipients(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["uid", "name", "list"])
        out.writerows(
            [f"r-{i:06d}", f"Recipient {i}", "vip" if i % 3 else ""] for i in range(count)
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--single", type=int, default=20, help="single `link` calls to time")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pixel-links-bench-"))
    env = {
        **os.environ,
        "PIXEL_DB": str(tmp / "pixel.db"),
        "PIXEL_SECRET_KEY": SECRET,
        "PIXEL_API_TOKENS": TOKEN,
        "PIXEL_PUBLIC_URL": "https://t.example",
    }
    recipients, out = tmp / "recipients.csv", tmp / "links.csv"
    write_recipients(recipients, args.count)
    common = [TARGET, "--cid", "spring", "--utm-source", "nl", "--append-utm", "--expires", "90d"]

    def one_link() -> None:
        cmd = [str(CLI), "link", *common, "--uid", "r-000001"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)

    def bulk_cli() -> None:
        cmd = [str(CLI), "link", *common, "--recipients", str(recipients), "-o", str(out)]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        with out.open(newline="", encoding="utf-8") as fh:
            links = {row["link"] for row in csv.DictReader(fh)}
        assert len(links) == args.count, len(links)

    items = [
        {
            "url": TARGET,
            "cid": "spring",
            "uid": f"r-{i:06d}",
            "utm_source": "nl",
            "fields": {"name": f"Recipient {i}"},
            "expires": "90d",
            "append_utm": True,
        }
        for i in range(args.count)
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.count} links, {args.runs} runs each, {os.cpu_count()} CPUs, load {load}")
    show(
        f"one `link` call per recipient (x{args.count}, est.)",
        timed(args.single, one_link),
        args.count,
    )
    show("pixel-server link --recipients (CLI)", timed(args.runs, bulk_cli))
    port = free_port()
    server = start_server(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

            def bulk_api() -> None:
                response = http.post(
                    "/api/links", json=items, headers={"authorization": f"Bearer {TOKEN}"}
                )
                body = response.json()
                assert response.status_code == 200, response.text[:200]
                assert body["errors"] == 0, body["links"][:3]
                assert len({link["link"] for link in body["links"]}) == args.count

            show("POST /api/links (client to a real server)", timed(args.runs, bulk_api))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
