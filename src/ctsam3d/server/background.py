"""Run the server in a background thread (tests, benchmarks, ``demo --serve``).

>>> with BackgroundServer(app) as url:      # http://127.0.0.1:<free port>
...     requests.get(url + "/info/")
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    """uvicorn on ``host:port`` (a free port by default) in a daemon thread; a context manager
    whose value is the base URL. Leaving the block stops the server."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.timeout = timeout
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(self.timeout)
