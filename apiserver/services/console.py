"""Handlers of the console service: what the console's pages ask before they draw their buttons."""

from __future__ import annotations

from apiserver.apierrors import APIError, errors
from apiserver.service_repo import Call, endpoint
from apiserver.service_repo.auth import Authenticator
from apiserver.state import get_state


@endpoint("console.get_permissions")
def get_permissions(call: Call) -> dict:
    specs, ident = get_state().specs, call.identity
    allowed = {}
    for i, name in enumerate(call.data["endpoints"]):
        spec = specs.resolve(name, None) if name in specs else None
        if spec is None or spec.internal:
            raise errors.bad_request.ValidationError(f"field 'endpoints.{i}': no endpoint {name!r} (rule: enum)",
                                                     error_data={"field": f"endpoints.{i}", "rule": "enum"})
        try:
            Authenticator.check_role(spec, ident)  # the dispatcher's own rule, not a copy of it
            allowed[name] = True
        except APIError:
            allowed[name] = False
    return {"user": {"id": ident.user, "name": ident.user_name, "role": ident.role},
            "company": {"id": ident.company, "name": ident.company_name}, "allowed": allowed}
