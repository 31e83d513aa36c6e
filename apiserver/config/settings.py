"""Owns the typed settings the business rules read: one frozen object per config section, built once
from the merged config (``Settings.from_config``), so ``bll/`` never reads raw keys or converts values.

Each field's type says how its value is read (``int(...)``, ``float(...)``, ``bool(...)``, a tuple,
a plain dict). The values, defaults included, come from the config alone (``apiserver/config/default``
declares every key): a value that cannot be read so fails here, at start-up, naming its key.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any

from apiserver.config import Config, ConfigError

ADMIN_CREDENTIALS = "admin_credentials.json"  # the generated admin's keys, in the data folder by default


def _read(cls: type, section: str, data: Mapping[str, Any]) -> Any:
    """An instance of the settings dataclass ``cls`` from a config section's dict."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            raise ConfigError(f"{section}.{field.name} is not set (apiserver/config/default declares it)")
        raw, kind = data[field.name], hints[field.name]
        try:
            if kind in (int, float, str):
                values[field.name] = kind(raw)
            elif kind is bool:
                values[field.name] = bool(raw)
            elif typing.get_origin(kind) is tuple:
                values[field.name] = tuple(raw or ())
            elif typing.get_origin(kind) is dict:
                values[field.name] = dict(raw or {})
            else:
                values[field.name] = raw
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{section}.{field.name}: {raw!r} is not a valid {kind}: {exc}") from None
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """``pipeline.*``: the members the operator declares and how the leader calls them."""
    member_host: str
    member_ports: dict[str, int]
    member_urls: dict[str, str]
    default_workflow: tuple[str, ...]
    heartbeat_sec: float
    connect_timeout_sec: float
    read_timeout_sec: float
    max_missed_beats: int
    max_concurrent_calls: int
    reports_from_member_host_only: bool

    @property
    def timeout(self) -> tuple[float, float]:
        return self.connect_timeout_sec, self.read_timeout_sec


@dataclasses.dataclass(frozen=True)
class OutboundSettings:
    """``outbound.*``: the guarded client for the server's own calls."""
    allow_hosts: tuple[str, ...]
    max_response_bytes: int
    connect_timeout_sec: float
    read_timeout_sec: float

    @property
    def timeout(self) -> tuple[float, float]:
        return self.connect_timeout_sec, self.read_timeout_sec


@dataclasses.dataclass(frozen=True)
class FilesSettings:
    """``files.*``: the file server's limits, who reads, and when deleted files go."""
    backend: str
    local: dict[str, Any]
    gridfs: dict[str, Any]
    max_upload_size_mb: float
    public_read: bool
    server_urls: tuple[str, ...]
    delete_delay_sec: float
    delete_check_sec: float
    incoming_max_age_sec: float
    incoming_sweep_sec: float

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_size_mb * 1024 * 1024)


@dataclasses.dataclass(frozen=True)
class ManagerSettings:
    """``manager.*``: the render manager's compilers, parsers and worker timeout."""
    worker_timeout_sec: int
    timeout_check_sec: int
    compilers: dict[str, dict[str, Any]]
    parsers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """``serving.*``: model endpoints reported by serving containers."""
    default_container_timeout_sec: int
    container_auto_register: bool
    container_auto_unregister: bool
    min_chart_interval_sec: int
    max_chart_points: int
    expiry_check_sec: int


@dataclasses.dataclass(frozen=True)
class RegistrySettings:
    """``registry.*``: the connector allowlists and the limits of registered models."""
    registry_connectors: tuple[dict[str, str], ...]
    server_proxies: tuple[dict[str, str], ...]
    max_explainers: int
    secrets_key: str
    max_schema_bytes: int


@dataclasses.dataclass(frozen=True)
class AuthSettings:
    """``auth.*``: tokens, the sign-in throttle, the users the operator declares, the generated admin."""
    token_secret: str
    token_expiration_sec: int
    max_token_expiration_sec: int
    token_recheck_sec: float
    session_cookie: dict[str, Any]
    sign_in_throttle: dict[str, int]
    fixed_users: Any  # a list of user objects; AuthBLL.bootstrap checks its shape and says what is wrong
    default_company: dict[str, str]
    generated_credentials_file: str
    bcrypt_rounds: int

    def credentials_path(self, data_dir: str) -> str:
        """Where the generated admin's keys are written: ``generated_credentials_file``, else the data
        folder's ``admin_credentials.json`` (the server writes there, a backup reads there)."""
        return self.generated_credentials_file or os.path.join(data_dir, ADMIN_CREDENTIALS)


@dataclasses.dataclass(frozen=True)
class EventsSettings:
    """``events.*``: the sizes of the events' blocks and overviews, and a chart's default samples."""
    scalar_block_iterations: int
    scalar_overview_groups: int
    scalar_coarse_groups: int
    histogram_default_samples: int
    log_block_lines: int
    log_block_bytes: int
    scalar_fold_every: int
    scalar_fold_points: int
    retention_days: int
    retention_batch: int


SECTIONS = {"auth": AuthSettings, "events": EventsSettings, "pipeline": PipelineSettings,
            "outbound": OutboundSettings, "files": FilesSettings, "manager": ManagerSettings,
            "serving": ServingSettings, "registry": RegistrySettings}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every section's settings, as the server builds them once at start-up."""
    auth: AuthSettings
    events: EventsSettings
    pipeline: PipelineSettings
    outbound: OutboundSettings
    files: FilesSettings
    manager: ManagerSettings
    serving: ServingSettings
    registry: RegistrySettings

    @classmethod
    def from_config(cls, config: Config | Mapping[str, Any]) -> Settings:
        return cls(**{name: _read(kind, name, config.get(name) or {}) for name, kind in SECTIONS.items()})
