"""Owns reading the API: parses ``schema/services/*.conf`` into validated endpoint specs.

A service file (``tasks.conf``) holds ``_description``, ``_references``, ``_definitions`` and one
entry per action. An action holds endpoint-level keys (``internal``, ``authorize``,
``allow_roles``, ``read_only``) and one block per version (``"2.1" { request, response, ... }``).
Version blocks may add ``batch_request {action, version, max_items?}`` (json-lines batches of another
action's request) and ``http {method, path, status, style}`` (a REST or query-string binding; a path
parameter written ``{name:path}`` takes the rest of the path, slashes included). ``authorize`` is
true, false, or ``optional``: credentials are checked when sent and the handler gets no identity
when none are.

Every problem is a ``SpecError`` naming the file, the endpoint and what is wrong, so a broken spec
stops start-up instead of surfacing as a 500 later.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from pyhocon import ConfigFactory

from apiserver.bll.auth.identity import ROLES
from apiserver.plain import to_plain
from apiserver.schema.normalize import bound_integers, declares_integers

SERVICES_DIR = Path(__file__).resolve().parent / "services"

VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
# "stream": the handler reads the request body itself (Call.stream) and answers with a Response;
# for bodies that must not be read into memory (the file server).
WIRE_STYLES = {"rest", "text", "stream"}
ENDPOINT_KEYS = {"internal", "authorize", "allow_roles", "read_only", "_description"}
# Most items of a json-lines batch when its batch_request names no max_items.
DEFAULT_BATCH_MAX_ITEMS = 10_000
VERSION_KEYS = {"description", "request", "response", "batch_request", "http", "authorize",
                "allow_roles", "read_only", "internal", "raw_response"}

Version = tuple[int, int]

# The formats a request's validator checks. Only ``email``: it is stored and signed in with, and
# this is its one rule (the user model keeps it as plain text). ``date-time`` values are read where
# they are used, in the looser forms ClearML's clients send.
FORMATS = FormatChecker(formats=())
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f.][^@\s\x00-\x1f\x7f]{0,252}$")


@FORMATS.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or _EMAIL.match(value) is not None


class SpecError(RuntimeError):
    """A service definition is broken; the message says where and why."""


def parse_version(text: str | float) -> Version | None:
    match = VERSION_RE.match(str(text))
    return (int(match.group(1)), int(match.group(2))) if match else None


def format_version(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class HttpBinding:
    method: str
    path: str  # Flask rule, e.g. "/api/model/<modelCode>/version/<modelVersion>"
    spec_path: str  # as declared, e.g. "/api/model/{modelCode}/version/{modelVersion}"
    status: int
    style: str  # "rest" (plain JSON body), "text" (plain text) or "stream" (the handler's own Response)
    path_params: tuple[str, ...]


@dataclass
class EndpointSpec:
    name: str
    service: str
    action: str
    version: Version
    description: str
    request_schema: dict[str, Any]
    response_schema: dict[str, Any]
    source: str
    authorize: bool = True
    auth_optional: bool = False  # authorize: optional
    allow_roles: frozenset[str] | None = None  # None: every role
    read_only: bool = False
    internal: bool = False  # never served: the dispatcher answers 404, /openapi.json leaves it out
    # An RPC endpoint whose handler answers the HTTP response itself (a download such as a CSV file)
    # instead of the envelope's data; its errors are envelopes as always.
    raw_response: bool = False
    batch_action: tuple[str, Version] | None = None
    batch_max_items: int | None = None  # json-lines batches: most lines, counted before any is parsed
    http: HttpBinding | None = None
    request_validator: Draft7Validator = field(init=False, repr=False)
    # Top-level request properties declared as integer/number/boolean: query strings and path
    # params arrive as text and are converted to these before validation.
    coercions: dict[str, str] = field(init=False, repr=False)
    has_integers: bool = field(init=False, repr=False)  # integral floats to convert after validation

    def __post_init__(self) -> None:
        self.request_validator = Draft7Validator(self.request_schema, format_checker=FORMATS)
        self.has_integers = declares_integers(self.request_schema)
        props = self.request_schema.get("properties") or {}
        self.coercions = {
            key: prop["type"] for key, prop in props.items()
            if isinstance(prop, dict) and prop.get("type") in ("integer", "number", "boolean")
        }

    @property
    def version_str(self) -> str:
        return format_version(self.version)


class SpecRegistry:
    """Every endpoint and its versions, with ClearML's version negotiation."""

    def __init__(self, specs: list[EndpointSpec]):
        self._by_name: dict[str, list[EndpointSpec]] = {}
        for spec in specs:
            self._by_name.setdefault(spec.name, []).append(spec)
        for versions in self._by_name.values():
            versions.sort(key=lambda s: s.version)
        self.max_version: Version = max((s.version for s in specs), default=(1, 0))

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[EndpointSpec]:
        return self._by_name.get(name, [])

    def all(self) -> list[EndpointSpec]:
        return [spec for name in self.names() for spec in self._by_name[name]]

    def resolve(self, name: str, requested: Version | None) -> EndpointSpec | None:
        """The highest declared version not above ``requested`` (newest when None)."""
        versions = self._by_name.get(name)
        if not versions:
            return None
        if requested is None:
            return versions[-1]
        chosen = None
        for spec in versions:
            if spec.version <= requested:
                chosen = spec
            else:
                break
        return chosen


