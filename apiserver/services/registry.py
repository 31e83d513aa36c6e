"""Handlers of the model registry service (/api/model): each hands the call to ModelRegistryBLL."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state

DELETED_MODEL = {"message": "The TANGO Model has been deleted", "message_code": "ok"}


@endpoint("registry.create")
def create_model(call: Call) -> list:
    payload = {k: v for k, v in call.data.items()}
    return get_state().registry.register(call.identity, payload)


@endpoint("registry.get_all")
def list_models(call: Call) -> list:
    bll = get_state().registry
    deleted = bool(call.data.get("include_deleted"))
    return [bll.to_api(d, call.identity.company_name, with_deleted=deleted)
            for d in bll.list(call.company, call.data.get("page"), call.data.get("page_size"), deleted)]


@endpoint("registry.get")
def get_model(call: Call) -> dict:
    bll = get_state().registry
    return bll.to_api(bll.get(call.company, call.data["modelCode"], call.data["modelVersion"]),
                      call.identity.company_name)


@endpoint("registry.delete")
def delete_model(call: Call) -> dict:
    get_state().registry.delete(call.company, call.data["modelCode"], call.data["modelVersion"])
    return DELETED_MODEL


@endpoint("registry.invoke")
def invoke_model(call: Call):
    payload = {k: v for k, v in call.data.items() if k not in ("modelCode", "modelVersion")}
    return get_state().registry.invoke(call.company, call.data["modelCode"], call.data["modelVersion"], payload)
