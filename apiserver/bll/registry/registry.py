"""Owns deployments and model versions of a workspace.

- Deployment keys and model code + version pairs are unique across all workspaces and stay taken
  after a (soft) delete. Another workspace's records look missing (404), never forbidden.
- Connector classes come only from the config allowlist; a deployment's init dicts are checked
  against the class's own schema; secrets are sealed at rest and answered masked (secrets.py), and
  opened only to build a connector, whose calls go through the guarded outbound client.
- Stored input/output schemas are checked and run by schemas.py (local refs only, RE2 patterns).
- A model and its explainer chain are created together or not at all.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft7Validator
from referencing.exceptions import Unresolvable

from apiserver.apierrors import errors
from apiserver.bll import access
from apiserver.bll.auth.identity import Identity
from apiserver.bll.outbound import OutboundClient
from apiserver.bll.query import page_bounds
from apiserver.bll.registry.connectors import Connector, ConnectorError, RegistryConnector, ServerProxy
from apiserver.bll.registry.schemas import check_stored_schema, validator_for
from apiserver.bll.registry.secrets import SecretBox, secret_name, shown
from apiserver.config.settings import RegistrySettings
from apiserver.database.errors import BulkWriteError, DuplicateKeyError
from apiserver.database.model.base import utcnow
from apiserver.database.model.registry import Deployment, RegistryModel
from apiserver.database.store import store_of
from apiserver.schema.validation import error_field, first_error

LIST_INDEX = [("company", 1), ("deleted", 1), ("explains", 1), ("model_code", 1), ("version", 1)]
MODEL_FIELDS = ("model_code", "version", "name", "description", "input_schema", "output_schema",
                "realtime_execution", "allow_download", "need_context")


def _bad(message: str, field: str, rule: str) -> errors.bad_request.ValidationError:
    return errors.bad_request.ValidationError(message, error_data={"field": field, "rule": rule})


def model_id(code: str, version: str) -> str:
    return f"{code}@{version}"


class ConnectorAllowlist:
    """Class names a request may use, each mapped (in config) to the class that is loaded."""

    def __init__(self, entries: Iterable[dict[str, str]], base: type[Connector]):
        self.base = base
        self.names = {e["name"]: e["class"] for e in entries or []}

    def load(self, name: str, field: str) -> type[Connector]:
        target = self.names.get(name)
        if target is None:
            raise _bad(f"{name!r} is not an allowed class; allowed: {sorted(self.names)}", field, "enum")
        module, _, attr = target.rpartition(".")
        cls = getattr(importlib.import_module(module), attr, None)  # a path from config, never a request
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise errors.server_error.ConfigError(
                f"registry config maps {name} to {target}, not a {self.base.__name__}")
        return cls

    def described(self) -> list[dict[str, Any]]:
        """Each allowed name with its class's init schema and which init keys are secrets (sealed and
        masked), for a form that offers only these."""
        out = []
        for name in sorted(self.names):
            cls = self.load(name, "class")
            props = sorted(cls.INIT_SCHEMA.get("properties") or {})
            out.append({"name": name, "init_schema": cls.INIT_SCHEMA,
                        "secret_keys": [k for k in props if secret_name(k, tuple(cls.SECRET_KEYS))]})
        return out

    def loaded_or_none(self, name: str) -> type[Connector] | None:
        """The class for a stored name, or None if the allowlist dropped it since (secrets stay masked)."""
        return self.load(name, "class") if name in self.names else None


def _check_init(cls: type[Connector], init: dict[str, Any], field: str) -> None:
    error = first_error(Draft7Validator(cls.INIT_SCHEMA), init)
    if error is not None:
        path = ".".join(p for p in (field, error_field(error)) if p)
        raise _bad(f"field '{path}': {error.message} ({cls.__name__} init)", path, error.validator)


def _shown_init(cls: type[Connector] | None, init: dict[str, Any]) -> dict[str, Any]:
    declared = tuple(cls.SECRET_KEYS if cls else ())
    return {k: shown(v, k, declared) for k, v in init.items()}


class DeploymentBLL:
    def __init__(self, settings: RegistrySettings, outbound: OutboundClient, box: SecretBox):
        self.registries = ConnectorAllowlist(settings.registry_connectors, RegistryConnector)
        self.proxies = ConnectorAllowlist(settings.server_proxies, ServerProxy)
        self.outbound = outbound
        self.box = box

    @property
    def store(self):
        return store_of(Deployment)

    def to_api(self, doc: dict[str, Any], workspace_name: str) -> dict[str, Any]:
        registry = self.registries.loaded_or_none(doc["registry_connector_class"])
        proxy = self.proxies.loaded_or_none(doc["server_proxy_class"])
        return {"deployment_key": doc["_id"], "workspace": workspace_name,
                "registry_connector_class": doc["registry_connector_class"],
                "registry_connector_init": _shown_init(registry, doc["registry_connector_init"]),
                "server_proxy_class": doc["server_proxy_class"],
                "server_proxy_init": _shown_init(proxy, doc["server_proxy_init"]),
                "created": doc.get("created")}

    def create(self, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
        registry = self.registries.load(data["registry_connector_class"], "registry_connector_class")
        proxy = self.proxies.load(data["server_proxy_class"], "server_proxy_class")
        key = data["deployment_key"]
        sealed = {}
        for cls, field in ((registry, "registry_connector_init"), (proxy, "server_proxy_init")):
            _check_init(cls, data[field], field)
            self._check_urls(data[field], field)
            sealed[field] = self.box.seal_init(data[field], tuple(cls.SECRET_KEYS), f"{key}/{field}")
        doc = {"_id": key, "company": identity.company, "user": identity.user,
               "registry_connector_class": data["registry_connector_class"],
               "registry_connector_init": sealed["registry_connector_init"],
               "server_proxy_class": data["server_proxy_class"], "server_proxy_init": sealed["server_proxy_init"],
               "created": utcnow(), "deleted": None}
        try:
            self.store.insert_one(doc)
        except DuplicateKeyError:
            raise errors.conflict.AlreadyExists(
                "deployment_key is taken (keys are never reused, even after a delete)",
                deployment_key=data["deployment_key"]) from None
        return self.to_api(doc, identity.company_name)

    def _check_urls(self, init: dict[str, Any], field: str) -> None:
        """A URL the server could never call is a 400 now, not a failure later (host names are
        resolved, and checked, on every call)."""
        for name, value in init.items():
            if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
                problem = self.outbound.policy.base_url_problem(value)
                if problem:
                    raise _bad(f"field '{field}.{name}' {problem[0]}", f"{field}.{name}", problem[1])

    def get(self, company: str, key: str) -> dict[str, Any]:
        doc = access.by_id(self.store, key, (company,), deleted=None)
        if doc is None:
            raise errors.not_found.ObjectNotFound("no such deployment", deployment_key=key)
        return doc

    def list(self, company: str) -> list[dict[str, Any]]:
        return list(self.store.find({"company": company, "deleted": None}).sort([("created", 1), ("_id", 1)]))

    def delete(self, company: str, key: str) -> None:
        self.get(company, key)
        self.store.update_one({"_id": key, "company": company, "deleted": None}, {"$set": {"deleted": utcnow()}})

    def connectors(self, doc: dict[str, Any]) -> tuple[RegistryConnector, ServerProxy]:
        registry = self.registries.load(doc["registry_connector_class"], "registry_connector_class")
        proxy = self.proxies.load(doc["server_proxy_class"], "server_proxy_class")
        key = doc["_id"]
        return (registry(self.outbound, **self.box.open_init(doc["registry_connector_init"],
                                                            f"{key}/registry_connector_init")),
                proxy(self.outbound, **self.box.open_init(doc["server_proxy_init"], f"{key}/server_proxy_init")))

    def for_model(self, company: str, deployment_key: str | None, field: str) -> dict[str, Any] | None:
        """The deployment a model uses: the one it names, else the workspace's only one, else none."""
        if deployment_key:
            try:
                return self.get(company, deployment_key)
            except errors.not_found.ObjectNotFound:
                raise _bad(f"deployment {deployment_key!r} does not exist in this workspace", field,
                           "exists") from None
        active = self.list(company)
        if len(active) > 1:
            raise _bad(f"the workspace has {len(active)} deployments; name one with deployment_key", field,
                       "required")
        return active[0] if active else None