def _parse_file(path: Path) -> dict[str, Any]:
    """The file's HOCON as plain data. Parsing every service file takes pyhocon seconds, paid by every
    server start, so the result is kept in a cache folder (``_cached``) under a key made of the file's
    bytes, its folder's includes and pyhocon's version: a changed file is simply parsed again."""
    key = _cache_key(path)
    cached = _cached(key)
    if cached is not None:
        return cached
    try:
        tree = ConfigFactory.parse_file(str(path), resolve=True)
    except Exception as exc:  # pyparsing and pyhocon raise many kinds
        line = getattr(exc, "lineno", None)
        where = f" line {line}, column {getattr(exc, 'col', '?')}" if line else ""
        text = getattr(exc, "msg", None) or str(exc).splitlines()[0][:300]
        raise SpecError(f"{path.name}{where}: cannot parse HOCON: {text}") from exc
    data = tree.as_plain_ordered_dict()
    _keep(key, data)
    return data


_CACHE_FORMAT = "1"
_PYHOCON = importlib.metadata.version("pyhocon")  # another pyhocon may parse the same file otherwise


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "apiserver" / "specs"


def _cache_key(path: Path) -> str:
    digest = hashlib.sha256(f"{_CACHE_FORMAT}\0{_PYHOCON}\0{path.name}\0".encode())
    digest.update(path.read_bytes())
    for include in sorted(path.parent.glob("_*.conf")):  # what an `include "_x.conf"` may read
        digest.update(f"\0{include.name}\0".encode())
        digest.update(include.read_bytes())
    return digest.hexdigest()


