"""Owns building the stores of task events from the ``events`` settings (block and overview sizes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apiserver.database.events.events import EventStore
from apiserver.database.events.logs import LogStore
from apiserver.database.events.scalars import ScalarStore


@dataclass(frozen=True)
class EventStores:
    """The stores of task events, one per shape."""

    scalars: ScalarStore
    logs: LogStore
    events: EventStore  # plots, debug images and vectors (and events of the shape before blocks)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EventStores:
        return cls(ScalarStore(int(config["scalar_block_iterations"]), int(config["scalar_overview_groups"]),
                               int(config["scalar_coarse_groups"]), int(config["scalar_fold_every"]),
                               int(config["scalar_fold_points"])),
                   LogStore(int(config["log_block_lines"]), int(config["log_block_bytes"])), EventStore())

    def ensure_indexes(self) -> None:
        self.scalars.ensure_indexes()
        self.logs.ensure_indexes()
