"""The registry's events (shared/feed): `registry.<entity>.created` and `registry.<entity>.changed`.

Written by `records.py` and `upserts.py` in the same transaction as the change (single writes
and imports alike), one per new version. The payload is the record's key, its new version and the
snapshot that version records (as `GET …/history` shows it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal, Protocol

from shared.feed.catalogue import register_catalogue
from shared.feed.outbox import NewEvent

Change = Literal["created", "changed"]

ENTITIES = ("organisation", "revenue", "affiliation", "vendor", "model", "filing", "recognition")

#: the registry's event types (GET /v1/events/types)
CATALOGUE = register_catalogue(
    "registry",
    {
        f"registry.{entity}.{change}": f"A registry {entity} was {'recorded' if change == 'created' else 'changed'}"
        for entity in ENTITIES
        for change in ("created", "changed")
    },
)


class Resource(Protocol):
    """What an event needs of a kind of record (`kinds.Resource`)."""

    @property
    def entity(self) -> str: ...

    @property
    def key(self) -> tuple[str, ...]: ...

    def key_label(self, key: Mapping[str, Any]) -> str: ...


def record_event(
    resource: Resource,
    change: Change,
    snapshot: Mapping[str, Any],
    row_keys: Mapping[str, Any],
    version: int,
    valid_from: date,
) -> NewEvent:
    data = {**snapshot, **row_keys}
    organisation = data.get("credit_code") or data.get("vendor_credit_code")
    vendor = data.get("credit_code") if resource.entity == "vendor" else data.get("vendor_credit_code")
    return NewEvent(
        type=f"registry.{resource.entity}.{change}",
        subject=resource.key_label(data),
        payload={
            "entity": resource.entity,
            "key": {name: data[name] for name in resource.key},
            "version": version,
            "valid_from": valid_from,
            "data": dict(snapshot),
        },
        organisation=str(organisation) if organisation else None,
        vendor=str(vendor) if vendor else None,
    )
