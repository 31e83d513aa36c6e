"""Owns turning HTTP requests into validated handler calls: binding, auth, dispatch, envelopes."""

from apiserver.service_repo.call import Call, Identity
from apiserver.service_repo.endpoint import endpoint

__all__ = ["Call", "Identity", "endpoint"]
