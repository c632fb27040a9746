"""What the HTTP protocol costs a keep-alive pixel request, in process, without sockets.

    .venv/bin/python bench/protocol_cost.py [--requests 20000] [--repeats 7] [module:Class ...]

Each protocol class gets a fake transport and is fed the pixel request ``make bench`` sends
(bench/scenarios.py: PIXEL_PATH, the four browser headers), one read per request, on uvloop;
after each read the loop runs the request's task, which answers it. The figure is the best of
``--repeats`` runs of ``--requests`` requests, in microseconds per request; the classes take
turns so that a slower machine phase hits them all. The app is bench/raw_app.py, so the
differences are the protocols' alone (the real pixel answers only once its hit is committed,
which one connection would serialise).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import time
from typing import Any

import uvloop
from raw_app import app as raw_app
from scenarios import HEADERS, PIXEL_PATH
from uvicorn.config import Config
from uvicorn.server import ServerState

PROTOCOLS = (
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
    "pixel_server.coalesce:CoalescingHttpToolsProtocol",
    "pixel_server.protocol:BoundedHttpToolsProtocol",
)
REQUEST = (
    f"GET {PIXEL_PATH} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
    + "\r\n"
).encode()


class FakeTransport(asyncio.Transport):
    """Discards what is written; has the addresses uvicorn asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def load(name: str) -> type[asyncio.Protocol]:
    module, _, attr = name.partition(":")
    cls: type[asyncio.Protocol] = getattr(importlib.import_module(module), attr)
    return cls


async def per_request(cls: type[asyncio.Protocol], config: Config, requests: int) -> float:
    """Microseconds per request of ``requests`` keep-alive requests on one connection."""
    loop = asyncio.get_running_loop()
    state = ServerState()
    protocol: Any = cls(config, state, {}, loop)  # type: ignore[call-arg]
    transport = FakeTransport()
    protocol.connection_made(transport)
    feed, pause = protocol.data_received, asyncio.sleep
    started = time.perf_counter()
    for answered in range(1, requests + 1):
        feed(REQUEST)
        while state.total_requests < answered:  # the request's task runs and answers
            await pause(0)
    elapsed = time.perf_counter() - started
    if transport.closing:
        raise RuntimeError(f"{cls.__name__} closed the connection")
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("protocols", nargs="*", default=PROTOCOLS, help="module:Class ...")
    args = parser.parse_args()
    classes = [load(name) for name in args.protocols]
    config = Config(raw_app, lifespan="off", proxy_headers=False, log_config=None)
    config.load()

    async def run() -> dict[str, list[float]]:
        results: dict[str, list[float]] = {name: [] for name in args.protocols}
        for cls in classes:  # warm-up
            await per_request(cls, config, 2000)
        for _ in range(args.repeats):
            for name, cls in zip(args.protocols, classes, strict=True):
                results[name].append(await per_request(cls, config, args.requests))
        return results

    results = uvloop.run(run())
    base = min(next(iter(results.values())))
    for name, runs in results.items():
        best = min(runs)
        print(f"{name:56} {best:6.2f} us/request (best of {args.repeats}; +{best - base:.2f})")


if __name__ == "__main__":
    main()