def _cached(key: str) -> dict[str, Any] | None:
    try:
        return json.loads((_cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):  # not cached (or unreadable): parse
        return None


def _keep(key: str, data: dict[str, Any]) -> None:
    """Write the cache entry atomically; a folder that cannot be written only means no cache."""
    with contextlib.suppress(OSError, TypeError, ValueError):
        folder = _cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as out:
            try:
                json.dump(data, out)
            except (TypeError, ValueError):  # not JSON after all: no entry, and no file left behind
                out.close()
                os.unlink(out.name)
                raise
        os.replace(out.name, folder / f"{key}.json")



def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _attach_definitions(schema: dict, definitions: dict, where: str) -> dict:
    """Copy the schema and embed every definition it reaches through ``$ref``."""
    schema = copy.deepcopy(schema)
    needed: dict[str, Any] = {}
    pending = list(_refs(schema))
    while pending:
        ref = pending.pop()
        if not ref.startswith("#/definitions/"):
            raise SpecError(f"{where}: unsupported $ref {ref!r} (only '#/definitions/<name>')")
        name = ref[len("#/definitions/"):]
        if name in needed:
            continue
        if name not in definitions:
            raise SpecError(f"{where}: $ref {ref!r} names a missing definition {name!r}")
        needed[name] = definitions[name]
        pending.extend(_refs(definitions[name]))
    if needed:
        schema["definitions"] = copy.deepcopy(needed)
    return schema


def _parse_http(raw: Any, where: str) -> HttpBinding:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: 'http' must be an object")
    method = str(raw.get("method", "POST")).upper()
    if method not in HTTP_METHODS:
        raise SpecError(f"{where}: http.method {method!r} is not one of {sorted(HTTP_METHODS)}")
    spec_path = raw.get("path")
    if not isinstance(spec_path, str) or not spec_path.startswith("/"):
        raise SpecError(f"{where}: http.path must be a string starting with '/'")
    params = tuple(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::path)?\}", spec_path))
    style = raw.get("style", "rest")
    if style not in WIRE_STYLES:
        raise SpecError(f"{where}: http.style {style!r} is not one of {sorted(WIRE_STYLES)}")
    status = raw.get("status", 200)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise SpecError(f"{where}: http.status must be an HTTP status code")
    rule = re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", r"<\1>", spec_path)
    rule = re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*):path\}", r"<path:\1>", rule)
    return HttpBinding(method, rule, spec_path, status, style, params)


