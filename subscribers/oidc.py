"""Verification of the OIDC token Pub/Sub attaches to authenticated push deliveries.

A push subscription with ``--push-auth-service-account`` sends ``Authorization: Bearer <JWT>``
signed by Google, with the subscription's audience and the service account's email. The token is
checked with google-auth's ``id_token.verify_token`` (signature against the certificates at
``certs_url``, expiry, audience), then the issuer and the email.
"""

import threading
import time
from collections.abc import Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
from google.oauth2 import id_token

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CERTS_CACHE_SECONDS = 300.0  # Google rotates its signing keys about daily, with overlap


class Unauthenticated(Exception):
    """No token, or one that does not verify (signature, expiry, audience, issuer): 401."""


class Forbidden(Exception):
    """A valid token of another identity than the configured service account: 403."""


class CertificatesUnavailable(Exception):
    """The signing certificates could not be fetched: transient, 503."""


class _CachedGet(google.auth.transport.Request):
    """A transport that keeps successful GET responses (the certificates) for ``seconds``, so a
    push costs no extra round trip."""

    def __init__(self, seconds: float):
        self._request = google.auth.transport.requests.Request()
        self._seconds = seconds
        self._cache: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if method != "GET":
            return self._request(url, method, body, headers, timeout, **kwargs)
        with self._lock:
            until, response = self._cache.get(url, (0.0, None))
        if time.monotonic() < until:
            return response
        response = self._request(url, "GET", headers=headers, timeout=timeout or 10, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (time.monotonic() + self._seconds, response)
        return response


class TokenVerifier:
    """Accepts a request whose bearer token is a Google-signed ID token for ``audience``, issued
    to ``service_account`` (the push subscription's ``--push-auth-service-account``)."""

    def __init__(self, audience: str, service_account: str, certs_url: str = GOOGLE_CERTS_URL):
        if not audience or not service_account:
            raise ValueError("push verification needs both an audience and a service account")
        self.audience, self.service_account, self.certs_url = audience, service_account, certs_url
        self._transport = _CachedGet(CERTS_CACHE_SECONDS)

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """The token's claims. Raises Unauthenticated, Forbidden or CertificatesUnavailable."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing bearer token")
        try:
            claims = id_token.verify_token(
                token.strip(), self._transport, audience=self.audience, certs_url=self.certs_url
            )
        except google.auth.exceptions.TransportError as error:
            raise CertificatesUnavailable(str(error)) from None
        except ValueError as error:  # google-auth's verdict: signature, expiry, audience
            raise Unauthenticated(str(error)) from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthenticated(f"issuer {claims.get('iss')!r} is not Google")
        if claims.get("email") != self.service_account or not claims.get("email_verified"):
            raise Forbidden(f"token of {claims.get('email')!r}, not the push service account")
        return claims
