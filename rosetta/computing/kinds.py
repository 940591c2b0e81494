"""The kinds of backend pieces a resource composes: transports, schedulers and engines, by name.

A kind is one object (``Kind``) declared by the module that implements it: its role, its name
(the value stored on a Resource), its label, the schema of its options (pydantic, stored as JSON
on the Resource), the factory that builds it, and its say on a resource: which combinations it
accepts, what ``resources check`` learns through it, which task requests it refuses.

Kinds come from two places: the built-in ones listed below (so a checkout runs without its
package metadata refreshed), and the entry points of group ``rosetta.backends`` of every installed
distribution (pyproject.toml declares the built-in ones there too, for packaging). An installed
kind of the same role and name as a built-in one replaces it. Nothing else in the platform names a
kind: it asks the registry.

Kinds are loaded once per process, on first use, under a lock (threads of Django's ask at once).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

from django.core.exceptions import ValidationError
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as SchemaError

GROUP = "rosetta.backends"
ROLES = ("transport", "scheduler", "engine")
Role = Literal["transport", "scheduler", "engine"]
BUILT_IN = (
    "rosetta.computing.transports.local:KIND",
    "rosetta.computing.transports.ssh:KIND",
    "rosetta.computing.schedulers.direct:KIND",
    "rosetta.computing.schedulers.slurm:KIND",
    "rosetta.computing.engines.podman:KIND",
    "rosetta.computing.engines.docker:KIND",
    "rosetta.computing.engines.apptainer:KIND",
)

log = logging.getLogger(__name__)


class Options(BaseModel):
    """A kind's options: unknown ones are refused, every value is validated."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(Options):
    pass


@dataclass(frozen=True)
class Combination:
    """The three kinds a resource composes, as a kind's ``validate`` sees them."""

    transport: Kind
    scheduler: Kind
    engine: Kind


@dataclass(frozen=True)
class Kind:
    role: Role
    name: str  # what a Resource stores (at most 16 characters)
    label: str  # what people read
    # transport: (resource, user) -> Transport; engine: (resource) -> Engine;
    # scheduler: (transport, engine, resource) -> Backend.
    factory: Callable[..., Any]
    options: type[Options] = NoOptions
    # Raise ValidationError when this kind cannot serve the resource as composed (its other fields included).
    validate: Callable[[Any, Combination], None] | None = None
    # transport: `resources check`'s first step, before anything is built (an SSH host's key):
    # (resource, report, pin) -> whether the check goes on; ``pin`` is awaited with a key to trust.
    precheck: Callable[[Any, Any, Callable[[Any], Awaitable[None]] | None], Awaitable[bool]] | None = None
    # What `resources check` learns through the built backend (a scheduler's partitions): fills the report.
    check: Callable[[Any, Any], Awaitable[None]] | None = None
    # Raise ValidationError when a task's request does not fit what the last check found.
    check_request: Callable[..., None] | None = None
    # transport: the machine's own engine (only the controller of the resource's node drives it).
    local: bool = False
    # scheduler: tasks are batch jobs (they take a partition, a time limit: its request options).
    batch: bool = False
    # scheduler: the schema of what a task may ask of it (a subset of its options: per-task values).
    request: type[Options] = NoOptions
    extra: dict = field(default_factory=dict)  # anything a kind wants to say about itself

    def parse_options(self, values: dict | None) -> Options:
        """The options validated, or a ValidationError naming each bad option."""
        return parse(self.options, values, f"{self.label} ({self.role})")


def parse(schema: type[Options], values: dict | None, whose: str) -> Options:
    try:
        return schema.model_validate(values or {})
    except SchemaError as error:
        problems = []
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "options"
            message = "unknown option" if problem["type"] == "extra_forbidden" else problem["msg"]
            problems.append(f"{where}: {message}")
        raise ValidationError(f"Bad options for {whose}: {'; '.join(problems)}.") from None


_kinds: dict[tuple[str, str], Kind] | None = None
_loading = threading.Lock()


def _load() -> dict[tuple[str, str], Kind]:
    global _kinds
    if _kinds is not None:
        return _kinds
    with _loading:
        if _kinds is None:
            found: dict[tuple[str, str], Kind] = {}
            for reference in BUILT_IN:
                module, _, attribute = reference.partition(":")
                _add(found, getattr(importlib.import_module(module), attribute), reference)
            for entry in entry_points(group=GROUP):
                if entry.value in BUILT_IN:
                    continue
                try:
                    _add(found, entry.load(), entry.value)
                except Exception:  # one broken plug-in must not take the platform down
                    log.exception("The backend kind %s (%s) could not be loaded.", entry.name, entry.value)
            _kinds = found
    return _kinds


def _add(found: dict[tuple[str, str], Kind], kind: object, reference: str) -> None:
    if not isinstance(kind, Kind) or kind.role not in ROLES or not kind.name or len(kind.name) > 16:
        log.error(
            "%s is not a backend kind (rosetta.computing.kinds.Kind, a name of at most 16 characters).", reference
        )
        return
    found[(kind.role, kind.name)] = kind


def reload() -> None:
    """Forget what was loaded (tests that install a kind into this process)."""
    global _kinds
    with _loading:
        _kinds = None


def of(role: Role) -> list[Kind]:
    """Every kind of ``role``, the built-in ones first."""
    return [kind for (kind_role, _), kind in _load().items() if kind_role == role]


def get(role: Role, name: str) -> Kind:
    """The kind, or a ValidationError saying which ones there are."""
    kind = _load().get((role, name))
    if kind is None:
        known = ", ".join(kind.name for kind in of(role))
        raise ValidationError(f"There is no {role} {name!r} here; there are: {known}.")
    return kind


def find(role: Role, name: str) -> Kind | None:
    return _load().get((role, name))


def label(role: Role, name: str) -> str:
    """How people read a kind's name (the name itself for a kind not installed here)."""
    kind = find(role, name)
    return kind.label if kind is not None else f"{name} (not installed)"


def choices(role: Role) -> list[tuple[str, str]]:
    """(name, label) of every kind of ``role``: a model field's or a form's choices."""
    return [(kind.name, kind.label) for kind in of(role)]


def transport_choices() -> list[tuple[str, str]]:
    return choices("transport")


def scheduler_choices() -> list[tuple[str, str]]:
    return choices("scheduler")


def engine_choices() -> list[tuple[str, str]]:
    return choices("engine")


def local_transports() -> list[str]:
    """The transports that reach this machine's own engine."""
    return [kind.name for kind in of("transport") if kind.local]


def transport_is_local(name: str) -> bool:
    """Whether the transport of that name reaches this machine's own engine."""
    kind = (_kinds or _load()).get(("transport", name))  # on the controller's every pass: no detour
    return kind is not None and kind.local


def combination(transport: str, scheduler: str, engine: str) -> Combination:
    return Combination(get("transport", transport), get("scheduler", scheduler), get("engine", engine))