def _parse_roles(raw: Any, where: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
        raise SpecError(f"{where}: allow_roles must be a list of role names")
    unknown = set(raw) - set(ROLES) - {"*"}
    if unknown:
        raise SpecError(f"{where}: allow_roles names unknown roles {sorted(unknown)}; known: {ROLES}")
    return None if "*" in raw else frozenset(raw)


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise SpecError(f"{where}: must be a JSON Schema object")
    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as exc:
        path = ".".join(str(p) for p in exc.absolute_path) or "<root>"
        raise SpecError(f"{where}: invalid JSON Schema at {path}: {exc.message}") from exc


def load_service(path: Path, service: str | None = None) -> list[EndpointSpec]:
    """Parse one service file into its endpoint specs (one per declared version)."""
    service = service or path.stem
    data = to_plain(_parse_file(path))
    definitions = data.get("_definitions") or {}
    specs: list[EndpointSpec] = []
    for action, entry in data.items():
        if action.startswith("_"):
            continue
        name = f"{service}.{action}"
        where = f"{path.name}: endpoint {name}"
        if not NAME_RE.match(action):
            raise SpecError(f"{where}: action names are lower_case words")
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected an object of versions")
        versions = {k: v for k, v in entry.items() if k not in ENDPOINT_KEYS}
        if not versions:
            raise SpecError(f"{where}: declares no version")
        for version_text, block in versions.items():
            version = parse_version(version_text)
            vwhere = f"{where} version {version_text}"
            if version is None:
                raise SpecError(f"{vwhere}: unknown key (versions look like \"2.1\")")
            if not isinstance(block, dict):
                raise SpecError(f"{vwhere}: expected an object")
            unknown = set(block) - VERSION_KEYS
            if unknown:
                raise SpecError(f"{vwhere}: unknown keys {sorted(unknown)}")
            batch = block.get("batch_request")
            batch_action, batch_max = None, None
            if batch is not None:
                target = batch.get("action") if isinstance(batch, dict) else None
                bversion = parse_version(batch.get("version", "")) if isinstance(batch, dict) else None
                batch_max = batch.get("max_items", DEFAULT_BATCH_MAX_ITEMS) if isinstance(batch, dict) else None
                if not target or bversion is None:
                    raise SpecError(f"{vwhere}: batch_request needs 'action' and 'version'")
                if not isinstance(batch_max, int) or isinstance(batch_max, bool) or batch_max < 1:
                    raise SpecError(f"{vwhere}: batch_request max_items must be a positive integer")
                batch_action = (f"{service}.{target}", bversion)
                request = {"type": "array"}
            else:
                request = block.get("request", {"type": "object"})
            response = block.get("response", {"type": "object"})
            _check_schema(request, f"{vwhere} request")
            _check_schema(response, f"{vwhere} response")
            http = _parse_http(block["http"], vwhere) if "http" in block else None
            authorize = block.get("authorize", entry.get("authorize", True))
            if authorize not in (True, False, "optional"):
                raise SpecError(f"{vwhere}: authorize is true, false or optional")
            specs.append(EndpointSpec(
                name=name, service=service, action=action, version=version,
                description=str(block.get("description", entry.get("_description", ""))).strip(),
                request_schema=bound_integers(_attach_definitions(request, definitions, f"{vwhere} request")),
                response_schema=_attach_definitions(response, definitions, f"{vwhere} response"),
                source=path.name,
                authorize=authorize is not False, auth_optional=authorize == "optional",
                allow_roles=_parse_roles(block.get("allow_roles", entry.get("allow_roles")), vwhere),
                read_only=bool(block.get("read_only", entry.get("read_only", False))),
                internal=bool(block.get("internal", entry.get("internal", False))),
                raw_response=block.get("raw_response") is True,
                batch_action=batch_action, batch_max_items=batch_max, http=http,
            ))
    return specs


def check_enums(registry: SpecRegistry, facts: dict[tuple[str, str], tuple[str, ...]]) -> None:
    """Each enum definition the specs declare for a fact the code owns (``(service, definition)``,
    service ``*`` for any) must list exactly the code's values, in its order; else start-up stops
    naming both, so a status or role added on one side only cannot slip through."""
    for spec in registry.all():
        for schema in (spec.request_schema, spec.response_schema):
            for name, definition in (schema.get("definitions") or {}).items():
                expected = facts.get((spec.service, name), facts.get(("*", name)))
                declared = definition.get("enum") if isinstance(definition, dict) else None
                if expected is not None and list(declared or []) != list(expected):
                    raise SpecError(f"{spec.source}: definition {name} lists {declared}, but the code's set is "
                                    f"{list(expected)}; change both together")


# Loaded registries by their folder's files as they were (name, size, modification time): parsing
# every service file takes seconds, and the gunicorn master, which checks them before it starts,
# forks workers that then find them here instead of parsing them again.
_LOADED: dict[tuple, SpecRegistry] = {}


def load_specs(directory: Path = SERVICES_DIR) -> SpecRegistry:
    """Load every service file of ``directory`` (files starting with ``_`` are includes)."""
    every = sorted(directory.glob("*.conf"))
    files = [p for p in every if not p.name.startswith("_")]
    if not files:
        raise SpecError(f"{directory}: no service files (*.conf)")
    key = (str(directory.resolve()), *((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in every))
    if key in _LOADED:
        return _LOADED[key]
    specs = [spec for path in files for spec in load_service(path)]
    registry = SpecRegistry(specs)
    _check_cross_references(registry)
    _LOADED[key] = registry
    return registry


def _check_cross_references(registry: SpecRegistry) -> None:
    routes: dict[tuple[str, str], str] = {}
    for spec in registry.all():
        if spec.batch_action:
            # Items are validated against the target action at the batch call's own version
            # (ClearML's declared batch versions, such as 1.5, predate the target's first one).
            target = spec.batch_action[0]
            if target not in registry:
                raise SpecError(f"{spec.source}: endpoint {spec.name} version {spec.version_str}: "
                                f"batch_request names {target}, which is not declared")
        if spec.http:
            key = (spec.http.method, re.sub(r"<[^>]+>", "<>", spec.http.path))
            other = routes.setdefault(key, spec.name)
            if other != spec.name:
                raise SpecError(f"{spec.source}: endpoint {spec.name}: http {spec.http.method} "
                                f"{spec.http.spec_path} is already bound to {other}")
