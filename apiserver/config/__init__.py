"""Owns the server configuration: HOCON defaults, layered config folders and env overrides.

Files under ``apiserver/config/default/`` (inside the package) are read first; each file is one
section named after the file (``database.conf`` -> ``database.*``). Folders listed in
``APISERVER_CONFIG_DIR`` (separated by ``os.pathsep``) are layered on top in order. Finally every
environment variable of the form ``APISERVER__section__key[__subkey...]=value`` overrides one key;
the value is parsed as HOCON, so ``APISERVER__apiserver__listen__port=9000`` is a number and
``...=true`` a boolean.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyhocon import ConfigFactory, ConfigTree
from pyhocon.exceptions import ConfigException

from apiserver.plain import to_plain

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
ENV_PREFIX = "APISERVER__"
ENV_CONFIG_DIRS = "APISERVER_CONFIG_DIR"


class ConfigError(RuntimeError):
    """The configuration cannot be loaded; the message names the file or variable."""


# Maps whose keys are names the operator chooses (member ids, compiler names): any key is allowed
# below them. Every other key of a layered file or an environment override must be one the
# defaults in apiserver/config/default/ declare, so that a misspelled key stops start-up instead of being
# silently ignored.
OPEN_MAPS = ("pipeline.member_ports", "pipeline.member_urls", "manager.compilers")


def _unknown_keys(defaults: Mapping[str, Any], data: Mapping[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            found.append(path)
        elif isinstance(defaults[key], dict) and isinstance(value, dict) and path not in OPEN_MAPS:
            found += _unknown_keys(defaults[key], value, path + ".")
    return found


def _check_known(defaults: Mapping[str, Any], data: Mapping[str, Any], source: str) -> None:
    unknown = _unknown_keys(defaults, data)
    if unknown:
        hints = []
        for path in unknown:
            parent, _, leaf = path.rpartition(".")
            node: Any = defaults
            for part in filter(None, parent.split(".")):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            close = difflib.get_close_matches(leaf, list(node) if isinstance(node, dict) else [], n=1)
            hints.append(f"'{path}'" + (f" (did you mean '{parent + '.' if parent else ''}{close[0]}'?)"
                                         if close else ""))
        raise ConfigError(f"unknown config key{'s' if len(unknown) > 1 else ''} in {source}: "
                          f"{', '.join(hints)}; the known keys are those of apiserver/config/default/")


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
        defaults = to_plain(tree)
        for folder in filter(None, env.get(ENV_CONFIG_DIRS, "").split(os.pathsep)):
            if not Path(folder).is_dir():
                raise ConfigError(f"{ENV_CONFIG_DIRS} names {folder!r}, which is not a folder")
            layer = _load_dir(ConfigTree(), Path(folder))
            _check_known(defaults, to_plain(layer), f"config folder {folder}")
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
        override: dict[str, Any] = {}
        _set_path(override, parts, _parse_value(name, raw))
        _check_known(defaults, override, f"environment variable {name}")
        _set_path(data, parts, _parse_value(name, raw))
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted.split("."), value)
    return Config(data)
