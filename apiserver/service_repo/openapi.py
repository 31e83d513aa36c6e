"""Owns the OpenAPI 3.1 document generated from the same specs the dispatcher serves."""

from __future__ import annotations

import copy
import re
from typing import Any

from apiserver.schema.loader import EndpointSpec, SpecRegistry


def _component_name(spec: EndpointSpec, name: str) -> str:
    return f"{spec.service}__{name}"


def _relocate(schema: dict[str, Any], spec: EndpointSpec, components: dict[str, Any]) -> dict[str, Any]:
    """Move embedded ``definitions`` to components and rewrite their ``$ref``s (3.1 = JSON Schema)."""
    schema = copy.deepcopy(schema)
    for name, definition in (schema.pop("definitions", None) or {}).items():
        components.setdefault(_component_name(spec, name), definition)

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                node["$ref"] = "#/components/schemas/" + _component_name(spec, ref.rsplit("/", 1)[1])
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)
        return node

    for value in components.values():
        fix(value)
    return fix(schema)


_META_REQUIRED = ("id", "trx", "endpoint", "result_code", "result_subcode", "result_msg", "error_data")


def _error_response(spec: EndpointSpec) -> dict[str, Any]:
    """Every error in the shape the dispatcher gives it: an envelope (RPC), a REST body, or text."""
    if spec.http is None:
        shape = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
        return {"description": "Error: ClearML envelope, `meta.result_code` is the HTTP status", "content": shape}
    if spec.http.style == "text":
        return {"description": "Error: its message as text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    shape = {"application/json": {"schema": {"$ref": "#/components/schemas/RestError"}}}
    return {"description": "Error: {message, message_code, code, subcode, request_id, field?}", "content": shape}


def build_openapi(specs: SpecRegistry, server_version: str, api_version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for name in specs.names():
        spec = specs.versions(name)[-1]
        if spec.internal:  # the dispatcher does not serve it: a caller may not call it
            continue
        request = _relocate(spec.request_schema, spec, components)
        response = _relocate(spec.response_schema, spec, components)
        security = [{"bearerAuth": []}, {"basicAuth": []}] if spec.authorize else []
        if spec.auth_optional:
            security.append({})
        versions = ", ".join(s.version_str for s in specs.versions(name))
        op: dict[str, Any] = {
            "operationId": name, "summary": spec.description.split("\n")[0][:200],
            "description": f"{spec.description}\n\nDeclared versions: {versions}.",
            "tags": [spec.service], "security": security,
        }
        if spec.http:
            method = spec.http.method.lower()
            path = re.sub(r"\{(\w+):path\}", r"{\1}", spec.http.spec_path)
            params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                      for p in spec.http.path_params]
            if method in ("get", "delete"):
                props = request.get("properties") or {}
                params += [{"name": k, "in": "query", "required": k in (request.get("required") or []),
                            "schema": v} for k, v in props.items() if k not in spec.http.path_params]
            elif spec.http.style == "stream":
                op["requestBody"] = {"content": {"multipart/form-data": {"schema": {
                    "type": "object", "description": "Field names are the target paths",
                    "additionalProperties": {"type": "string", "format": "binary"}}}}}
            else:
                op["requestBody"] = {"content": {"application/json": {"schema": request}}}
            if params:
                op["parameters"] = params
            content = {"text": "text/plain"}.get(spec.http.style, "application/json")
            if spec.http.style == "stream" and response.get("format") == "binary":
                content = "*/*"  # a stored file, answered with its own type
            if spec.http.status == 204:  # no body: a confirmation travels in X-Message headers
                op["responses"] = {"204": {"description": "Success (no body)"}}
            else:
                op["responses"] = {str(spec.http.status): {
                    "description": "Success", "content": {content: {"schema": response}}}}
        else:
            method, path = "post", f"/{name}"
            op["requestBody"] = {"content": {"application/json": {"schema": request}}}
            op["responses"] = {"200": {"description": "ClearML envelope; `data` has this schema", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "meta": {"$ref": "#/components/schemas/Meta"}, "data": response}}}}}}
        if op.get("parameters"):
            # A long path or query string is refused by gunicorn before the app sees it, in its own HTML.
            op["responses"]["414"] = {"description": "Request line longer than gunicorn's limit_request_line",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}
        op["responses"]["default"] = _error_response(spec)
        paths.setdefault(re.sub(r"<([^>]+)>", r"{\1}", path), {})[method] = op
    components["Meta"] = {"type": "object", "required": list(_META_REQUIRED), "properties": {
        "id": {"type": "string"}, "trx": {"type": "string"}, "endpoint": {"type": "object"},
        "result_code": {"type": "integer"}, "result_subcode": {"type": "integer"},
        "result_msg": {"type": "string"}, "error_stack": {"type": ["string", "null"]},
        "error_data": {"type": "object"}}}
    components["ErrorEnvelope"] = {"type": "object", "required": ["meta", "data"], "properties": {
        "meta": {"$ref": "#/components/schemas/Meta"}, "data": {"type": "object"}}}
    components["RestError"] = {
        "type": "object", "required": ["message", "message_code", "code", "subcode", "request_id"],
        "properties": {"message": {"type": "string"}, "message_code": {"type": "string"},
                       "code": {"type": "integer"}, "subcode": {"type": "integer"},
                       "request_id": {"type": "string"}, "field": {"type": "string"},
                       "rule": {"type": "string"}, "error_stack": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ML API server", "version": server_version,
                 "description": f"Generated from apiserver/schema/services/*.conf. API version {api_version}."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "basicAuth": {"type": "http", "scheme": "basic"}}},
    }
