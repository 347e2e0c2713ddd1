"""Request bodies checked against Google's REST discovery documents, the machine-readable API
references that ship offline inside ``google-api-python-client``
(``googleapiclient/discovery_cache/documents/<api>.<version>.json``): every field must exist in
its schema, with the documented JSON type, format and enum value, and none may be one the
reference marks output only (``readOnly``), which a request cannot set."""

import base64
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
INTEGER_FORMATS = {"int32", "uint32", "int64", "uint64"}


@functools.cache
def document(api: str) -> dict:
    """The discovery document of ``api`` (``pubsub.v1``, ``dataflow.v1b3``...)."""
    path = DOCUMENTS / f"{api}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no discovery document {path.name} in google-api-python-client")
    return json.loads(path.read_text())


def schema(api: str, name: str) -> dict:
    schemas = document(api)["schemas"]
    if name not in schemas:
        raise KeyError(f"{api} has no schema {name}")
    return schemas[name]


def problems(body: Any, api: str, name: str) -> list[str]:
    """What in ``body`` (a request body in JSON form, lowerCamelCase names) breaks schema
    ``name`` of ``api``: one sentence per field, with its dotted path; empty if nothing."""
    return _check(body, schema(api, name), api, name)


def _check(value: Any, spec: Mapping, api: str, path: str) -> list[str]:
    if "$ref" in spec:
        spec = schema(api, spec["$ref"])
    kind = spec.get("type")
    if kind == "any":
        return []
    if kind == "object":
        return _check_object(value, spec, api, path)
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: an array, not {_shown(value)}"]
        found = []
        for index, item in enumerate(value):
            found += _check(item, spec["items"], api, f"{path}.{index}")
        return found
    return _check_scalar(value, spec, path)


def _check_object(value: Any, spec: Mapping, api: str, path: str) -> list[str]:
    if not isinstance(value, Mapping):
        return [f"{path}: an object, not {_shown(value)}"]
    found = []
    properties = spec.get("properties", {})
    extra = spec.get("additionalProperties")
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in properties:
            field = properties[key]
            if field.get("readOnly"):
                found.append(f"{where}: output only; a request cannot set it")
                continue
            found += _check(item, field, api, where)
        elif isinstance(extra, Mapping):
            found += _check(item, extra, api, where)
        else:
            found.append(f"{where}: no such field in {spec.get('id', path)}")
    return found


def _check_scalar(value: Any, spec: Mapping, path: str) -> list[str]:
    kind, form = spec.get("type"), spec.get("format")
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif form in INTEGER_FORMATS:  # 64-bit integers travel as strings (a number is read too)
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None
        )
    else:
        ok = isinstance(value, str) and _formatted(value, form)
    if not ok:
        wanted = f"{kind} ({form})" if form else kind
        return [f"{path}: a {wanted}, not {_shown(value)}"]
    if "enum" in spec and value not in spec["enum"]:
        return [f"{path}: {value!r} is not one of {', '.join(spec['enum'])}"]
    return []


def _formatted(value: str, form: str | None) -> bool:
    if form == "google-duration":
        return DURATION.fullmatch(value) is not None
    if form in ("google-datetime", "date-time"):
        return DATETIME.fullmatch(value) is not None
    if form == "byte":
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            try:
                base64.urlsafe_b64decode(value)
            except ValueError:
                return False
    return True


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
