"""An HTTP front on loopback for an emulator of a REST API: requests a fake handles itself (the
calls the emulator lacks, and Google's rules it does not enforce) are answered here, every other
request is passed through to the emulator unchanged, and its answer back."""

import http.server
import json
import re
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from clickstream.fakes.rules import Broken

# (method, path pattern) -> handler(front, request) -> (status, body) or None (pass through)
Route = tuple[str, re.Pattern, Callable]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Request:
    """A request to the front: its method, path (without the query), query, headers, body."""

    def __init__(self, method: str, target: str, headers, body: bytes, match: re.Match[str]):
        self.method, self.headers, self.body, self.match = method, headers, body, match
        split = urlsplit(target)
        self.path, self.query, self.target = split.path, split.query, target

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


class HttpFront:
    """Serves ``routes`` at ``url``; passes the rest to ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str, routes: list[Route]):
        self.upstream, self.routes = upstream.rstrip("/"), routes
        self.calls: list[str] = []
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, answer = front.answer(self.command, self.path, self.headers, body)
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, target: str, headers, body: bytes):
        path = urlsplit(target).path
        for verb, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if verb == method and match:
                self.calls.append(f"{method} {path}")
                try:
                    handled = handler(Request(method, target, headers, body, match))
                except Broken as broken:
                    return broken.status, _json_headers(), _error(broken.status, broken.message)
                if handled is not None:
                    status, answer = handled
                    return status, _json_headers(), json.dumps(answer).encode()
        return self.forward(method, target, headers, body)

    def forward(self, method: str, target: str, headers, body: bytes):
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        answer = requests.request(
            method, self.upstream + target, headers=sent, data=body, timeout=300
        )
        return answer.status_code, dict(answer.headers), answer.content

    def upstream_json(self, method: str, target: str, body: dict | None = None):
        """A call to the emulator itself: (status, JSON answer or None)."""
        answer = requests.request(method, self.upstream + target, json=body, timeout=60)
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json; charset=UTF-8"}


def _error(status: int, message: str) -> bytes:
    """A Google API error body (``{"error": {"code", "message", "status"}}``)."""
    return json.dumps({"error": {"code": status, "message": message}}).encode()


def error(status: int, message: str) -> tuple[int, dict]:
    """An error answer for a route handler."""
    return status, {"error": {"code": status, "message": message}}
