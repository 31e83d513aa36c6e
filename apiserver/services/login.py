"""Handlers of the login service: the sign-in modes the ClearML web app asks for, and signing out."""

from __future__ import annotations

from apiserver.apierrors import APIError
from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("login.supported_modes")
def supported_modes(call: Call) -> dict:
    authenticated = False
    if call.cookie_token:
        try:
            get_state().tokens.verify(call.cookie_token)
            authenticated = True
        except APIError:
            authenticated = False
    return {"authenticated": authenticated, "basic": {"enabled": True, "guest": {"enabled": False}},
            "sso": {}, "sso_providers": [], "server_errors": {"missed_es_upgrade": False,
                                                              "es_connection_error": False}}


@endpoint("login.logout")
def logout(call: Call) -> dict:
    cookie = get_state().session_cookie
    call.set_cookies.append((cookie.name, None, cookie.attributes(call.secure_transport or cookie.secure)))
    return {}
