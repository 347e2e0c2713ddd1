"""Pub/Sub as Google Cloud runs it, on top of Google's own emulator: a gRPC front on loopback that
passes every call through to the emulator (so publishing, pulling, acknowledging and pushing are
the emulator's real work) and adds what the emulator lacks:

- the subscription rules of the API reference the emulator does not enforce: the default
  expiration policy, its minimum ``ttl``, and the deletion of a subscription idle for its ``ttl``
  (``clock`` is injectable: a test moves time on by days);
- IAM policies on topics and subscriptions (``clickstream.fakes.iam``; the emulator serves none);
- with a ``project`` (``clickstream.fakes.project``), the API must be enabled first, and pushes
  to a Cloud Run function of the project go through a relay on loopback: the emulator pushes
  to the relay, which delivers to where the function serves locally if the subscription's
  token identity may invoke it (``pubsub.push-invoker``), as Cloud Run decides.

Activity, as the reference defines it, is a subscriber consuming or issuing operations on the
subscription: every call through this front that names the subscription. Pushes are made by the
emulator, out of sight: a subscription with a push endpoint counts as active.
"""

import datetime
import http.server
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent import futures

import grpc
import requests
from google.cloud import pubsub_v1
from google.pubsub_v1 import types

from clickstream.fakes import iam, project, rules
from clickstream.fakes.rules import Broken, Rule

SERVICE = "pubsub.googleapis.com"
DAY = 86400.0
DEFAULT_TTL = 31 * DAY
_REFERENCE = "pubsub.v1 API reference"
RULES = {
    "expiration-default": Rule(
        "pubsub.expiration-default",
        "Pub/Sub",
        "a subscription created without an expiration policy gets one with a ttl of 31 days; "
        "a policy without ttl never expires",
        f"{_REFERENCE}, Subscription.expirationPolicy",
    ),
    "expiration-minimum": Rule(
        "pubsub.expiration-minimum",
        "Pub/Sub",
        "an expiration policy's ttl is at least 1 day",
        f"{_REFERENCE}, Subscription.expirationPolicy",
    ),
    "expiration": Rule(
        "pubsub.expiration",
        "Pub/Sub",
        "a subscription with no activity (no subscriber consuming from it or issuing operations "
        "on it) for its ttl is deleted",
        f"{_REFERENCE}, Subscription.expirationPolicy and ExpirationPolicy.ttl",
    ),
}
_SUBSCRIBER = "/google.pubsub.v1.Subscriber/"
STREAMING_PULL = f"{_SUBSCRIBER}StreamingPull"
# Subscriber calls that name one subscription: their request type.
_NAMING = {
    f"{_SUBSCRIBER}{method}": getattr(types, f"{method}Request")
    for method in (
        "GetSubscription",
        "DeleteSubscription",
        "ModifyAckDeadline",
        "Acknowledge",
        "Pull",
        "ModifyPushConfig",
        "Seek",
    )
}


def _ttl_seconds(subscription: types.Subscription) -> float | None:
    """The subscription's ttl in seconds; None when it never expires."""
    if "expiration_policy" not in subscription or "ttl" not in subscription.expiration_policy:
        return None
    # proto-plus gives a Duration field as a timedelta; the generated types say Duration.
    return subscription.expiration_policy.ttl.total_seconds()  # type: ignore[attr-defined]


