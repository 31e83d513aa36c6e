"""Handlers of the users service: the caller, and the users of the caller's company."""

from __future__ import annotations

from apiserver.bll.projects import contents
from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("users.get_current_user")
def get_current_user(call: Call) -> dict:
    ident = call.identity
    user = get_state().auth.get_user(ident.user, ident.company)
    return {"user": {"id": user.id, "name": user.name, "role": user.role,
                     "company": {"id": ident.company, "name": ident.company_name}},
            "getting_started": {}, "settings": {}}


@endpoint("users.get_all")
def get_all(call: Call) -> dict:
    return {"users": get_state().auth.list_users(call.company, **call.data)}


@endpoint("users.get_all_ex")
def get_all_ex(call: Call) -> dict:
    data = dict(call.data)
    projects = data.pop("active_in_projects", None)
    if projects is not None:
        data["id"] = sorted(contents.active_users(call.company, projects, data.get("id")))
        if not data["id"]:
            return {"users": []}
    return {"users": get_state().auth.list_users(call.company, **data)}


@endpoint("users.get_by_id")
def get_by_id(call: Call) -> dict:
    return {"user": get_state().auth.user_info(get_state().auth.get_user(call.data["user"], call.company))}


@endpoint("users.create")
def create(call: Call) -> dict:
    data = call.data
    user, creds = get_state().auth.create_user_by(
        call.identity, name=data["name"], role=data.get("role", "user"), email=data.get("email"),
        username=data.get("username"), password=data.get("password"), with_credentials=data.get("credentials"))
    answer = {"id": user.id}
    if creds:
        answer["credentials"] = {"access_key": creds.access_key, "secret_key": creds.secret_key}
    return answer


@endpoint("users.get_preferences")
def get_preferences(call: Call) -> dict:
    return {"preferences": get_state().auth.get_preferences(call.identity)}


@endpoint("users.set_preferences")
def set_preferences(call: Call) -> dict:
    return get_state().auth.set_preferences(call.identity, call.data["preferences"])


@endpoint("users.update")
def update(call: Call) -> dict:
    name = call.data.get("name")
    if name is None:
        return {"updated": 0, "fields": {}}
    updated = get_state().auth.rename_user(call.identity, call.data["user"], name)
    return {"updated": updated, "fields": {"name": name} if updated else {}}
