"""Handlers of ClearML's pipelines service (pipeline runs in the web app): each hands the validated
call to PipelineRunBLL. Our own pipeline leader is the `workflows` service."""

from __future__ import annotations

from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _runs():
    return get_state().pipeline_runs


@endpoint("pipelines.start_pipeline")
def start_pipeline(call: Call) -> dict:
    return _runs().start(call.identity, call.data)


@endpoint("pipelines.check_new_run")
def check_new_run(call: Call) -> dict:
    return _runs().check_new_run(call.company, call.data)


@endpoint("pipelines.delete_runs")
def delete_runs(call: Call) -> dict:
    return _runs().delete_runs(call.identity, call.data, call.host)
