"""The push subscriber: deliveries from the Pub/Sub emulator's push subscription to the handler
running as on Cloud Run (Functions Framework), replays, envelopes, transient failures, tokens."""

import contextlib
import datetime
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import functions_framework
import pytest
import requests
from conftest import ROOT
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt
from google.cloud import pubsub_v1
from subscriber_support import (
    MALFORMED,
    ONE_BAD_EVENT,
    answers,
    compacted_counts,
    duplicate_keys,
    envelope,
    expected_rows,
    lab_lines,
    start_push_handler,
    visible_counts,
    wait_until,
)

from clickstream.core.ports import free_ports
from clickstream.gcp import bigquery_tables, pubsub, views

AUDIENCE = "https://europe-west1-demo.cloudfunctions.net/clickstream-push"
ACCOUNT = "clickstream-push-invoker@demo.iam.gserviceaccount.com"


def _replay(subscription: str, since: datetime.datetime) -> None:
    """Seek the subscription back: Pub/Sub redelivers every message published since then."""
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.seek(request={"subscription": subscription, "time": since})
    subscriber.close()


def test_push_subscription_delivers_every_visit_once(stack, lab_data, tmp_path):
    dataset = "push_e2e"
    views.ensure_analyst_dataset(stack.project, dataset)
    url, handler = start_push_handler(tmp_path, "push", BIGQUERY_DATASET=dataset)
    log = tmp_path / "push.log"

    def deliveries() -> int:
        return log.read_text().count(" INFO message ")

    with handler:
        wait_until(lambda: answers(url), 30, "the push handler to listen")
        subscription = pubsub.ensure_subscription(
            stack.project, "push-e2e", "push-e2e", "push", url
        )[0]
        visits = lab_lines(lab_data, "2024-07-01")[:30]
        # The same visits published twice (a publisher's retry) are new messages, one visit.
        payloads = [*visits, ONE_BAD_EVENT, *MALFORMED, *visits[:5]]
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        ids = pubsub.publish(stack.project, payloads, "push-e2e")
        messages = dict(zip(ids, payloads, strict=True))
        expected = expected_rows(messages)
        assert expected["visits"] == 31 and expected["dead_letter"] == len(MALFORMED) + 1
        wait_until(lambda: visible_counts(dataset) == expected, 60, f"{expected} in {dataset}")
        first = wait_until(lambda: deliveries() >= len(messages) and deliveries(), 10, "logs")

        _replay(subscription, since)  # every message again, with the same message ids
        wait_until(lambda: deliveries() >= first + len(messages), 60, "the redeliveries")
        assert visible_counts(dataset) == expected
        assert compacted_counts(dataset) == expected  # the copies the emulator kept, removed
        assert set(duplicate_keys(dataset).values()) == {0}

        # A message without data (Pub/Sub allows attributes only) is an empty record.
        answer = requests.post(url, data=b'{"message": {"messageId": "no-data"}}', timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["dead_letters"] == 1 and not answer.json()["visit_loaded"]

    bq = bigquery_tables.client()
    rows = bq.query(
        f"SELECT source, payload, reason FROM `{bq.project}.{dataset}.dead_letter_unique` "
        "WHERE level = 'visit'"
    ).result()
    dead = {row.source: (row.payload, row.reason) for row in rows}
    rejected = {f"pubsub:{i}": p for i, p in messages.items() if p in MALFORMED}
    assert dead.keys() == {*rejected, "pubsub:no-data"}
    assert dead["pubsub:no-data"][1] == "empty record"
    for source, payload in rejected.items():
        assert dead[source][0] == payload.decode("utf-8", errors="replace")
    reasons = {payload: dead[source][1] for source, payload in rejected.items()}
    assert reasons[b"{not json"].startswith("invalid JSON")
    assert reasons[b"[1, 2]"] == "not a visit: a JSON list, expected an object"
    assert reasons[b"\xff\xfe not utf-8"].startswith("not UTF-8")


@pytest.fixture(scope="module")
def app_client():
    """The handler's app, in process: for answers that need no BigQuery."""
    source = str(ROOT / "subscribers" / "push.py")
    return functions_framework.create_app(target="receive", source=source).test_client()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"nope", "body is not JSON"),
        (b"[]", "no message object"),
        (b'{"message": "x"}', "no message object"),
        (b'{"message": {"data": "eA=="}}', "no message id"),
        (b'{"message": {"data": 5, "messageId": "1"}}', "message data is not a string"),
        (b'{"message": {"data": "not base64!", "messageId": "1"}}', "message data is not base64"),
    ],
)
def test_push_refuses_what_is_not_a_push_envelope(app_client, body, error):
    answer = app_client.post("/", data=body)
    assert (answer.status_code, answer.json) == (400, {"error": error})


