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
from typing import Any, TypeVar, cast

import grpc
from google.auth.credentials import AnonymousCredentials

ENDPOINTS_ENV = "CLICKSTREAM_ENDPOINTS"


def endpoints() -> dict[str, str]:
    """The stand-ins named in the environment (none: Google Cloud)."""
    return cast(dict[str, str], json.loads(os.environ.get(ENDPOINTS_ENV) or "{}"))


def endpoint(service: str) -> str | None:
    return endpoints().get(service)


_CHANNELS: dict[str, grpc.Channel] = {}


Client = TypeVar("Client")


def gapic(cls: type[Client], service: str) -> Client:
    """A client of the GAPIC class ``cls`` for ``service``: on its stand-in when one is named."""
    address = endpoint(service)
    if address is None:
        return cls()
    channel = _CHANNELS.setdefault(address, grpc.insecure_channel(address))
    gapic_class: Any = cls  # get_transport_class is on each GAPIC class's own metaclass
    transport = gapic_class.get_transport_class("grpc")(
        channel=channel, credentials=AnonymousCredentials()
    )
    return cast(Client, gapic_class(transport=transport))