class ModelRegistryBLL:
    def __init__(self, deployments: DeploymentBLL, max_explainers: int = 10, max_schema_bytes: int = 65536):
        self.deployments = deployments
        self.max_explainers = max_explainers
        self.max_schema_bytes = max_schema_bytes

    @property
    def store(self):
        return store_of(RegistryModel)

    # -- registration -------------------------------------------------------------------------

    def _chain(self, payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The model and its explainers as (path, payload), outermost first; at most 1 + max_explainers."""
        chain, node, path = [], payload, ""
        while node is not None:
            chain.append((path, node))
            if len(chain) > self.max_explainers + 1:
                raise _bad(f"an explainer chain holds at most {self.max_explainers} explainers", path.rstrip("."),
                           "maxDepth")
            node, path = node.get("explainer"), f"{path}explainer."
        return chain

    def _check_io_schema(self, value: dict[str, Any], field: str) -> None:
        check_stored_schema(value.get("schema"), f"{field}.schema", self.max_schema_bytes)

    def register(self, identity: Identity, payload: dict[str, Any]) -> list[dict[str, Any]]:
        chain = self._chain(payload)
        ids, now = [], utcnow()
        for path, node in chain:
            for io in ("input_schema", "output_schema"):
                self._check_io_schema(node[io], f"{path}{io}")
            ids.append(model_id(node["model_code"], node["version"]))
        if len(set(ids)) != len(ids):
            raise _bad("a model_code and version appear twice in the chain", "explainer", "uniqueItems")
        taken = {d["_id"] for d in self.store.find({"_id": {"$in": ids}}, {"_id": 1})}
        if taken:
            raise errors.conflict.AlreadyExists(
                "model_code and version are taken (never reusable, even after a delete)", models=sorted(taken))
        deployment = self.deployments.for_model(identity.company, payload.get("deployment_key"), "deployment_key")
        if deployment is not None:
            self._check_in_registry(deployment, chain)
        docs = []
        for n, (_, node) in enumerate(chain):
            doc = {k: node.get(k) for k in MODEL_FIELDS}
            doc.update({"_id": ids[n], "company": identity.company, "user": identity.user, "created": now,
                        "deleted": None, "explainer": ids[n + 1] if n + 1 < len(ids) else None,
                        "explains": ids[n - 1] if n else None,
                        "deployment_key": deployment["_id"] if deployment else None})
            docs.append(doc)
        try:
            self.store.insert_many(docs, ordered=True)
        except (BulkWriteError, DuplicateKeyError):
            # Someone registered one of these ids meanwhile: take back what this call wrote.
            self.store.delete_many({"_id": {"$in": ids}, "created": now, "user": identity.user})
            raise errors.conflict.AlreadyExists("model_code and version were registered meanwhile",
                                                models=ids) from None
        return [self.to_api(docs[0], identity.company_name, docs)]

    def _check_in_registry(self, deployment: dict[str, Any], chain: list[tuple[str, dict[str, Any]]]) -> None:
        registry, _ = self.deployments.connectors(deployment)
        for path, node in chain:
            try:
                found = registry.model_version(node["model_code"], node["version"])
            except ConnectorError as exc:
                raise errors.service_unavailable.UpstreamUnavailable(
                    f"the model registry of deployment {deployment['_id']} failed: {exc}") from None
            if found is None:
                raise _bad(f"model {node['model_code']} version {node['version']} is not in the registry of "
                           f"deployment {deployment['_id']}", f"{path}version", "registered")

    # -- reads and deletes --------------------------------------------------------------------

    def to_api(self, doc: dict[str, Any], workspace_name: str, chain_docs: list[dict[str, Any]] | None = None,
               with_deleted: bool = False) -> dict[str, Any]:
        """A version as answered; ``with_deleted`` keeps soft-deleted explainers in the chain (marked by
        their ``deleted`` time) instead of ending the chain there."""
        out = {k: doc.get(k) for k in MODEL_FIELDS}
        out.update({"workspace": workspace_name, "deployment_key": doc.get("deployment_key"),
                    "created": doc.get("created"), "deleted": doc.get("deleted"), "explainer": None})
        if doc.get("explainer"):
            nxt = None
            if chain_docs is not None:
                nxt = next((d for d in chain_docs if d["_id"] == doc["explainer"]), None)
            if nxt is None:
                flt = {"_id": doc["explainer"]} if with_deleted else {"_id": doc["explainer"], "deleted": None}
                nxt = self.store.find_one(flt)
            out["explainer"] = self.to_api(nxt, workspace_name, chain_docs, with_deleted) if nxt else None
        return out

    def get(self, company: str, code: str, version: str) -> dict[str, Any]:
        doc = self.store.find_one({"_id": model_id(code, version), "company": company, "deleted": None})
        if doc is None:
            raise errors.not_found.ObjectNotFound("no such model version", model_code=code, version=version)
        return doc

    def list(self, company: str, page: int | None, page_size: int | None, include_deleted: bool = False
             ) -> list[dict[str, Any]]:
        skip, limit = page_bounds(page, page_size, default_size=100)
        flt: dict[str, Any] = {"company": company, "explains": None}
        if not include_deleted:
            flt["deleted"] = None
        return list(self.store.find(flt).sort([("model_code", 1), ("version", 1)]).hint(LIST_INDEX).skip(skip)
                    .limit(limit))

    def delete(self, company: str, code: str, version: str) -> None:
        self.get(company, code, version)
        self.store.update_one({"_id": model_id(code, version), "company": company, "deleted": None},
                             {"$set": {"deleted": utcnow()}})

    # -- invocation ---------------------------------------------------------------------------

    def invoke(self, company: str, code: str, version: str, payload: dict[str, Any]) -> Any:
        doc = self.get(company, code, version)
        if (doc.get("input_schema") or {}).get("type") != "json":
            raise _bad("only models with a json input_schema are invoked here (file models go through storage)",
                       "input_schema.type", "const")
        self._validate(doc["input_schema"]["schema"], payload, "input", 400, "input_schema.schema")
        deployment = self.deployments.for_model(company, doc.get("deployment_key"), "deployment_key")
        if deployment is None:
            raise _bad("the model's workspace has no deployment to invoke it on", "deployment_key", "required")
        _, proxy = self.deployments.connectors(deployment)
        try:
            answer = proxy.invoke(code, version, payload)
        except ConnectorError as exc:
            raise errors.service_unavailable.UpstreamUnavailable(f"the model server failed: {exc}") from None
        if (doc.get("output_schema") or {}).get("type") == "json":
            self._validate(doc["output_schema"]["schema"], answer, "output", 502, "output_schema.schema")
        return answer

    @staticmethod
    def _validate(schema: dict[str, Any], value: Any, what: str, code: int, schema_field: str) -> None:
        try:
            error = first_error(validator_for(schema), value)
        except Unresolvable as exc:  # a schema stored before references were checked: never fetched
            raise _bad(f"the model's {schema_field} refers outside itself ({exc}); nothing is fetched",
                       schema_field, "ref") from None
        if error is None:
            return
        path = error_field(error)
        if code == 400:
            raise _bad(f"{what} field '{path}': {error.message}", path, error.validator)
        raise errors.service_unavailable.UpstreamUnavailable(
            f"the model's answer breaks its output_schema at '{path}': {error.message}")
