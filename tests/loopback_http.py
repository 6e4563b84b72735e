"""A recording HTTP server on 127.0.0.1 for the egress tests: it proves a refusal by *not* seeing a request.

Paths: ``/ok`` answers ``{"ok": true}``; ``/redirect?to=<url>`` answers 302 to ``<url>``, ``/loop`` 302
to itself; ``/trickle``
sends a declared 1 MiB body one byte at a time (a slow server), stopping when the client goes away
or after ``TRICKLE_LIMIT`` bytes (every loop is bounded). ``paths`` lists every request seen, in order.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRICKLE_LIMIT = 2000


class RecordingServer:
    def __init__(self) -> None:
        self.paths: list[str] = []
        seen = self.paths

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                seen.append(self.path)
                parsed = urllib.parse.urlsplit(self.path)
                if parsed.path in ("/redirect", "/loop"):
                    target = urllib.parse.parse_qs(parsed.query)["to"][0] if parsed.path == "/redirect" else "/loop"
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if parsed.path == "/trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", str(1024 * 1024))
                    self.end_headers()
                    for _ in range(TRICKLE_LIMIT):
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.01)
                    return
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer
            do_PUT = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def recording_server() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    try:
        yield server
    finally:
        server.stop()
