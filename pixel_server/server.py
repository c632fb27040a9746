"""Running the app under uvicorn or granian, one process or several workers sharing the socket.

Both get the same bounds (``bounds.py``): a connection limit kept below the file-descriptor
limit (raised to its hard limit first), a request-head size limit and a head deadline; what
granian cannot enforce is listed in docs/input-limits.md.
"""

from __future__ import annotations

import dataclasses
import logging.config
import os
import signal
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from .bounds import Bounds, raise_fd_limit
from .config import ConfigError, Settings, env_text
from .logs import log_config
from .protocol import BoundedHttpToolsProtocol

# hyper (granian) refuses a read buffer below 8 KiB
GRANIAN_MIN_BUFFER = 8192


class BoundedConfig(uvicorn.Config):
    """uvicorn's Config plus our ``Bounds``, which the protocol reads; they travel with the
    config to worker processes (uvicorn pickles it for each)."""

    def __init__(self, app: str, bounds: Bounds, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.bounds = bounds


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
    # configure logging first, so that a lowered connection limit is reported in our format
    logging.config.dictConfig(log_config(settings.log_level))
    bounds = Bounds.from_settings(settings, raise_fd_limit())
    if settings.server == "granian":
        return run_granian(settings, bounds)
    return run_uvicorn(settings, bounds)


def run_granian(settings: Settings, bounds: Bounds) -> int:
    """Granian: HTTP parsing and connection handling in Rust, each worker in its own process.

    On SIGTERM it stops its workers, each of which stops accepting, finishes in-flight
    requests and runs the lifespan shutdown (our drain). ``workers_kill_timeout`` bounds the
    whole stop like uvicorn's graceful timeout plus our drain timeout.
    """
    try:
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.http import HTTP1Settings
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
        http1_settings=HTTP1Settings(
            # hyper's header deadline also bounds an idle keep-alive wait (no separate timeout)
            header_read_timeout=max(1, round(bounds.header_timeout * 1000)),
            max_buffer_size=max(GRANIAN_MIN_BUFFER, bounds.max_header_bytes),
        ),
        # requests served at once per worker; more connections wait in the listen backlog
        backpressure=bounds.max_connections,
        websockets=False,
        log_dictconfig=log_config(settings.log_level),
        log_access=settings.access_log,
        workers_kill_timeout=int(settings.graceful_timeout + settings.drain_timeout + 1),
    ).serve()
    return 0


def run_uvicorn(settings: Settings, bounds: Bounds) -> int:
    # uvicorn re-raises the stop signal once its graceful shutdown is done, which would end
    # the process with status -15; with these no-op handlers in place it returns normally.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    config = BoundedConfig(
        "pixel_server.app:app_from_env",
        bounds,
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
        http=BoundedHttpToolsProtocol,
        ws="none",
        timeout_keep_alive=settings.keepalive_timeout,  # call_later takes a float
        timeout_graceful_shutdown=settings.graceful_timeout,
    )
    server = uvicorn.Server(config)
    if settings.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
    return 0 if server.started or settings.workers > 1 else 1
