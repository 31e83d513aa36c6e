"""Owns how handlers of tagged objects (tasks, models, projects) serve clients before API 2.3, which
sent and read system tags inside tags (the rule: ``bll/tags.py``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from apiserver.bll.tags import SYSTEM_TAGS_IN_TAGS_BEFORE, merge_legacy_tags, split_legacy_tags
from apiserver.service_repo import Call


def legacy_tags(kind: str) -> Callable[[Callable[[Call], Any]], Callable[[Call], Any]]:
    """A handler whose old callers' tags are split into tags and system_tags, and whose answer shows
    them merged again, for calls at a version before 2.3 (``kind``: task, model or project)."""
    def wrap(handler: Callable[[Call], Any]) -> Callable[[Call], Any]:
        @functools.wraps(handler)
        def serve(call: Call) -> Any:
            if not call.requested_before(SYSTEM_TAGS_IN_TAGS_BEFORE):
                return handler(call)
            return merge_legacy_tags(handler(dataclasses.replace(call, data=split_legacy_tags(kind, call.data))))
        return serve
    return wrap
