"""The OpenAPI 3.0 document, built from the same route table the server routes with, so the
document and the server cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import __version__

Schema = dict[str, Any]


def obj(required: tuple[str, ...] = (), **props: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


STR: Schema = {"type": "string"}
NUM: Schema = {"type": "number"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
ANY: Schema = {"type": "object", "additionalProperties": True}
ERROR = obj(("error",), error=STR)
MESSAGE = obj(("message",), message=STR)


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


SESSION = obj(("name", "protocol"), name=STR, protocol={"type": "string",
              "enum": ["native", "gamestream"]}, client=STR, mode=STR, plan=STR,
              stages=ANY, counters=ANY, gauges=ANY)  # fmt: skip
CLIENT = obj(("protocol", "fingerprint", "name"), protocol=STR, fingerprint=STR, name=STR,
             paired_at={"type": "number", "nullable": True})  # fmt: skip
PREP = obj(("do",), do=STR, undo=STR)
APP = obj(("title",), title=STR, command=STR, working_dir=STR, prep=array(PREP),
          detached=array(STR), hdr=BOOL, builtin=BOOL,
          source={"type": "string", "enum": ["builtin", "setting", "file"]})  # fmt: skip
SETTING = obj(("name", "value", "source", "allowed", "help"), name=STR, value=STR, source=STR,
              default=STR, allowed=STR, help=STR, env=STR, type=STR, saved=STR)  # fmt: skip


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str  # the name of the API method that answers it
    summary: str
    scope: str = "read"  # read | admin | none (login only)
    body: Schema | None = None
    answer: Schema = field(default_factory=lambda: MESSAGE)
    content_type: str = "application/json"
    params: tuple[tuple[str, str, Schema], ...] = ()  # (name, in, schema)


def document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.handler,
            "summary": r.summary,
            "responses": {
                "200": {"description": "ok", "content": {r.content_type: {"schema": r.answer}}},
                "400": _error("bad input"),
            },
        }
        if r.scope != "none":
            op["responses"]["401"] = _error("no valid session cookie or bearer token")
            op["responses"]["403"] = _error("wrong scope, CSRF token or source address")
        else:
            op["security"] = []
            op["responses"]["401"] = _error("wrong password")
            op["responses"]["429"] = _error("too many failed logins")
        if "{" in r.path:
            op["responses"]["404"] = _error("no such object")
        if r.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": r.body}}}  # fmt: skip
        params = [{"name": n, "in": where, "required": where == "path", "schema": s}
                  for n, where, s in r.params]  # fmt: skip
        if params:
            op["parameters"] = params
        if r.scope == "admin":
            op["description"] = "Needs an admin session or an admin-scope token."
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "punktfunk host management API",
            "version": __version__,
            "description": "Sessions, clients, pairing, apps, settings, logs and live events of "
            "a running punktfunk host. Browsers log in (session cookie; state-changing requests "
            "carry the X-CSRF-Token header); scripts send `Authorization: Bearer <token>` "
            "(`punktfunk token create --scope read|admin`).",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "cookie": {"type": "apiKey", "in": "cookie", "name": "pf_session"},
                "bearer": {"type": "http", "scheme": "bearer"},
            }
        },
        "security": [{"cookie": []}, {"bearer": []}],
        "paths": paths,
    }


def _error(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": ERROR}}}