def test_push_refuses_other_methods_and_oversized_bodies(app_client):
    assert app_client.get("/").status_code == 405
    limit = 10 * 1024 * 1024
    answer = app_client.post("/", data=b" " * (limit + 1))
    assert (answer.status_code, answer.json) == (413, {"error": f"body over {limit} bytes"})


def test_push_asks_for_a_retry_while_bigquery_is_unreachable(stack, lab_data, tmp_path):
    closed = free_ports(1)[0]
    url, handler = start_push_handler(
        tmp_path,
        "unreachable",
        BIGQUERY_EMULATOR_HOST=f"http://127.0.0.1:{closed}",
        BIGQUERY_WRITE_DEADLINE="2",
    )
    with handler:
        wait_until(lambda: answers(url), 30, "the push handler to listen")
        # A chunked body (no Content-Length) is cut off at the limit too.
        chunks = (b" " * 65536 for _ in range(10 * 16 + 1))
        assert requests.post(url, data=chunks, timeout=30).status_code == 413
        # A visit, and a malformed message: its dead letter must be written before the ack.
        for number, payload in enumerate([lab_lines(lab_data, "2024-07-01")[0], b"{bad"]):
            answer = requests.post(url, data=envelope(payload, f"m{number}"), timeout=30)
            assert answer.status_code == 503
            assert answer.json() == {"error": "BigQuery unavailable; retry"}
    assert "BigQuery unavailable, Pub/Sub will retry" in (tmp_path / "unreachable.log").read_text()


class _Signer:
    """An RSA key with a self-signed certificate, standing in for Google's token signer."""

    def __init__(self, key_id: str = "test-key"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.certs = {key_id: certificate.public_bytes(serialization.Encoding.PEM).decode()}
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._signer = crypt.RSASigner.from_string(private, key_id=key_id)

    def token(self, **claims) -> str:
        """A push token (Google's claims) for ``AUDIENCE`` and ``ACCOUNT``, with changes."""
        now = int(time.time())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "email": ACCOUNT,
            "email_verified": True,
            "sub": "1234567890",
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        return jwt.encode(self._signer, payload).decode()


@contextlib.contextmanager
def _certificates_served(port: int, certs: dict):
    """Serve ``certs`` as Google's v1 certificates endpoint does, at /certs."""
    body = json.dumps(certs).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Certs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_push_verifies_the_pubsub_token(stack, lab_data, tmp_path):
    dataset = "push_auth"
    views.ensure_analyst_dataset(stack.project, dataset)
    signer, impostor = _Signer(), _Signer()  # the impostor signs with the same key id
    certs_port = free_ports(1)[0]
    url, handler = start_push_handler(
        tmp_path,
        "auth",
        BIGQUERY_DATASET=dataset,
        PUSH_AUDIENCE=AUDIENCE,
        PUSH_SERVICE_ACCOUNT=ACCOUNT,
        PUSH_CERTS_URL=f"http://127.0.0.1:{certs_port}/certs",
    )
    body = envelope(lab_lines(lab_data, "2024-07-01")[0], "auth-1")

    def post(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(url, data=body, headers=headers, timeout=30).status_code

    with handler:
        wait_until(lambda: answers(url), 30, "the push handler to listen")
        # The certificates cannot be fetched yet: a token cannot be judged, so retry later.
        assert post(signer.token()) == 503
        with _certificates_served(certs_port, signer.certs):
            refused = {
                "no token": post(None),
                "not a JWT": post("not-a-jwt"),
                "other audience": post(signer.token(aud="https://elsewhere.example")),
                "expired": post(signer.token(iat=int(time.time()) - 7200, exp=0)),
                "other issuer": post(signer.token(iss="https://issuer.example")),
                "other key": post(impostor.token()),
                "other account": post(signer.token(email="someone@demo.iam.gserviceaccount.com")),
                "email not verified": post(signer.token(email_verified=False)),
            }
            assert visible_counts(dataset)["visits"] == 0  # nothing refused was written
            assert post(signer.token()) == 200
    assert refused == {
        "no token": 401,
        "not a JWT": 401,
        "other audience": 401,
        "expired": 401,
        "other issuer": 401,
        "other key": 401,
        "other account": 403,
        "email not verified": 403,
    }
    assert visible_counts(dataset)["visits"] == 1
