"""Handlers of the auth service: login, credentials, roles and the model registry's token form."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("auth.login")
def login(call: Call) -> dict:
    state = get_state()
    token = state.tokens.issue_at_sign_in(call.identity, call.auth_scheme, call.data.get("expiration_sec"))
    if not call.identity.credential:  # a password sign-in: a person in the web app, who gets the cookie
        cookie = state.session_cookie
        attrs = cookie.attributes(call.secure_transport or cookie.secure)
        call.set_cookies.append((cookie.name, token, {**attrs, "max_age": call.data.get("expiration_sec")
                                                      or cookie.max_age_sec}))
    return {"token": token}


@endpoint("auth.create_credentials")
def create_credentials(call: Call) -> dict:
    creds = get_state().auth.create_credentials(call.user, call.company, call.data.get("label"))
    return {"credentials": {"access_key": creds.access_key, "secret_key": creds.secret_key, "label": creds.label}}


@endpoint("auth.get_credentials")
def get_credentials(call: Call) -> dict:
    return {"credentials": get_state().auth.list_credentials(call.user, call.company)}


@endpoint("auth.edit_credentials")
def edit_credentials(call: Call) -> dict:
    return {"updated": get_state().auth.edit_credentials(call.data["access_key"], call.user, call.company,
                                                         call.data.get("label"))}


@endpoint("auth.revoke_credentials")
def revoke_credentials(call: Call) -> dict:
    return {"revoked": get_state().auth.revoke_credentials(call.data["access_key"], call.user, call.company)}


@endpoint("auth.edit_user")
def edit_user(call: Call) -> dict:
    role = call.data["role"]
    updated = get_state().auth.set_role(call.identity, call.data["user"], role)
    return {"updated": updated, "fields": {"role": role} if updated else {}}


@endpoint("auth.obtain_token")
def obtain_token(call: Call) -> dict:
    state = get_state()
    identity = state.auth.sign_in(call.data, call.remote_addr)
    return {"access": state.tokens.issue(identity), "token_type": "Bearer",
            "expires_in": state.tokens.default_expiration_sec,
            "workspace": {"id": identity.company, "name": identity.company_name}}


@endpoint("auth.workspaces")
def workspaces(call: Call) -> list:
    ident = call.identity
    return [{"id": ident.company, "name": ident.company_name, "role": ident.role,
             "registry_role": ident.registry_role}]


@endpoint("auth.create_user")
def create_user(call: Call) -> dict:
    data = call.data
    user = get_state().auth.create_user_in_company(
        call.identity, data["company"], data["name"], data["email"], role=data.get("role", "user"),
        given_name=data.get("given_name"), family_name=data.get("family_name"))
    return {"id": user.id}
