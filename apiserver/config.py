"""Owns the server configuration: HOCON defaults, layered config folders and env overrides.

Files under ``config/default/`` are read first; each file is one section named after the file
(``database.conf`` -> ``database.*``). Folders listed in ``APISERVER_CONFIG_DIR`` (separated by
``os.pathsep``) are layered on top in order. Finally every environment variable of the form
``APISERVER__section__key[__subkey...]=value`` overrides one key; the value is parsed as HOCON, so
``APISERVER__apiserver__listen__port=9000`` is a number and ``...=true`` a boolean.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyhocon import ConfigFactory, ConfigTree
from pyhocon.exceptions import ConfigException

from apiserver.plain import to_plain

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "config" / "default"
ENV_PREFIX = "APISERVER__"
ENV_CONFIG_DIRS = "APISERVER_CONFIG_DIR"


class ConfigError(RuntimeError):
    """The configuration cannot be loaded; the message names the file or variable."""


_SCALAR = re.compile(r"^(true|false|null|yes|no|on|off|[+-]?\d+(\.\d+)?([eE][+-]?\d+)?)$")


def _parse_value(name: str, raw: str) -> Any:
    """Numbers, booleans, null, lists and objects are parsed as HOCON; anything else stays a string.

    Plain strings are never run through the HOCON parser: it would cut a secret at ``#`` or ``//``.
    """
    text = raw.strip()
    if not (_SCALAR.match(text) or text[:1] in "[{"):
        return raw
    try:
        return to_plain(ConfigFactory.parse_string(f"v = {text}")["v"])
    except Exception as exc:  # pyparsing raises many kinds
        raise ConfigError(f"cannot parse environment variable {name}={raw!r}: {exc}") from exc


def _load_dir(tree: ConfigTree, folder: Path) -> ConfigTree:
    for path in sorted(folder.glob("*.conf")):
        try:
            section = ConfigFactory.parse_file(str(path), resolve=True)
        except Exception as exc:  # pyparsing and pyhocon raise many kinds
            raise ConfigError(f"cannot parse config file {path}: {exc}") from exc
        merged = ConfigTree.merge_configs(ConfigTree({path.stem: tree.get(path.stem, ConfigTree())}),
                                          ConfigTree({path.stem: section}))
        tree.put(path.stem, merged[path.stem], append=False)
    return tree



class Config(Mapping):
    """A read-only view of the merged configuration with dotted-path lookups."""

    def __init__(self, data: dict[str, Any]):
        self._data = data

    def get(self, path: str, default: Any = None) -> Any:  # type: ignore[override]
        node: Any = self._data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def __getitem__(self, path: str) -> Any:
        marker = object()
        value = self.get(path, marker)
        if value is marker:
            raise KeyError(path)
        return value

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def as_dict(self) -> dict[str, Any]:
        return to_plain(self._data)



def _set_path(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def load_config(env: Mapping[str, str] | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load defaults, then APISERVER_CONFIG_DIR folders, then env overrides, then ``overrides``."""
    env = os.environ if env is None else env
    tree = ConfigTree()
    try:
        _load_dir(tree, DEFAULT_DIR)
        for folder in filter(None, env.get(ENV_CONFIG_DIRS, "").split(os.pathsep)):
            if not Path(folder).is_dir():
                raise ConfigError(f"{ENV_CONFIG_DIRS} names {folder!r}, which is not a folder")
            _load_dir(tree, Path(folder))
    except ConfigException as exc:
        raise ConfigError(str(exc)) from exc
    data = to_plain(tree)
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p for p in name[len(ENV_PREFIX):].split("__") if p]
        if not parts:
            raise ConfigError(f"environment variable {name} names no config key")
        _set_path(data, parts, _parse_value(name, raw))
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted.split("."), value)
    return Config(data)
