"""Pub/Sub push subscriber: an HTTP function (Functions Framework) for Cloud Run functions.

Pub/Sub POSTs each message as a push envelope (``{"message": {"data": base64, "messageId": ...},
"subscription": ...}``). The visit is parsed by the visit model (source ``pubsub:<message id>``)
and appended by the one writer (``clickstream.gcp.warehouse``) with insert ids made of its keys:
no query per message; a redelivered or republished visit is never seen twice through the
``<table>_unique`` views.
The status code tells Pub/Sub what to do (2xx acks, anything else is redelivered with backoff,
then moved to the dead-letter topic):

- 200: written; also for a message that is not a visit, which is recorded in
  ``dead_letter`` with its payload and reason (retrying cannot fix it);
- 400: not a push envelope (not JSON, no message or message id, data not base64): not Pub/Sub;
- 401 / 403: verification on and the token missing or invalid / of another identity;
- 405: not a POST; 413: body over ``PUSH_MAX_REQUEST_BYTES``;
- 503: BigQuery (or the token certificates) unavailable for now: Pub/Sub retries;
- 500: anything unexpected (logged here; clients get no details).

Configuration (environment): ``BIGQUERY_DATASET`` (default ``clickstream``), ``BIGQUERY_PROJECT``
(default: the client's), ``BIGQUERY_WRITE_DEADLINE`` (seconds, default 30: below the
subscription's 60 s ack deadline), ``PUSH_MAX_REQUEST_BYTES`` (default 10 MiB), and for token
verification ``PUSH_AUDIENCE`` with ``PUSH_SERVICE_ACCOUNT`` (both, or neither: verification off)
and optionally ``PUSH_CERTS_URL`` (Google's by default).

Locally: ``functions-framework --target receive --source subscribers/push.py`` in the project's
environment (``clickstream subscribe push`` does that and creates the subscription).
"""

import base64
import binascii
import functools
import logging
import os

import flask
import functions_framework
import orjson

from clickstream.core import names, visit
from clickstream.gcp import warehouse
from clickstream.subscribers import oidc

MEBIBYTE = 1024 * 1024
_LOG = logging.getLogger("clickstream.subscribers.push")
if not _LOG.handlers:  # the Functions Framework leaves logging unconfigured
    _LOG.addHandler(logging.StreamHandler())
    _LOG.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _LOG.setLevel(logging.INFO)
    _LOG.propagate = False  # one line per delivery, also where the root logger has a handler


class EnvelopeError(ValueError):
    """The body is not a Pub/Sub push envelope."""


def _verifier() -> oidc.TokenVerifier | None:
    audience, account = os.environ.get("PUSH_AUDIENCE"), os.environ.get("PUSH_SERVICE_ACCOUNT")
    if not audience and not account:
        return None
    certs_url = os.environ.get("PUSH_CERTS_URL", oidc.GOOGLE_CERTS_URL)
    return oidc.TokenVerifier(audience or "", account or "", certs_url)  # raises if half set


VERIFIER = _verifier()  # at import: a half-configured verification fails the deployment
MAX_REQUEST_BYTES = int(os.environ.get("PUSH_MAX_REQUEST_BYTES", 10 * MEBIBYTE))


@functools.cache
def _warehouse() -> warehouse.Warehouse:
    return warehouse.Warehouse(
        os.environ.get("BIGQUERY_DATASET", names.DATASET),
        os.environ.get("BIGQUERY_PROJECT") or None,
        deadline=float(os.environ.get("BIGQUERY_WRITE_DEADLINE", 30)),
    )


def read_envelope(body: bytes) -> tuple[str, bytes]:
    """(message id, data) of a push envelope. Data absent means an empty message (Pub/Sub allows
    attributes only), which the visit model then rejects as an empty record."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise EnvelopeError("body is not JSON") from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise EnvelopeError("no message object")
    message_id = message.get("messageId") or message.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise EnvelopeError("no message id")
    data = message.get("data", "")
    if not isinstance(data, str):
        raise EnvelopeError("message data is not a string")
    try:
        return message_id, base64.b64decode(data, validate=True)
    except binascii.Error:
        raise EnvelopeError("message data is not base64") from None


def _answer(status: int, **body) -> flask.Response:
    return flask.Response(orjson.dumps(body), status, mimetype="application/json")


def _read_body(request: flask.Request) -> bytes | None:
    """The body, or None when it is larger than ``MAX_REQUEST_BYTES`` (read no further)."""
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return None
    body = request.stream.read(MAX_REQUEST_BYTES + 1)
    return None if len(body) > MAX_REQUEST_BYTES else body


def handle(request: flask.Request) -> flask.Response:
    """One push delivery (see the module docstring for the answers)."""
    if request.method != "POST":
        return _answer(405, error="POST a Pub/Sub push envelope")
    if VERIFIER is not None:
        try:
            VERIFIER.verify(request.headers.get("Authorization"))
        except oidc.Unauthenticated as error:
            _LOG.warning("refused push: %s", error)
            return _answer(401, error="unauthenticated")
        except oidc.Forbidden as error:
            _LOG.warning("refused push: %s", error)
            return _answer(403, error="forbidden")
        except oidc.CertificatesUnavailable as error:
            _LOG.warning("cannot verify push token now: %s", error)
            return _answer(503, error="cannot verify the token now; retry")
    body = _read_body(request)
    if body is None:
        return _answer(413, error=f"body over {MAX_REQUEST_BYTES} bytes")
    try:
        message_id, data = read_envelope(body)
    except EnvelopeError as error:
        return _answer(400, error=str(error))
    record = visit.parse_visit(data, f"pubsub:{message_id}")
    try:
        result = _warehouse().write([record])
    except Exception as error:
        if not warehouse.is_transient(error):
            raise
        _LOG.warning("message %s: BigQuery unavailable, Pub/Sub will retry: %r", message_id, error)
        return _answer(503, error="BigQuery unavailable; retry")
    dead = len(record.rows["dead_letter"])
    _LOG.info(
        "message %s: %s, %d rows written",
        message_id,
        "visit loaded" if record.visit_loaded else "not a visit (dead letter)",
        result.rows_written,
    )
    return _answer(
        200,
        message_id=message_id,
        visit_loaded=record.visit_loaded,
        dead_letters=dead,
        rows_written=result.rows_written,
    )


@functions_framework.http
def receive(request: flask.Request) -> flask.Response:
    """The function's entry point: ``handle``, with no internal detail ever sent back."""
    try:
        return handle(request)
    except Exception:
        _LOG.exception("push delivery failed")
        return _answer(500, error="internal error")
