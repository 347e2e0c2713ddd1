"""A BigQuery stand-in that answers at once: every ``tabledata.insertAll`` request gets an empty
success (``{"kind": "bigquery#tableDataInsertAllResponse"}``, no insert errors), so a benchmark
measures the writer's own cost, not a database's. It keeps nothing but the count of rows it was
sent (``GET /rows``). Run it in its own process, so that its CPU is not counted with the writer's.

Usage: python benchmarks/bigquery_stand_in.py PORT
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

INSERTED = b'{"kind": "bigquery#tableDataInsertAllResponse"}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as BigQuery's endpoint
    disable_nagle_algorithm = True  # headers and body leave at once
    rows = 0

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.split("?")[0].endswith("/insertAll"):
            self._answer(404, b'{"error": {"code": 404, "message": "only insertAll here"}}')
            return
        _Handler.rows += len(orjson.loads(body).get("rows", ()))
        self._answer(200, INSERTED)

    def do_GET(self) -> None:
        self._answer(200, orjson.dumps({"rows": _Handler.rows}))

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
