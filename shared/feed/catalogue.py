"""The event catalogue: each service registers its own event types (`services/<service>/events.py`).

A type is `<service>.<thing>.<change>`; its first part names the service's schema, whose outbox
holds it. `emit()` refuses a type no service registered; `GET /v1/events/types` lists a service's.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SERVICE_SCHEMAS = ("registry", "eligibility", "vouchers")

#: every registered type and its description, in registration order
EVENT_TYPES: dict[str, str] = {}


@dataclass(frozen=True)
class EventCatalogue:
    """One service's event types and their descriptions."""

    service: str
    types: Mapping[str, str]


def register_catalogue(service: str, types: Mapping[str, str]) -> EventCatalogue:
    """Register a service's event types (each `<service>.…`); registering the same again is a no-op."""
    if service not in SERVICE_SCHEMAS:
        raise ValueError(f"unknown service {service!r}")
    for name, description in types.items():
        if not name.startswith(service + "."):
            raise ValueError(f"event type {name!r} is not one of {service}'s")
        if EVENT_TYPES.setdefault(name, description) != description:
            raise ValueError(f"event type {name!r} registered twice, with different descriptions")
    return EventCatalogue(service, dict(types))


def service_types(service: str) -> list[str]:
    return [name for name in EVENT_TYPES if name.startswith(service + ".")]


def schema_of(event_type: str) -> str:
    schema = event_type.split(".", 1)[0]
    if schema not in SERVICE_SCHEMAS or event_type not in EVENT_TYPES:
        raise ValueError(
            f"unknown event type {event_type!r} (add it to its service's catalogue, services/{schema}/events.py)"
        )
    return schema


def type_matches(patterns: Sequence[str], event_type: str) -> bool:
    """No patterns: everything. A pattern is a type, or a prefix ending in `.*` (`vouchers.hold.*`)."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern.endswith(".*"):
            if event_type.startswith(pattern[:-1]):
                return True
        elif pattern == event_type:
            return True
    return False
