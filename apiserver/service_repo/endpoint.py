"""Owns binding handler functions to declared endpoints (``@endpoint("tasks.create")``)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apiserver.schema.loader import SpecError, SpecRegistry, Version, format_version, parse_version

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Binding:
    name: str
    min_version: Version | None
    handler: Handler


_BINDINGS: list[Binding] = []


def endpoint(name: str, min_version: str | None = None) -> Callable[[Handler], Handler]:
    """Register ``fn(call)`` as the handler of ``name`` for every version >= ``min_version``."""
    parsed = parse_version(min_version) if min_version is not None else None
    if min_version is not None and parsed is None:
        raise ValueError(f"@endpoint({name!r}): bad min_version {min_version!r}")

    def register(fn: Handler) -> Handler:
        _BINDINGS.append(Binding(name, parsed, fn))
        return fn

    return register


def import_handlers(package: str = "apiserver.services") -> None:
    """Import every handler module of ``package`` so their decorators run."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")


def bind_handlers(registry: SpecRegistry, bindings: list[Binding] | None = None) -> dict[tuple[str, Version], Handler]:
    """Map every declared (endpoint, version) to exactly one handler, or raise SpecError."""
    bindings = _BINDINGS if bindings is None else bindings
    by_name: dict[str, list[Binding]] = {}
    for binding in bindings:
        group = by_name.setdefault(binding.name, [])
        if any(b.min_version == binding.min_version and b.handler is not binding.handler for b in group):
            first = next(b for b in group if b.min_version == binding.min_version)
            raise SpecError(f"endpoint {binding.name}: two handlers ({_where(first.handler)} and "
                            f"{_where(binding.handler)})")
        if all(b.handler is not binding.handler for b in group):
            group.append(binding)
    unknown = sorted(set(by_name) - set(registry.names()))
    if unknown:
        name = unknown[0]
        raise SpecError(f"handler {_where(by_name[name][0].handler)} is bound to {name}, "
                        f"which no service file declares")
    table: dict[tuple[str, Version], Handler] = {}
    for spec in registry.all():
        candidates = [b for b in by_name.get(spec.name, [])
                      if b.min_version is None or b.min_version <= spec.version]
        if not candidates:
            raise SpecError(f"{spec.source}: endpoint {spec.name} version {spec.version_str} has no handler")
        best = max(candidates, key=lambda b: b.min_version or (0, 0))
        table[(spec.name, spec.version)] = best.handler
    return table


def _where(fn: Handler) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


__all__ = ["endpoint", "import_handlers", "bind_handlers", "Binding", "format_version"]
