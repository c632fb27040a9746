"""Running the app under uvicorn, one process or several workers sharing the socket."""

from __future__ import annotations

import dataclasses
import os
import signal

import uvicorn
from uvicorn.supervisors import Multiprocess

from .coalesce import CoalescingHttpToolsProtocol
from .config import ConfigError, Settings, env_text
from .logs import log_config


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as PIXEL_* variables, so worker processes build the very same settings."""
    env = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        env[f.metadata["env"]] = env_text(value)
    return env


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status (0 after a graceful stop)."""
    os.environ.update(settings_env(settings))
    if settings.server == "granian":
        return run_granian(settings)
    return run_uvicorn(settings)


def run_granian(settings: Settings) -> int:
    """Granian: HTTP parsing and connection handling in Rust, each worker in its own process.

    On SIGTERM it stops its workers, each of which stops accepting, finishes in-flight
    requests and runs the lifespan shutdown (our drain). ``workers_kill_timeout`` bounds the
    whole stop like uvicorn's graceful timeout plus our drain timeout.
    """
    try:
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.server import Server as Granian
    except ImportError:
        raise ConfigError("PIXEL_SERVER=granian needs granian: pip install granian") from None
    Granian(
        "pixel_server.app:app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        runtime_threads=1,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_dictconfig=log_config(settings.log_level),
        log_access=settings.access_log,
        workers_kill_timeout=int(settings.graceful_timeout + settings.drain_timeout + 1),
    ).serve()
    return 0


def run_uvicorn(settings: Settings) -> int:
    # uvicorn re-raises the stop signal once its graceful shutdown is done, which would end
    # the process with status -15; with these no-op handlers in place it returns normally.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    config = uvicorn.Config(
        "pixel_server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        lifespan="on",
        log_config=log_config(settings.log_level),
        access_log=settings.access_log,
        # client IPs come from our own trusted-proxy logic (clientip.py), not uvicorn's
        proxy_headers=False,
        server_header=False,
        http=CoalescingHttpToolsProtocol,
        ws="none",
        timeout_graceful_shutdown=settings.graceful_timeout,
    )
    server = uvicorn.Server(config)
    if settings.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
    return 0 if server.started or settings.workers > 1 else 1
