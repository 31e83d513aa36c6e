"""Handlers of the deployments service (/api/deployment): each hands the call to DeploymentBLL."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state

DELETED_DEPLOYMENT = {"message": "The TANGO Deployment has been deleted", "message_code": "ok"}


@endpoint("deployments.create")
def create_deployment(call: Call) -> list:
    return [get_state().deployments.create(call.identity, call.data)]


@endpoint("deployments.get_all")
def list_deployments(call: Call) -> list:
    bll = get_state().deployments
    return [bll.to_api(d, call.identity.company_name) for d in bll.list(call.company)]


@endpoint("deployments.get")
def get_deployment(call: Call) -> list:
    bll = get_state().deployments
    return [bll.to_api(bll.get(call.company, call.data["deploymentKey"]), call.identity.company_name)]


@endpoint("deployments.get_connector_classes")
def connector_classes(call: Call) -> dict:
    bll = get_state().deployments
    return {"registry_connectors": bll.registries.described(), "server_proxies": bll.proxies.described()}


@endpoint("deployments.delete")
def delete_deployment(call: Call) -> dict:
    get_state().deployments.delete(call.company, call.data["deploymentKey"])
    return DELETED_DEPLOYMENT
