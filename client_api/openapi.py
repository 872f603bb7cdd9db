"""OpenAPI 3 description of Tricolor's own endpoints (``/_tricolor/...``) and the
Synapse-compatible admin API, served at ``/_tricolor/docs`` (a browsable page) and
``/_tricolor/docs/openapi.json``.

Generated, never written by hand: each route's handler is looked up in its module's
route table; the request schemas it reads are the schema classes (``...Body``,
``...Query``) its code refers to, and ``msgspec.json.schema_components`` turns those
same classes into JSON Schema. A handler that changes its schema changes the
documentation with it. The Matrix-standard endpoints are linked to the spec instead.
"""

from __future__ import annotations

import html
import inspect
import json
import keyword
from functools import cache
from types import ModuleType
from typing import Any

import attrs
import msgspec
from aiohttp import web

from homeserver.http.responses import ok

routes = web.RouteTableDef()

SPEC_URL = "https://spec.matrix.org/v1.19/"
_REF = "#/components/schemas/{name}"


def _schemas_used(handler: Any, module: ModuleType) -> tuple[type | None, type | None]:
    """(body schema, query schema) the handler refers to by name."""
    body = query = None
    for name in handler.__code__.co_names:
        value = getattr(module, name, None)
        if not (inspect.isclass(value) and attrs.has(value)):
            continue
        if name.endswith("Query"):
            query = value
        elif name.endswith("Body"):
            body = value
    return body, query


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        shown = name[:-1] if name.endswith("_") and keyword.iskeyword(name[:-1]) else name
        out.append({"name": shown, "in": "query", "required": name in required, "schema": prop})
    return out


def _path_parameters(path: str) -> list[dict[str, Any]]:
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1].split(":", 1)[0]
            out.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    return out


def _clean(path: str) -> str:
    """``/{v:v2|v3}/users`` -> ``/{v}/users``; regex parts of parameters go."""
    return "/".join(
        "{" + part[1:-1].split(":", 1)[0] + "}" if part.startswith("{") and part.endswith("}") else part
        for part in path.split("/")
    )


@cache
def document() -> dict[str, Any]:
    from client_api import admin, tricolor

    sources: list[tuple[str, ModuleType, str]] = [
        (tricolor.PREFIX, tricolor, "Tricolor"),
        (admin.PREFIX, admin, "Admin (Synapse-compatible)"),
    ]
    operations: list[tuple[str, str, dict[str, Any], type | None, type | None]] = []
    types: list[type] = []
    for prefix, module, tag in sources:
        for route in module.routes:
            if not isinstance(route, web.RouteDef):
                continue
            body, query = _schemas_used(route.handler, module)
            types += [t for t in (body, query) if t is not None and t not in types]
            doc = inspect.getdoc(route.handler) or route.handler.__name__.replace("_", " ")
            summary, _, description = doc.partition("\n")
            op: dict[str, Any] = {
                "tags": [tag], "summary": summary.strip(), "operationId": f"{module.__name__}.{route.handler.__name__}",
                "responses": {
                    "200": {"description": "Success"},
                    "400": {"description": "Bad input (a Matrix error: errcode, error)"},
                    "401": {"description": "No or unknown access token"},
                    "403": {"description": "Not allowed (admin endpoints: not a server admin)"},
                    "429": {"description": "Rate limited: M_LIMIT_EXCEEDED with retry_after_ms"},
                },
                "security": [{"accessToken": []}],
            }
            if description.strip():
                op["description"] = description.strip()
            operations.append((prefix + _clean(route.path), route.method.lower(), op, body, query))
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    by_type = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op, body, query in operations:
        params = _path_parameters(path)
        if query is not None:
            params += _query_parameters(components[query.__name__])
        if params:
            op["parameters"] = params
        if body is not None:
            doc = inspect.getdoc(body)
            op["requestBody"] = {
                "required": method in ("post", "put"),
                "content": {"application/json": {"schema": by_type[body]}},
                **({"description": doc} if doc else {}),
            }
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Tricolor extensions and admin API",
            "version": "1",
            "description": (
                "Tricolor's own endpoints and the Synapse-compatible admin API. The Matrix-standard "
                f"client-server and federation endpoints are described by the Matrix specification: {SPEC_URL}"
            ),
        },
        "externalDocs": {"description": "Matrix specification (client-server, federation)", "url": SPEC_URL},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"accessToken": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/docs/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return ok(document())


@routes.get("/docs")
async def docs_page(request: web.Request) -> web.Response:
    """A page to read in a browser, rendered from the same document (no scripts)."""
    return web.Response(text=_render(document()), content_type="text/html", charset="utf-8")


def _render(doc: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Tricolor API</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
        "code,pre{background:#f4f4f4}pre{padding:.5em;overflow:auto}"
        "h3{margin-bottom:.2em}.m{font-weight:bold;text-transform:uppercase}</style></head><body>",
        f"<h1>{e(doc['info']['title'])}</h1><p>{e(doc['info']['description'])}</p>",
        f"<p>Machine-readable: <a href='docs/openapi.json'>openapi.json</a>. Standard Matrix endpoints: "
        f"<a href='{e(SPEC_URL)}'>the Matrix specification</a>.</p>",
    ]
    for path, methods in sorted(doc["paths"].items()):
        for method, op in methods.items():
            parts.append(f"<h3><span class='m'>{e(method)}</span> <code>{e(path)}</code></h3>")
            parts.append(f"<p>{e(op['summary'])}</p>")
            if "description" in op:
                parts.append(f"<p>{e(op['description'])}</p>")
            for p in op.get("parameters", []):
                parts.append(f"<div>{e(p['in'])} <code>{e(p['name'])}</code>{' (required)' if p['required'] else ''}: "
                             f"<code>{e(json.dumps(p['schema']))}</code></div>")
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                schema = doc["components"]["schemas"][ref]
                parts.append(f"<div>Body <code>{e(ref)}</code>:</div><pre>{e(json.dumps(schema, indent=2))}</pre>")
    parts.append("</body></html>")
    return "".join(parts)
