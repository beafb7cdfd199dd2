"""A real threaded HTTP server on 127.0.0.1 serving a directory, with paths that misbehave.

`server.on("/repodata/repomd.xml", status(500))` makes one path misbehave; every other path is
served from the directory as files. Each behaviour is bounded: it ends when its body is sent,
when the client goes away, or when the server stops (`stop()` wakes every waiting handler and
joins every thread).
"""

import ssl
import threading
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# What a misbehaving path does: it answers through the handler, and waits on the server's
# `stopping` event, never in a plain sleep, so that the server can always stop.
Behaviour = Callable[[SimpleHTTPRequestHandler, threading.Event], None]

# A handler still blocked on its socket after this long gives up (a client that went silent).
HANDLER_SOCKET_TIMEOUT = 10.0


class YumServer:
    def __init__(self, root: Path, *, tls: ssl.SSLContext | None = None):
        self.root = root
        self.behaviours: dict[str, Behaviour] = {}
        # (path, headers) of each request, in order of arrival.
        self.requests: list[tuple[str, dict[str, str]]] = []
        # The request target of each, as sent (query and percent-escapes included).
        self.targets: list[str] = []
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, self, directory=str(root)))
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="yum-test-server"
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}/{path.lstrip('/')}"

    def on(self, path: str, behaviour: Behaviour) -> None:
        """Answer GET `path` (from the root, e.g. `/repodata/repomd.xml`) with `behaviour`."""
        self.behaviours[path] = behaviour

    def start(self) -> "YumServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()  # joins the request threads
        self._thread.join(timeout=10)


class _Handler(SimpleHTTPRequestHandler):
    timeout = HANDLER_SOCKET_TIMEOUT

    def __init__(self, server_state: YumServer, *args: Any, **kwargs: Any):
        self.state = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.state.requests.append((path, dict(self.headers.items())))
        self.state.targets.append(self.path)
        behaviour = self.state.behaviours.get(path)
        if behaviour is None:
            super().do_GET()
            return
        try:
            behaviour(self, self.state.stopping)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away, as a client that refuses an answer does

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


def status(code: int) -> Behaviour:
    """Answer with this HTTP status and a short HTML body."""
    return lambda handler, stopping: handler.send_error(code)


def redirect(location: str, code: int = HTTPStatus.FOUND) -> Behaviour:
    def answer(handler: SimpleHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(code)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def content(body: bytes, *, length: int | None = None) -> Behaviour:
    """Answer 200 with `body`, announcing `length` bytes (a larger one makes a truncated body)."""

    def answer(handler: SimpleHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(HTTPStatus.OK)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def drip(body: bytes, interval: float) -> Behaviour:
    """Answer 200 with `body`, one byte every `interval` seconds."""

    def answer(handler: SimpleHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(HTTPStatus.OK)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for index in range(len(body)):
            if stopping.wait(interval):
                return
            handler.wfile.write(body[index : index + 1])
            handler.wfile.flush()

    return answer


def stream(size: int, *, announce: bool) -> Behaviour:
    """Answer 200 with `size` zero bytes, sent as they are made, never held in memory; with a
    Content-Length if `announce`, else until the connection closes."""
    chunk = bytes(64 * 1024)

    def answer(handler: SimpleHTTPRequestHandler, stopping: threading.Event) -> None:
        handler.send_response(HTTPStatus.OK)
        if announce:
            handler.send_header("Content-Length", str(size))
        handler.end_headers()
        sent = 0
        while sent < size and not stopping.is_set():
            piece = chunk[: size - sent]
            handler.wfile.write(piece)
            sent += len(piece)

    return answer


def silence() -> Behaviour:
    """Read the request and answer nothing until the server stops."""

    def answer(handler: SimpleHTTPRequestHandler, stopping: threading.Event) -> None:
        stopping.wait(HANDLER_SOCKET_TIMEOUT)

    return answer
