"""Handlers of the events service."""

from __future__ import annotations

from apiserver import metrics
from apiserver.bll.events.events import DEBUG_IMAGE, PLOT
from apiserver.service_repo import Call, endpoint
from apiserver.state import get_state


def _events():
    return get_state().events


def _counted(result: dict) -> dict:
    metrics.count_events_stored(result.get("added", 0))
    return result


@endpoint("events.add")
def add(call: Call) -> dict:
    return _counted(_events().add_events(call.identity, [call.data]))


@endpoint("events.add_batch")
def add_batch(call: Call) -> dict:
    return _counted(_events().add_events(call.identity, call.batched_data))


@endpoint("events.get_task_log")
def get_task_log(call: Call) -> dict:
    return _events().get_task_log(call.company, call.data)


@endpoint("events.download_task_log")
def download_task_log(call: Call) -> str:
    return "".join(_events().task_log_text(call.company, call.data))


@endpoint("events.clear_task_log")
def clear_task_log(call: Call) -> dict:
    return _events().clear_task_log(call.company, call.data)


@endpoint("events.get_task_events")
def get_task_events(call: Call) -> dict:
    return _events().get_task_events(call.company, call.data)


@endpoint("events.get_scalar_metrics_and_variants")
def get_scalar_metrics_and_variants(call: Call) -> dict:
    return {"metrics": _events().metrics_and_variants(call.company, call.data["task"],
                                                      call.data.get("model_events", False))}


@endpoint("events.scalar_metrics_iter_histogram")
def scalar_metrics_iter_histogram(call: Call) -> dict:
    return _events().scalar_histogram(call.company, call.data)


@endpoint("events.multi_task_scalar_metrics_iter_histogram")
def multi_task_scalar_metrics_iter_histogram(call: Call) -> dict:
    return {"metrics": _events().multi_task_histogram(call.company, call.data)}


@endpoint("events.scalar_metrics_iter_raw")
def scalar_metrics_iter_raw(call: Call) -> dict:
    return _events().scalar_iter_raw(call.company, call.data)


@endpoint("events.get_scalar_metric_data")
def get_scalar_metric_data(call: Call) -> dict:
    return _events().scalar_metric_data(call.company, call.data)


@endpoint("events.get_task_latest_scalar_values")
def get_task_latest_scalar_values(call: Call) -> dict:
    return _events().latest_scalar_values(call.company, call.data["task"])


@endpoint("events.get_task_single_value_metrics")
def get_task_single_value_metrics(call: Call) -> dict:
    return {"tasks": _events().single_value_metrics(call.company, call.data)}


@endpoint("events.get_task_metrics")
def get_task_metrics(call: Call) -> dict:
    return {"metrics": _events().task_metrics(call.company, call.data)}


@endpoint("events.get_multi_task_metrics")
def get_multi_task_metrics(call: Call) -> dict:
    return {"metrics": _events().multi_task_metrics(call.company, call.data)}


@endpoint("events.get_task_plots")
def get_task_plots(call: Call) -> dict:
    return _events().task_plots(call.company, call.data)


@endpoint("events.get_multi_task_plots")
def get_multi_task_plots(call: Call) -> dict:
    return _events().multi_task_plots(call.company, call.data)


@endpoint("events.get_plot_sample")
def get_plot_sample(call: Call) -> dict:
    return _events().sample(call.company, call.data, PLOT)


@endpoint("events.next_plot_sample")
def next_plot_sample(call: Call) -> dict:
    return _events().next_sample(call.company, call.data, PLOT)


@endpoint("events.get_debug_image_sample")
def get_debug_image_sample(call: Call) -> dict:
    return _events().sample(call.company, call.data, DEBUG_IMAGE)


@endpoint("events.next_debug_image_sample")
def next_debug_image_sample(call: Call) -> dict:
    return _events().next_sample(call.company, call.data, DEBUG_IMAGE)


@endpoint("events.debug_images")
def debug_images(call: Call) -> dict:
    return _events().metric_events(call.company, call.data, DEBUG_IMAGE)


@endpoint("events.plots")
def plots(call: Call) -> dict:
    return _events().metric_events(call.company, call.data, PLOT)


@endpoint("events.delete_for_task")
def delete_for_task(call: Call) -> dict:
    return _events().delete_task_events(call.company, call.data["task"])
