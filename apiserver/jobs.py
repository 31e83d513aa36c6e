"""Owns the periodic background jobs of the deployment (run by the scheduler lease holder)."""

from __future__ import annotations

import logging

from apiserver.scheduler import periodic
from apiserver.state import ServerState

log = logging.getLogger(__name__)


@periodic("stop_non_responsive_tasks", "tasks.non_responsive_check_sec")
def stop_non_responsive_tasks(state: ServerState) -> None:
    stopped = state.tasks.stop_non_responsive(int(state.config["tasks.non_responsive_timeout_sec"]))
    if stopped:
        log.info("stopped %d non-responsive tasks", stopped)


@periodic("fold_task_progress", "tasks.progress_fold_sec")
def fold_task_progress(state: ServerState) -> None:
    state.tasks.fold_progress()


@periodic("expire_workers", "workers.expiry_check_sec")
def expire_workers(state: ServerState) -> None:
    expired = state.workers.expire()
    if expired:
        log.info("%d workers expired (no report within their timeout)", expired)


@periodic("expire_serving_containers", "serving.expiry_check_sec")
def expire_serving_containers(state: ServerState) -> None:
    expired = state.serving.expire()
    if expired:
        log.info("%d serving containers dropped (no report within their timeout)", expired)


@periodic("sample_queue_metrics", "queues.metrics_sample_sec")
def sample_queue_metrics(state: ServerState) -> None:
    state.queues.sample_metrics()


@periodic("release_silent_render_workers", "manager.timeout_check_sec")
def release_silent_render_workers(state: ServerState) -> None:
    released = state.manager.release_silent_workers()
    if released:
        log.info("%d render tasks went back to waiting (their workers went silent)", released)


@periodic("pipeline_heartbeat", "pipeline.heartbeat_sec")
def pipeline_heartbeat(state: ServerState) -> None:
    state.pipelines.beat()


@periodic("expire_events", "events.retention_check_sec")
def expire_events(state: ServerState) -> None:
    settings = state.settings.events
    done = state.deletion.expire_events(settings.retention_days, settings.retention_batch)
    if done["tasks"]:
        log.info("events retention: the events of %d tasks deleted (%d events, %d files queued)",
                 done["tasks"], done["events"], done["files"])


@periodic("delete_files_of_deleted_owners", "files.delete_check_sec")
def delete_files_of_deleted_owners(state: ServerState) -> None:
    done, failed = state.files.process_due_deletions()
    if done or failed:
        log.info("files of deleted tasks and models: %d deleted, %d to retry", done, failed)


@periodic("sweep_unfinished_uploads", "files.incoming_sweep_sec")
def sweep_unfinished_uploads(state: ServerState) -> None:
    removed = state.files.store.sweep_incoming(state.settings.files.incoming_max_age_sec)
    if removed:
        log.info("removed %d uploads that never finished", removed)
