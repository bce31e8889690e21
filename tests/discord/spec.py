"""Request bodies checked against Discord's own machine-readable API description.

Discord publishes its API as OpenAPI 3.1 (``discord/discord-api-spec``, ``specs/openapi.json``).
A copy lives beside every checkout at ``../shared/discord-spec/openapi.json`` (data, never
committed here); without it ``spec_validator()`` is None and only ``tests.discord.limits``
applies. Every JSON body the fake receives (``payload_json`` of a multipart upload included) is
recorded in ``RECORDED_BODIES`` and validated against the schema of its route; a body that does
not match is refused with 400 / 50035 like any other invalid form body.

One deliberate relaxation: the spec types snowflakes as strings, while Discord also accepts
integers ("snowflake or number", docs/reference.mdx "Snowflakes"; discord.py sends attachment
ids and allowed_mentions lists as integers).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import referencing
from jsonschema import Draft202012Validator
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "discord-spec" / "openapi.json"
_SPEC_URI = "urn:discord-api-spec"
_SNOWFLAKE_OR_NUMBER = {
    "anyOf": [
        {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
        {"type": "integer", "minimum": 0},
    ]
}


@dataclass(frozen=True)
class RecordedBody:
    """One JSON body a client sent: ``route`` is the spec's path template (None: not in the
    spec); ``probe`` when a test sent it by hand (with the ``PROBE_HEADER``) to see it refused,
    rather than a bot through discord.py."""

    method: str
    path: str
    route: str | None
    content_type: str
    payload: Any
    probe: bool


PROBE_HEADER = "X-Fake-Discord-Probe"
RECORDED_BODIES: list[RecordedBody] = []
"""Every body any fake received in this test session, oldest first."""


class SpecValidator:
    """Validates request bodies against the request schemas of the spec's operations."""

    def __init__(self, spec: dict[str, Any]) -> None:
        spec = copy.deepcopy(spec)
        spec["components"]["schemas"]["SnowflakeType"] = _SNOWFLAKE_OR_NUMBER
        resource = referencing.Resource.from_contents(spec, default_specification=DRAFT202012)
        self._registry = referencing.Registry().with_resource(_SPEC_URI, resource)
        self._spec = spec
        templates = sorted(spec["paths"], key=lambda t: (t.count("{"), -len(t)))
        self._routes = [(re.compile(_route_regex(t)), t) for t in templates]
        self._validators: dict[tuple[str, str, str], Draft202012Validator | None] = {}

    def route(self, path: str) -> str | None:
        """The spec's path template for ``path`` (relative to ``/api/v10``), if any."""
        return next((t for regex, t in self._routes if regex.fullmatch(path)), None)

    def errors(
        self, method: str, route: str, content_type: str, payload: Any
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """Where and why ``payload`` does not match its schema (empty when it does, or when the
        spec gives no schema for this route and content type)."""
        validator = self._validator(method.lower(), route, content_type)
        if validator is None:
            return []
        return [
            (tuple(error.absolute_path), error.message[:300])
            for error in validator.iter_errors(payload)
        ]

    def _validator(self, method: str, route: str, content_type: str) -> Draft202012Validator | None:
        key = (method, route, content_type)
        if key not in self._validators:
            body = self._spec["paths"][route].get(method, {}).get("requestBody")
            kinds = body["content"] if body else {}
            if content_type not in kinds:
                self._validators[key] = None
            else:
                pointer = "/".join(
                    _escape(part)
                    for part in ("paths", route, method, "requestBody", "content", content_type)
                )
                schema = {"$ref": f"{_SPEC_URI}#/{pointer}/schema"}
                # The spec's ``format``s are enforced (``uri``: rfc3986-validator, ``date-time``:
                # rfc3339-validator), as Discord parses them: "Not a well formed URL."
                self._validators[key] = Draft202012Validator(
                    schema,
                    registry=self._registry,
                    format_checker=Draft202012Validator.FORMAT_CHECKER,
                )
        return self._validators[key]


def _route_regex(template: str) -> str:
    return re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@functools.cache
def spec_validator() -> SpecValidator | None:
    """The validator for the spec beside this checkout, or None where there is no copy."""
    if not SPEC_PATH.is_file():
        return None
    return SpecValidator(json.loads(SPEC_PATH.read_text()))
