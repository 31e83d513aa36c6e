"""Owns the connector interface and the built-in MLflow and Databricks connectors.

A registry connector answers "does this model version exist, and what is it"; a server proxy
invokes a served model and checks its health. Each class declares the JSON Schema of its init
dict and which init keys are secrets. Classes are only ever loaded from the allowlist in config
(``registry.registry_connectors`` / ``registry.server_proxies``), never from a name in a request.
Every call goes through the server's guarded outbound client, and a failure is reported as a
short summary: an upstream's body never reaches the caller.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from apiserver.bll.outbound import Answer, OutboundClient, OutboundError

REGISTRY = "the model registry"
SERVER = "the model server"
URL = {"type": "string", "pattern": "^https?://[^\\s/$.?#].[^\\s]*$"}
SECRET = {"type": "string", "minLength": 1}


class ConnectorError(Exception):
    """The remote registry or server failed or answered something unusable."""


class Connector:
    INIT_SCHEMA: dict[str, Any] = {"type": "object"}
    SECRET_KEYS: tuple[str, ...] = ()

    def __init__(self, outbound: OutboundClient, /, **init: Any):
        self.outbound = outbound
        self.init = init

    def _headers(self) -> dict[str, str]:
        return {}

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Answer:
        try:
            return self.outbound.request(method, url, what=what, headers=self._headers(), **kwargs)
        except OutboundError as exc:
            raise ConnectorError(str(exc)) from None


class RegistryConnector(Connector):
    def model_version(self, name: str, version: str) -> dict[str, Any] | None:
        """The version's metadata, or None when the registry does not have it."""
        raise NotImplementedError


class ServerProxy(Connector):
    def invoke(self, model_code: str, version: str, payload: dict[str, Any]) -> Any:
        raise NotImplementedError

    def health(self, model_code: str, version: str) -> bool:
        raise NotImplementedError


class MlflowRegistryConnector(RegistryConnector):
    """MLflow's model registry REST API: ``GET /api/2.0/mlflow/model-versions/get``."""

    INIT_SCHEMA = {"type": "object", "required": ["model_registry_url"],
                   "properties": {"model_registry_url": URL, "tracking_server_url": URL}}

    def _base(self) -> str:
        return self.init["model_registry_url"].rstrip("/")

    def model_version(self, name: str, version: str) -> dict[str, Any] | None:
        resp = self._request("GET", f"{self._base()}/api/2.0/mlflow/model-versions/get", REGISTRY,
                             params={"name": name, "version": version})
        if resp.status == 404 or (resp.status == 400 and b"RESOURCE_DOES_NOT_EXIST" in resp.body):
            return None
        if resp.status != 200:
            raise ConnectorError(f"HTTP {resp.status} from {REGISTRY}")
        try:
            return resp.json()["model_version"]
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(f"{REGISTRY} answered without a model_version") from None


class MlflowServerProxy(ServerProxy):
    """An MLflow scoring server: ``POST /invocations`` with dataframe_records, ``GET /ping``."""

    INIT_SCHEMA = {"type": "object", "required": ["server_proxy_url"], "properties": {"server_proxy_url": URL}}

    def _invocations_url(self, model_code: str) -> str:
        return f"{self.init['server_proxy_url'].rstrip('/')}/invocations"

    def invoke(self, model_code: str, version: str, payload: dict[str, Any]) -> Any:
        resp = self._request("POST", self._invocations_url(model_code), SERVER, json={"dataframe_records": [payload]})
        if resp.status != 200:
            raise ConnectorError(f"HTTP {resp.status} from {SERVER}")
        try:
            predictions = resp.json()["predictions"]
        except (ValueError, KeyError, TypeError):
            raise ConnectorError(f"{SERVER} answered without predictions") from None
        return predictions[0] if isinstance(predictions, list) and len(predictions) == 1 else predictions

    def health(self, model_code: str, version: str) -> bool:
        try:
            return self._request("GET", f"{self.init['server_proxy_url'].rstrip('/')}/ping", SERVER).status == 200
        except ConnectorError:
            return False


class DatabricksRegistryConnector(MlflowRegistryConnector):
    """Databricks' workspace model registry: MLflow's REST shapes with the PAT as a bearer token."""

    INIT_SCHEMA = {"type": "object", "required": ["model_registry_url", "tracking_server_pat"],
                   "properties": {"model_registry_url": URL, "tracking_server_url": URL, "tracking_server_pat": SECRET}}
    SECRET_KEYS = ("tracking_server_pat",)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.init['tracking_server_pat']}"}


class DatabricksServerProxy(MlflowServerProxy):
    """Databricks model serving: ``POST /serving-endpoints/{name}/invocations`` with a bearer PAT."""

    INIT_SCHEMA = {"type": "object", "required": ["server_proxy_url", "server_proxy_pat"],
                   "properties": {"server_proxy_url": URL, "server_proxy_pat": SECRET}}
    SECRET_KEYS = ("server_proxy_pat",)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.init['server_proxy_pat']}"}

    def _invocations_url(self, model_code: str) -> str:
        return f"{self.init['server_proxy_url'].rstrip('/')}/serving-endpoints/{quote(model_code)}/invocations"

    def health(self, model_code: str, version: str) -> bool:
        url = f"{self.init['server_proxy_url'].rstrip('/')}/api/2.0/serving-endpoints/{quote(model_code)}"
        try:
            return self._request("GET", url, SERVER).status == 200
        except ConnectorError:
            return False
