"""Owns the way of a request: route -> version -> auth -> validation -> handler -> envelope.

One dispatcher serves every surface. RPC endpoints (``/tasks.create``, ``/v2.13/tasks.create``,
also under ``/api``) answer in ClearML's ``{meta, data}`` envelope with the HTTP status equal to
``result_code``. Endpoints with an ``http`` binding answer at their declared path with their
declared status and a plain JSON (``rest``) or plain-text (``text``) body.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from apiserver.apierrors import APIError, errors
from apiserver.bll.secret_names import secret_name
from apiserver.database.errors import ConnectionFailure
from apiserver.schema.loader import EndpointSpec, SpecRegistry, Version, format_version, parse_version
from apiserver.schema.normalize import validated_request
from apiserver.service_repo.auth import (
    CLIENT_HEADER,
    IMPERSONATE_HEADER,
    LEGACY_IMPERSONATE_HEADER,
    Authenticator,
    RequestCredentials,
    SessionCookie,
)
from apiserver.service_repo.call import Call
from apiserver.service_repo.observe import request_id
from apiserver.service_repo.proxies import TrustedProxies

log = logging.getLogger(__name__)

Handler = Callable[[Call], Any]
JSON_LINES = "application/json-lines"
UNLIMITED = 1 << 62
_DUMP_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
UTC_SUFFIX = "+00:00"
# What a process answers while its start-up waits for the database (``starting``): liveness only.
# Not server.ready: the starting app still serves after the started state is set and until its
# wsgi_app is swapped for the started one, and in that gap it must answer 503 like every other call.
ANSWERS_WHILE_STARTING = frozenset({"server.health"})


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        # One shape for every date: UTC, milliseconds (MongoDB's precision), "+00:00" as ClearML's
        # server writes it. The web app's tables read a date by appending "+00:00" unless it ends
        # so: a "Z" date was an invalid date there, so the STARTED and UPDATED columns were empty.
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + UTC_SUFFIX
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "to_mongo"):  # mongoengine embedded documents
        return value.to_mongo().to_dict()
    return str(value)  # ObjectId, Decimal128, ...


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default, option=_DUMP_OPTS)


class EndpointNameConverter(BaseConverter):
    regex = r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*"


class Dispatcher:
    def __init__(self, specs: SpecRegistry, handlers: dict[tuple[str, Version], Handler],
                 authenticator: Authenticator | None, max_version: Version,
                 check_max_version: bool = False, debug: bool = False, session_cookie: SessionCookie | None = None,
                 https: bool = False, trusted_proxies: tuple[str, ...] = ()):
        self.specs = specs
        self.handlers = handlers
        self.authenticator = authenticator
        self.check_max_version = check_max_version
        self.debug = debug
        self.max_version = max_version
        self.session_cookie = session_cookie
        self.https = https
        self.proxies = TrustedProxies(trusted_proxies)
        self.starting = False  # create_app's start-up is still waiting for the database
        # GET of a name that is no endpoint (``/index.html``): a served web app's file, if any.
        self.static_fallback: Callable[[str], Response | None] | None = None

    # -- wiring -------------------------------------------------------------------------------

    def register(self, app: Flask) -> None:
        app.url_map.converters["endpoint_name"] = EndpointNameConverter
        methods = ["GET", "POST"]
        for prefix in ("", "/api"):
            app.add_url_rule(f"{prefix}/<endpoint_name:name>", f"rpc{prefix}", self.rpc_view, methods=methods)
            app.add_url_rule(f"{prefix}/v<version>/<endpoint_name:name>", f"rpc_v{prefix}", self.rpc_view,
                             methods=methods)
        bound: set[str] = set()
        for spec in reversed(self.specs.all()):  # newest version of each endpoint owns its path
            if spec.http and not spec.internal and spec.name not in bound:
                bound.add(spec.name)
                # "/files/" also answers "/files": a redirect would lose a streamed POST body.
                app.add_url_rule(spec.http.path, f"rest:{spec.name}", self._rest_view(spec),
                                 methods=[spec.http.method], strict_slashes=not spec.http.path.endswith("/"))
        app.register_error_handler(HTTPException, self._http_error)

    # -- views --------------------------------------------------------------------------------

    def rpc_view(self, name: str, version: str | None = None) -> Response:
        call_id = request_id()
        trx = request.headers.get("X-ClearML-Trx") or request.headers.get("X-Trx") or call_id
        requested = version
        spec: EndpointSpec | None = None
        try:
            wanted = None
            if version is not None:
                wanted = parse_version(version)
                if wanted is None:
                    raise errors.bad_request.InvalidVersion(f"'{version}' is not <major>.<minor>", version=version)
                if wanted > self.max_version and self.check_max_version:
                    raise errors.bad_request.InvalidVersionTooHigh(
                        version=version, max_version=format_version(self.max_version))
            if name not in self.specs:
                if self.static_fallback is not None and version is None and request.method in ("GET", "HEAD"):
                    static = self.static_fallback(name)  # e.g. /index.html of a served web app
                    if static is not None:
                        return static
                return self._not_found(call_id, trx, name, requested)
            spec = self.specs.resolve(name, wanted)
            if spec is not None and spec.internal:  # declared for the server's own use, never served
                return self._not_found(call_id, trx, name, requested)
            if spec is not None and spec.http is not None and spec.http.style == "stream":
                return self._not_found(call_id, trx, name, requested)  # only at its own path
            if spec is None:
                first = self.specs.versions(name)[0].version_str
                raise errors.bad_request.InvalidVersionTooLow(
                    f"{name} exists from version {first}", version=version, first_version=first)
            data, call = self._run(spec, call_id, trx, requested or spec.version_str, {})
            if spec.raw_response:
                if not isinstance(data, Response):
                    raise errors.server_error.InternalError(f"{name} answered no response")
                data.headers["X-Content-Type-Options"] = "nosniff"
                return self._with_cookies(data, call)
            return self._with_cookies(self._envelope(call_id, trx, name, requested, spec, 200, 0, "OK", data), call)
        except APIError as exc:
            return self._error_envelope(exc, call_id, trx, name, requested, spec)
        except HTTPException as exc:
            return self._error_envelope(_http_api_error(exc), call_id, trx, name, requested, spec)
        except Exception as exc:  # noqa: BLE001 - every failure gets an envelope, never a bare 500
            return self._error_envelope(self._internal(exc, call_id, name), call_id, trx, name, requested,
                                        spec, exc)

    def _rest_view(self, spec: EndpointSpec) -> Callable[..., Response]:
        def view(**path_params: str) -> Response:
            call_id = request_id()
            try:
                result, call = self._run(spec, call_id, call_id, spec.version_str, path_params)
                return self._with_cookies(self._rest_response(spec, result), call)
            except APIError as exc:
                return self._rest_error(exc, call_id, spec)
            except HTTPException as exc:
                return self._rest_error(_http_api_error(exc), call_id, spec)
            except Exception as exc:  # noqa: BLE001
                return self._rest_error(self._internal(exc, call_id, spec.name), call_id, spec, exc)

        view.__name__ = f"rest_{spec.name.replace('.', '_')}"
        return view

    # -- the pipeline -------------------------------------------------------------------------

    def _run(self, spec: EndpointSpec, call_id: str, trx: str, requested: str,
             path_params: dict[str, str]) -> tuple[Any, Call]:
        g.endpoint = spec.name  # for the request's metrics and log line (service_repo/observe.py)
        if self.starting and spec.name not in ANSWERS_WHILE_STARTING:
            raise errors.service_unavailable.NotReady("the server is starting: its database does not answer yet")
        identity = None
        address = self._client_address()
        auth_header = request.headers.get("Authorization")
        cookie_token = request.cookies.get(self.session_cookie.name) if self.session_cookie else None
        if spec.authorize and (auth_header or cookie_token or not spec.auth_optional):
            if self.authenticator is None:
                raise errors.server_error.ConfigError("authentication is not configured")
            identity = self.authenticator.identify_request(RequestCredentials(
                authorization=auth_header, cookie_token=cookie_token, client_header=request.headers.get(CLIENT_HEADER),
                content_type=request.content_type, has_body=bool(request.content_length), address=address,
                fetch_site=request.headers.get("Sec-Fetch-Site"), origin=request.headers.get("Origin"),
                own_origin=request.host_url,
                safe_read=spec.read_only and request.method in ("GET", "HEAD") and not request.content_length))
            acting_as = request.headers.get(IMPERSONATE_HEADER) or request.headers.get(LEGACY_IMPERSONATE_HEADER)
            if acting_as:
                identity = self.authenticator.users.impersonated(identity, acting_as.strip())
            self.authenticator.check_role(spec, identity)
            g.identity = identity
        if spec.http is not None and spec.http.style == "stream":
            return self._run_stream(spec, call_id, trx, requested, path_params, identity, auth_header, address)
        data, batch = self._read_body(spec, path_params)
        if batch is not None:
            batch = [self._validated(self._batch_target(spec), item, f"[{i}]") for i, item in enumerate(batch)]
            data = {}
        else:
            data = self._validated(spec, data)
        call = Call(id=call_id, trx=trx, endpoint=spec.name, requested_version=self._seen_version(spec, requested),
                    actual_version=spec.version_str, data=data, identity=identity, batched_data=batch,
                    remote_addr=address, authorization=auth_header, cookie_token=cookie_token,
                    secure_transport=self._secure_transport(), host=request.host)
        return self.handlers[(spec.name, spec.version)](call), call

    def _seen_version(self, spec: EndpointSpec, requested: str) -> str:
        """The version a handler sees: an RPC call without a version in its URL asks for the newest."""
        if spec.http is None and "version" not in (request.view_args or {}):
            return format_version(self.max_version)
        return requested

    def _secure_transport(self) -> bool:
        """HTTPS by config, or by the X-Forwarded-Proto of a trusted proxy."""
        return self.https or self.proxies.https(request.remote_addr, request.headers.get("X-Forwarded-Proto"))

    def _client_address(self) -> str | None:
        """The caller's address (the X-Forwarded-For of a trusted proxy, see ``TrustedProxies``)."""
        return self.proxies.client_address(request.remote_addr, request.headers.get("X-Forwarded-For"))

    @staticmethod
    def _with_cookies(resp: Response, call: Call) -> Response:
        for name, value, attrs in call.set_cookies:
            if value is None:
                resp.delete_cookie(name, path=attrs.get("path", "/"), secure=attrs.get("secure", False),
                                   httponly=True, samesite=attrs.get("samesite"))
            else:
                resp.set_cookie(name, value, **attrs)
        return resp

    def _run_stream(self, spec: EndpointSpec, call_id: str, trx: str, requested: str,
                    path_params: dict[str, str], identity: Any, auth_header: str | None,
                    address: str | None) -> tuple[Response, Call]:
        """A handler that reads the body itself: only the query and path are validated here, and
        the body's size is the handler's to limit (it may be far above max_content_length)."""
        params: dict[str, Any] = {**request.args.to_dict(), **path_params}
        for key, kind in spec.coercions.items():
            if isinstance(params.get(key), str):
                params[key] = _coerce(params[key], kind)
        # Lift max_content_length for this request (None would fall back to the app's setting).
        request.max_content_length = UNLIMITED
        call = Call(id=call_id, trx=trx, endpoint=spec.name, requested_version=self._seen_version(spec, requested),
                    actual_version=spec.version_str, data=self._validated(spec, params), identity=identity,
                    remote_addr=address, authorization=auth_header, host=request.host,
                    stream=request.stream, headers=request.headers,
                    environ=request.environ)
        return self.handlers[(spec.name, spec.version)](call), call

    def _batch_target(self, spec: EndpointSpec) -> EndpointSpec:
        target = self.specs.resolve(spec.batch_action[0], spec.version) or self.specs.versions(spec.batch_action[0])[0]
        return target

    def _read_body(self, spec: EndpointSpec, path_params: dict[str, str]) -> tuple[dict, list | None]:
        raw = request.get_data(cache=False)
        params: dict[str, Any] = {}
        if request.args:
            params.update(request.args.to_dict())
            secret = next((k for k in params if secret_name(k)), None)  # refused wherever the endpoint
            if secret is not None:
                # URLs end up in proxy logs, browser history and Referer headers.
                raise errors.bad_request.ValidationError(
                    f"'{secret}' may not be sent in the query string; send it in the JSON body",
                    error_data={"field": secret, "rule": "notInQuery"})
        params.update(path_params)
        for key, kind in spec.coercions.items():
            if isinstance(params.get(key), str):
                params[key] = _coerce(params[key], kind)
        if spec.batch_action is not None:
            if not raw.strip():
                raise errors.bad_request.BatchContainsNoItems()
            lines = [line for line in raw.splitlines() if line.strip()]
            if len(lines) > spec.batch_max_items:  # counted before parsing: no work for an oversized batch
                raise errors.bad_request.BatchValidationError(
                    f"at most {spec.batch_max_items} items per batch, got {len(lines)}",
                    error_data={"field": "", "rule": "maxItems"})
            try:
                items = [orjson.loads(line) for line in lines]
            except orjson.JSONDecodeError as exc:
                raise errors.bad_request.InvalidJson(f"json-lines body: {exc}") from None
            if len(items) == 1 and isinstance(items[0], list):
                items = items[0]  # a plain JSON array is accepted too
                if len(items) > spec.batch_max_items:
                    raise errors.bad_request.BatchValidationError(
                        f"at most {spec.batch_max_items} items per batch, got {len(items)}",
                        error_data={"field": "", "rule": "maxItems"})
            if not all(isinstance(i, dict) for i in items):
                raise errors.bad_request.BatchValidationError("every line must be a JSON object")
            return {}, items
        if not raw.strip():
            return params, None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise errors.bad_request.InvalidJson(str(exc)) from None
        if body is None:
            return params, None
        if not isinstance(body, dict):
            raise errors.bad_request.ValidationError("request body must be a JSON object",
                                                     error_data={"field": "", "rule": "type"})
        # Query args fill in what the body leaves out; path params always win (they name the object).
        return {**params, **body, **{k: params[k] for k in path_params}}, None

    @staticmethod
    def _validated(spec: EndpointSpec, data: dict, prefix: str = "") -> dict:
        return validated_request(spec, data, prefix)

    # -- answers ------------------------------------------------------------------------------

    def _envelope(self, call_id: str, trx: str, name: str, requested: str | None, spec: EndpointSpec | None,
                  code: int, subcode: int, msg: str, data: Any, error_stack: str | None = None,
                  error_data: dict | None = None) -> Response:
        actual = spec.version_str if spec else None
        body = {
            "meta": {
                "id": call_id, "trx": trx,
                "endpoint": {"name": name, "requested_version": requested or actual, "actual_version": actual},
                "result_code": code, "result_subcode": subcode, "result_msg": msg,
                "error_stack": error_stack, "error_data": error_data or {},
            },
            "data": data if data is not None else {},
        }
        return Response(dumps(body), status=code, mimetype="application/json")

    def _not_found(self, call_id: str, trx: str, name: str, requested: str | None) -> Response:
        version = requested or format_version(self.max_version)
        exc = errors.not_found.EndpointNotFound()
        msg = f"Unable to find endpoint for name {name} and version {version}"
        return self._envelope(call_id, trx, name, requested, None, exc.code, exc.subcode, msg, {})

    def _error_envelope(self, exc: APIError, call_id: str, trx: str, name: str, requested: str | None,
                        spec: EndpointSpec | None, cause: BaseException | None = None) -> Response:
        stack = "".join(traceback.format_exception(cause or exc)) if self.debug else None
        resp = self._envelope(call_id, trx, name, requested, spec, exc.code, exc.subcode, exc.message, {},
                              stack, exc.error_data)
        resp.headers.update(exc.headers)
        return resp

    def _rest_response(self, spec: EndpointSpec, result: Any) -> Response:
        http = spec.http
        if http.style == "stream":
            return result
        if http.style == "text":
            return Response("" if result is None else str(result), status=http.status, mimetype="text/plain")
        if http.status == 204:
            # HTTP allows no body with 204: a confirmation ({message, message_code}) goes in headers.
            headers = {f"X-{k.replace('_', '-').title()}": str(v) for k, v in (result or {}).items()}
            resp = Response(status=204, headers=headers)
            del resp.headers["Content-Type"]  # nothing follows, so no type either
            return resp
        return Response(dumps(result), status=http.status, mimetype="application/json")

    def _rest_error(self, exc: APIError, call_id: str, spec: EndpointSpec | None,
                    cause: BaseException | None = None) -> Response:
        body = {"message": exc.message, "message_code": f"{exc.group}.{exc.name}", "code": exc.code,
                "subcode": exc.subcode, "request_id": call_id}
        if exc.error_data:
            body.update({k: v for k, v in exc.error_data.items() if k not in body})
        if self.debug:
            body["error_stack"] = "".join(traceback.format_exception(cause or exc))
        if spec is not None and spec.http and spec.http.style == "text":
            return Response(exc.message, status=exc.code, mimetype="text/plain", headers=exc.headers)
        return Response(dumps(body), status=exc.code, mimetype="application/json", headers=exc.headers)

    def _internal(self, exc: Exception, call_id: str, name: str) -> APIError:
        if isinstance(exc, ConnectionFailure):  # socket, selection and pool-wait timeouts included
            log.error("request %s to %s: the database did not answer: %s", call_id, name, exc)
            return errors.server_error.DatabaseUnavailable(
                f"the database did not answer in time (database.operation_timeout_sec); request id {call_id}")
        log.exception("request %s to %s failed", call_id, name)
        return errors.server_error.InternalError(f"request id {call_id}")

    def _http_error(self, exc: HTTPException) -> Response:
        """Werkzeug's own errors (no route, wrong method, body too large) in our shapes."""
        call_id = request_id()
        code = exc.code or 500
        msg = exc.description or exc.name
        if code == 404:
            match = re.match(r"^/(?:api/)?(?:v([^/]+)/)?([^/]+)$", request.path)
            if match and "." in match.group(2):
                return self._not_found(call_id, call_id, match.group(2), match.group(1))
        if request.path.startswith("/api/") or not re.search(r"\.[a-z_]+$", request.path):
            body = {"message": msg, "message_code": exc.name.lower().replace(" ", "_"), "code": code,
                    "subcode": 0, "request_id": call_id}
            return Response(dumps(body), status=code, mimetype="application/json")
        return self._envelope(call_id, call_id, request.path.strip("/"), None, None, code, 0, msg, {})


def _http_api_error(exc: HTTPException) -> APIError:
    """Werkzeug's errors raised while a request is read (body over the limit, a broken form) as ours."""
    if exc.code == 413:
        return errors.payload_too_large.RequestTooLarge(
            f"the body is larger than this server accepts ({request.max_content_length} bytes)")
    return errors.bad_request.ValidationError(exc.description or exc.name, error_data={"field": "", "rule": "http"})


def _coerce(value: str, kind: str) -> Any:
    """Query-string and path text to the declared type; left as text when it does not parse."""
    try:
        if kind == "integer":
            try:
                return int(value)
            except ValueError:
                number = float(value)  # "487.0" is an integer here as in a JSON body
                return int(number) if number.is_integer() else value
        if kind == "number":
            return float(value)
    except (ValueError, OverflowError):
        return value
    if kind == "boolean" and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return value
