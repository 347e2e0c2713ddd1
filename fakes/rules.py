"""Google's documented rules as the fakes enforce them: each ``Rule`` says what the service does
(in our words) and where Google documents it; a fake that refuses a request, or behaves as the
service does (an idle subscription expiring), names the rule in its answer."""

import dataclasses

import grpc

from clickstream.fakes.server import Fault

HTTP_STATUS = {  # the HTTP status of a REST API's answer with the same meaning
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
}


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rule of ``service``: its gist, and ``source``, where Google documents it (a page, or an
    API reference field or method)."""

    key: str  # short and stable, e.g. "pubsub.expiration-default"
    service: str
    gist: str
    source: str

    def __str__(self) -> str:
        return f"[{self.key}] {self.gist} ({self.source})"


class Broken(Fault):
    """A request that breaks ``rule``, answered with gRPC ``code`` (REST: ``status``)."""

    def __init__(self, rule: Rule, detail: str, code=grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(code, f"{detail} {rule}")
        self.rule, self.detail = rule, detail

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def collect(*modules) -> list[Rule]:
    """The rules the given fake modules declare (their ``RULES``), in order, each once."""
    found: dict[str, Rule] = {}
    for module in modules:
        for rule in module.RULES.values():
            if found.setdefault(rule.key, rule) is not rule:
                raise ValueError(f"rule {rule.key} is declared twice")
    return list(found.values())