class FakePubSub:
    """Pub/Sub on ``emulator`` (host:port), served at ``address``. ``clock`` gives the time in
    seconds (default: the wall clock); ``expired`` lists the subscriptions it deleted."""

    def __init__(
        self,
        emulator: str,
        clock: Callable[[], float] = time.time,
        project: project.FakeProject | None = None,
    ):
        self.clock, self.project = clock, project
        self.calls: list[str] = []
        self.expired: list[str] = []
        self._ttl: dict[str, float | None] = {}  # subscription -> ttl (None: never expires)
        self._active: dict[str, float] = {}  # subscription -> last activity
        self._pushing: set[str] = set()
        self._lock = threading.Lock()
        self._upstream = grpc.insecure_channel(emulator)
        self.iam = iam.FakePolicies(self._exists, project)
        handlers = {m.split("/")[-1]: h for m, h in self.iam.methods().items()}
        self._iam = {
            f"/google.iam.v1.IAMPolicy/{method}": grpc.unary_unary_rpc_method_handler(
                self._guarded(handler),
                request_deserializer=_codec(request)[0],
                response_serializer=_codec(response)[1],
            )
            for method, (handler, request, response) in handlers.items()
        }
        self._push: dict[str, tuple[str, str]] = {}  # subscription -> (endpoint, token identity)
        self.refused_pushes: list[str] = []
        self.pushed: dict[str, int] = {}  # subscription -> pushes the endpoint accepted (2xx)
        self._relay = _Relay(self) if project else None
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self._server.add_generic_rpc_handlers((_Front(self),))
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)
        self._upstream.close()
        if self._relay:
            self._relay.server.shutdown()

    # Pushes to the project's Cloud Run functions, through the relay

    def _inward(self, name: str, push_config) -> None:
        """Remember the push endpoint and point the emulator at the relay instead."""
        if self._relay is None or not push_config.push_endpoint:
            self._push.pop(name, None)
            return
        identity = push_config.oidc_token.service_account_email
        self._push[name] = (push_config.push_endpoint, identity)
        push_config.push_endpoint = f"{self._relay.url}/push/{urllib.parse.quote(name, safe='')}"

    def _outward(self, raw: bytes) -> bytes:
        """A subscription as the emulator gives it, with its declared push endpoint."""
        subscription = types.Subscription.deserialize(raw)
        if subscription.name in self._push:
            subscription.push_config.push_endpoint = self._push[subscription.name][0]
        return types.Subscription.serialize(subscription)

    def service_of(self, endpoint: str) -> str | None:
        """The Cloud Run service of a function URL (``https://REGION-PROJECT.cloudfunctions.net/
        NAME``) of the project."""
        project = self.project.project_id if self.project else ""
        host, _, function = endpoint.removeprefix("https://").partition("/")
        suffix = f"-{project}.cloudfunctions.net"
        if not host.endswith(suffix):
            return None
        region = host.removesuffix(suffix)
        return f"projects/{project}/locations/{region}/services/{function.strip('/')}"

    def push(self, name: str, body: bytes, headers: dict) -> int:
        """Deliver one push of subscription ``name``: the status Cloud Run would answer."""
        endpoint, identity = self._push.get(name, ("", ""))
        service = self.service_of(endpoint)
        target = self.project.run_services.get(service) if self.project and service else None
        if self.project is None or service is None or target is None:
            return 404  # nothing serves there (yet): Pub/Sub redelivers
        if identity and not self.project.allows(
            f"serviceAccount:{identity}", "run.routes.invoke", service
        ):
            self.refused_pushes.append(f"{name}: {identity} lacks run.routes.invoke on {service}")
            return 403
        sent = {k: v for k, v in headers.items() if k.lower() in ("content-type",)}
        status = requests.post(target, data=body, headers=sent, timeout=60).status_code
        if 200 <= status < 300:
            with self._lock:
                self.pushed[name] = self.pushed.get(name, 0) + 1
        return status

    # What the emulator holds

    def _exists(self, name: str) -> bool:
        """Whether the emulator has the topic or subscription (IAM policies need one)."""
        if self.project:
            self.project.require(SERVICE)
        stub = f"/google.pubsub.v1.{'Publisher' if '/topics/' in name else 'Subscriber'}/"
        method, request = (
            (f"{stub}GetTopic", types.GetTopicRequest(topic=name))
            if "/topics/" in name
            else (f"{stub}GetSubscription", types.GetSubscriptionRequest(subscription=name))
        )
        try:
            self._upstream.unary_unary(method)(type(request).serialize(request))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    # The rules

    def _guarded(self, handler):
        def serve(request, context):
            try:
                self._before()
                return handler(request)
            except rules.Fault as fault:
                context.abort(fault.code, fault.message)

        return serve

    def _before(self) -> None:
        if self.project:
            self.project.require(SERVICE)
        self.sweep()

    def sweep(self) -> None:
        """Delete every subscription idle for longer than its ttl (``pubsub.expiration``)."""
        now = self.clock()
        with self._lock:
            idle = [
                name
                for name, ttl in self._ttl.items()
                if ttl is not None
                and name not in self._pushing
                and now - self._active.get(name, now) > ttl
            ]
            for name in idle:
                del self._ttl[name]
                self._active.pop(name, None)
        for name in idle:
            request = types.DeleteSubscriptionRequest(subscription=name)
            try:
                self._upstream.unary_unary(f"{_SUBSCRIBER}DeleteSubscription")(
                    types.DeleteSubscriptionRequest.serialize(request)
                )
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            self.expired.append(name)

    def _touch(self, name: str) -> None:
        with self._lock:
            if name in self._ttl:
                self._active[name] = self.clock()

    def _track(self, subscription: types.Subscription) -> None:
        with self._lock:
            self._ttl[subscription.name] = _ttl_seconds(subscription)
            self._active[subscription.name] = self.clock()
            if subscription.push_config.push_endpoint:
                self._pushing.add(subscription.name)
            else:
                self._pushing.discard(subscription.name)

    @staticmethod
    def _check_ttl(subscription: types.Subscription) -> None:
        ttl = _ttl_seconds(subscription)
        if ttl is not None and ttl < DAY:
            raise Broken(
                RULES["expiration-minimum"],
                f"expiration_policy.ttl of {subscription.name} is {ttl:.0f}s;",
            )

    def create_subscription(self, raw: bytes) -> bytes:
        subscription = types.Subscription.deserialize(raw)
        if "expiration_policy" not in subscription:  # pubsub.expiration-default
            subscription.expiration_policy = {"ttl": datetime.timedelta(seconds=DEFAULT_TTL)}
        self._check_ttl(subscription)
        self._inward(subscription.name, subscription.push_config)
        answer = self._forward("CreateSubscription", types.Subscription.serialize(subscription))
        self._track(types.Subscription.deserialize(answer))
        return self._outward(answer)

    def update_subscription(self, raw: bytes) -> bytes:
        request = types.UpdateSubscriptionRequest.deserialize(raw)
        if "expiration_policy" in request.update_mask.paths:
            self._check_ttl(request.subscription)
        if "push_config" in request.update_mask.paths:
            self._inward(request.subscription.name, request.subscription.push_config)
            raw = types.UpdateSubscriptionRequest.serialize(request)
        answer = self._forward("UpdateSubscription", raw)
        self._track(types.Subscription.deserialize(answer))
        return self._outward(answer)

    def modify_push_config(self, raw: bytes) -> bytes:
        request = types.ModifyPushConfigRequest.deserialize(raw)
        self._inward(request.subscription, request.push_config)
        raw = types.ModifyPushConfigRequest.serialize(request)
        answer = self._forward("ModifyPushConfig", raw)
        with self._lock:
            if request.push_config.push_endpoint:
                self._pushing.add(request.subscription)
            else:
                self._pushing.discard(request.subscription)
        return answer

    def _forward(self, method: str, raw: bytes, metadata=None) -> bytes:
        return self._call(f"{_SUBSCRIBER}{method}")(raw, metadata=metadata)

    def _call(self, method: str) -> "grpc.UnaryUnaryMultiCallable[bytes, bytes]":
        """The emulator's ``method``, bytes in and out (the class is generic in grpc's stubs
        alone, hence the quotes)."""
        return self._upstream.unary_unary(method)

    def handle(self, method: str, raw: bytes, context: grpc.ServicerContext) -> bytes:
        """A unary call: the rules, then the emulator's answer (its errors passed on)."""
        self.calls.append(method.rsplit("/", 1)[-1])
        try:
            self._before()
            if method in _NAMING:
                self._touch(_NAMING[method].deserialize(raw).subscription)
            own = {
                f"{_SUBSCRIBER}CreateSubscription": self.create_subscription,
                f"{_SUBSCRIBER}UpdateSubscription": self.update_subscription,
                f"{_SUBSCRIBER}ModifyPushConfig": self.modify_push_config,
            }.get(method)
            if own:
                return own(raw)
            answer = self._call(method)(raw, metadata=_metadata(context))
            if method.endswith("/GetSubscription"):
                return self._outward(answer)
            if method.endswith("/DeleteSubscription"):
                name = types.DeleteSubscriptionRequest.deserialize(raw).subscription
                with self._lock:
                    self._ttl.pop(name, None)
            return answer
        except rules.Fault as fault:
            context.abort(fault.code, fault.message)
        except grpc.RpcError as error:
            context.abort(error.code(), error.details() or "")

    def streaming_pull(self, requests, context):
        """StreamingPull, passed through; each request is activity on its subscription."""
        self.calls.append("StreamingPull")
        try:
            self._before()
        except rules.Fault as fault:
            context.abort(fault.code, fault.message)

        def upstream():
            for raw in requests:
                name = types.StreamingPullRequest.deserialize(raw).subscription
                if name:
                    self._touch(name)
                yield raw

        try:
            yield from self._upstream.stream_stream(STREAMING_PULL)(
                upstream(), metadata=_metadata(context)
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                context.abort(error.code(), error.details())

    # For tests

    def clients(self) -> tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]:
        """A publisher and a subscriber on this front (no credentials, as on the emulator)."""
        channel = grpc.insecure_channel(self.address)
        publisher = pubsub_v1.PublisherClient(
            transport=pubsub_v1.PublisherClient.get_transport_class("grpc")(channel=channel)
        )
        subscriber = pubsub_v1.SubscriberClient(
            transport=pubsub_v1.SubscriberClient.get_transport_class("grpc")(channel=channel)
        )
        return publisher, subscriber


def _metadata(context) -> tuple:
    return tuple((k, v) for k, v in context.invocation_metadata() if not k.startswith(":"))


def _codec(message_type):
    if hasattr(message_type, "pb"):
        return message_type.deserialize, message_type.serialize
    return message_type.FromString, message_type.SerializeToString


class _Front(grpc.GenericRpcHandler):
    """Every method: IAM served here, StreamingPull streamed, the rest unary, passed through."""

    def __init__(self, fake: FakePubSub):
        self.fake = fake

    def service(self, details):
        method = details.method
        if method in self.fake._iam:
            return self.fake._iam[method]
        if method == STREAMING_PULL:
            return grpc.stream_stream_rpc_method_handler(self.fake.streaming_pull)
        return grpc.unary_unary_rpc_method_handler(
            lambda raw, context: self.fake.handle(method, raw, context)
        )


class _Relay:
    """Where the emulator pushes: ``/push/<subscription>``, delivered by ``FakePubSub.push``."""

    def __init__(self, fake: FakePubSub):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                name = urllib.parse.unquote(self.path.removeprefix("/push/"))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    status = fake.push(name, body, dict(self.headers))
                except requests.RequestException:
                    status = 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
