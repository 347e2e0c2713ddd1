"""Google Cloud client libraries made to talk to Google Cloud (Application Default Credentials),
or, where ``CLICKSTREAM_ENDPOINTS`` names a service, to a stand-in on loopback: a gRPC fake
(an insecure channel, no credentials) or an HTTP front of an emulator (its URL). The rehearsal
sets it for itself and for every process it starts, so the same code runs against the fakes.

``CLICKSTREAM_ENDPOINTS`` is JSON: service -> ``host:port`` (gRPC) or ``http://host:port``,
services being ``platform`` (Service Usage, Resource Manager, IAM, Artifact Registry, Cloud
Run), ``pubsub``, ``storage``, ``bigquery``, ``monitoring``, ``dataplex``, ``lineage``,
``dataflow``.
"""

import json
import os

import grpc
from google.auth.credentials import AnonymousCredentials

ENDPOINTS_ENV = "CLICKSTREAM_ENDPOINTS"


def endpoints() -> dict[str, str]:
    """The stand-ins named in the environment (none: Google Cloud)."""
    return json.loads(os.environ.get(ENDPOINTS_ENV) or "{}")


def endpoint(service: str) -> str | None:
    return endpoints().get(service)


_CHANNELS: dict[str, grpc.Channel] = {}


def gapic(cls, service: str):
    """A client of the GAPIC class ``cls`` for ``service``: on its stand-in when one is named."""
    address = endpoint(service)
    if address is None:
        return cls()
    channel = _CHANNELS.setdefault(address, grpc.insecure_channel(address))
    transport = cls.get_transport_class("grpc")(channel=channel, credentials=AnonymousCredentials())
    return cls(transport=transport)
