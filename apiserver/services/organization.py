"""Handlers of ClearML's organization service."""

from __future__ import annotations

from flask import Response, stream_with_context

from apiserver.bll.organization.counts import KINDS
from apiserver.bll.projects import contents, usages
from apiserver.schema.normalize import validated_request
from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


@endpoint("organization.get_tags")
def get_tags(call: Call) -> dict:
    return contents.organization_tags(call.company, (call.data.get("filter") or {}).get("system_tags"),
                                      bool(call.data.get("include_system")))


# What prepare_download_for_get_all reads itself; the rest of its body is the table's listing request.
EXPORT_FIELDS = ("entity_type", "only_fields", "field_mappings")


def _listing_filter(listing: str, data: dict, prefix: str = "") -> dict:
    """A listing request embedded in another one, checked against ``<listing>.get_all_ex``'s own
    declared request (the .conf stays its one schema)."""
    return validated_request(get_state().specs.resolve(f"{listing}.get_all_ex", None), data, prefix)


@endpoint("organization.prepare_download_for_get_all")
def prepare_download_for_get_all(call: Call) -> dict:
    """Check the listing part against the entity's own get_all_ex request, then keep it."""
    state = get_state()
    entity = call.data["entity_type"]
    query = _listing_filter(f"{entity}s", {k: v for k, v in call.data.items() if k not in EXPORT_FIELDS})
    return {"prepare_id": state.export.prepare(call.identity, entity, query, call.data["field_mappings"])}


@endpoint("organization.download_for_get_all")
def download_for_get_all(call: Call) -> Response:
    name, chunks = get_state().export.rows(call.identity, call.data["prepare_id"])
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers.set("Content-Disposition", "attachment", filename=name)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.cache_control.no_store = True
    return response


@endpoint("organization.get_entities_count")
def get_entities_count(call: Call) -> dict:
    """Each entity's filter is checked against its own listing's get_all_ex request, then counted."""
    filters = {entity: _listing_filter(KINDS[entity], dict(flt), f"{entity}.")
               for entity, flt in call.data.items() if entity in KINDS and flt is not None}
    common = {k: call.data[k] for k in ("search_hidden", "allow_public") if call.data.get(k) is not None}
    return get_state().counts.count(call.company, filters, common)


@endpoint("organization.get_user_companies")
def get_user_companies(call: Call) -> dict:
    owners = get_state().auth.company_members(call.company)
    return {"companies": [{"id": call.company, "name": call.identity.company_name, "allocated": len(owners),
                           "owners": owners}]}


@endpoint("organization.get_project_usages")
def get_project_usages(call: Call) -> dict:
    data = call.data
    return usages.project_usages(call.company, data["projects"], data["from_date"], data.get("to_date"),
                                 bool(data.get("include_development")), data.get("breakdown_keys"),
                                 data.get("usage_fields"))
