"""In-process fake Google services for the real client libraries: a gRPC server on loopback that
serves a fake's methods with the request and response types' own serializers (proto-plus or
protobuf), answers errors with their status codes (the clients raise NotFound, AlreadyExists,
Aborted... from them), and records every call."""

import itertools
from concurrent import futures

import grpc
from google.longrunning import operations_pb2
from google.protobuf import any_pb2


class Fault(Exception):
    """An error the fake answers with, e.g. ``Fault(grpc.StatusCode.NOT_FOUND, "no lake x")``."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _codec(message_type):
    """(deserialize, serialize) of a proto-plus or protobuf message type."""
    if hasattr(message_type, "pb"):  # proto-plus
        return message_type.deserialize, message_type.serialize
    return message_type.FromString, message_type.SerializeToString


class FakeServer:
    """Serves ``methods``: {"package.Service/Method": (handler, RequestType, ResponseType)}.
    A handler takes the request and returns the response or raises ``Fault``; ``gate``, when
    given, sees each call's path first and may refuse it (an API not enabled)."""

    def __init__(self, methods: dict, gate=None):
        self.gate = gate
        self.calls: list[str] = []  # "Service/Method" of every call, in order
        self.faults: dict[str, Fault] = {}  # "Service/Method" -> the error its next call gets
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        by_service: dict[str, dict] = {}
        for path, (handler, request_type, response_type) in methods.items():
            service, method = path.rsplit("/", 1)
            deserialize, _ = _codec(request_type)
            _, serialize = _codec(response_type)
            by_service.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                self._recorded(path, handler),
                request_deserializer=deserialize,
                response_serializer=serialize,
            )
        for service, handlers in by_service.items():
            self._server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, handlers),)
            )
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()
        self._channels: list[grpc.Channel] = []

    def channel(self) -> grpc.Channel:
        """A channel to the fake for a client's transport (closed by ``stop``)."""
        self._channels.append(grpc.insecure_channel(self.address))
        return self._channels[-1]

    def _recorded(self, path: str, handler):
        name = path.rsplit(".", 1)[-1]

        def serve(request, context):
            self.calls.append(name)
            try:
                if self.gate:
                    self.gate(path)
                if name in self.faults:
                    raise self.faults.pop(name)
                return handler(request)
            except Fault as fault:
                context.abort(fault.code, fault.message)

        return serve

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        self._server.stop(grace=None)


class Operations:
    """Long-running operations that are done when returned (``operation.result()`` returns at
    once), kept for ``GetOperation``."""

    def __init__(self, parent: str):
        self.parent, self._ids = parent, itertools.count(1)
        self._done: dict[str, operations_pb2.Operation] = {}

    def done(self, response=None) -> operations_pb2.Operation:
        """A finished operation whose result is ``response`` (a proto-plus message)."""
        operation = operations_pb2.Operation(
            name=f"{self.parent}/operations/operation-{next(self._ids)}", done=True
        )
        if response is not None:
            packed = any_pb2.Any()
            packed.Pack(type(response).pb(response) if hasattr(response, "_pb") else response)
            operation.response.CopyFrom(packed)
        self._done[operation.name] = operation
        return operation

    def get(self, request: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        if request.name not in self._done:
            raise Fault(grpc.StatusCode.NOT_FOUND, f"no operation {request.name}")
        return self._done[request.name]

    def methods(self) -> dict:
        return {
            "google.longrunning.Operations/GetOperation": (
                self.get,
                operations_pb2.GetOperationRequest,
                operations_pb2.Operation,
            )
        }
