"""A local stand-in for the GCE metadata server, part of the local stack.

Google's auth library (and so Beam's Cloud Storage filesystem, which looks for credentials with
retries for about 20 s before going anonymous) finds Application Default Credentials through the
metadata server when ``GCE_METADATA_HOST`` points here. It hands out a dummy token and the local
project: enough for unchanged clients to talk to the emulators, and useless anywhere else.

Run: ``python -m clickstream.local.metadata_server --port 8089 --project clickstream-local``.
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from clickstream.core import names

ACCOUNT = f"local@{names.LOCAL_PROJECT}.iam.gserviceaccount.com"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def answers(
    project: str, email: str = ACCOUNT, access_token: str = "local-stack-token"
) -> dict[str, object]:
    """Metadata paths (without the query) and what they return: ``email``'s identity and
    ``access_token`` (a fake project's stand-in hands out tokens that name the account)."""
    accounts = "/computeMetadata/v1/instance/service-accounts/"
    token = {"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"}
    account = {"email": email, "scopes": SCOPES, "aliases": ["default"]}
    return {
        "/": "",
        "/computeMetadata/v1/project/project-id": project,
        "/computeMetadata/v1/project/numeric-project-id": "0",
        "/computeMetadata/v1/universe/universe-domain": "googleapis.com",
        f"{accounts}default/": account,
        f"{accounts}{email}/": account,
        f"{accounts}default/email": email,
        f"{accounts}default/token": token,
        f"{accounts}{email}/token": token,
    }


def handler(project: str, **identity: str) -> type[BaseHTTPRequestHandler]:
    """The request handler; ``identity``: ``email`` and ``access_token`` of ``answers``."""
    table = answers(project, **identity)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = urlsplit(self.path).path
            if path not in table:
                self.send_error(404)
                return
            value = table[path]
            body = (value if isinstance(value, str) else json.dumps(value)).encode()
            self.send_response(200)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header(
                "Content-Type", "application/json" if body[:1] == b"{" else "text/plain"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--project", default=names.LOCAL_PROJECT)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), handler(args.project)).serve_forever()


if __name__ == "__main__":
    main()
