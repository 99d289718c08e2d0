"""The canonical form of an entry, its hashes and the chain's verifier: one implementation for the
service and the offline CLI (`python -m services.vouchers.verify`); no I/O."""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

CANONICAL_VERSION = "v1"
GENESIS = "0" * 64
ENTRY_FIELDS: tuple[str, ...] = (
    "id",
    "created_at",
    "kind",
    "from_account_id",
    "to_account_id",
    "amount_fen",
    "voucher_id",
    "redemption_id",
    "decision_id",
    "contract_ref",
    "actor",
    "parameters_digest",
    "reverses_entry_id",
    "request_id",
    "memo",
)
_INTEGER_FIELDS = frozenset(
    {"id", "from_account_id", "to_account_id", "amount_fen", "voucher_id", "redemption_id", "reverses_entry_id"}
)
_REQUIRED_FIELDS = frozenset({"id", "created_at", "kind", "from_account_id", "to_account_id", "amount_fen"})


class EntryFields(Protocol):
    """An entry's fields by name: a mapping (an exported line) or an asyncpg Record (a row); KeyError if absent."""

    def __getitem__(self, name: str, /) -> Any: ...


class CanonicalError(ValueError):
    """An entry that cannot be put in canonical form (only possible for data read from a file)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def canonical_timestamp(value: object) -> str:
    """UTC, ISO-8601, always with microseconds: `2026-11-27T02:45:05.953712Z`."""
    moment = value
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError as exc:
            raise CanonicalError("created_at", "not an ISO-8601 timestamp") from exc
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise CanonicalError("created_at", "needs a timestamp with a time zone")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError as exc:
        raise CanonicalError("created_at", "out of range") from exc
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _canonical_value(name: str, value: object) -> object:
    if value is None:
        if name in _REQUIRED_FIELDS:
            raise CanonicalError(name, "must not be null")
        return None
    if name == "created_at":
        return canonical_timestamp(value)
    if name in _INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CanonicalError(name, "must be an integer")
        return value
    if name == "decision_id":
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError as exc:
                raise CanonicalError(name, "not a UUID") from exc
        raise CanonicalError(name, "must be a UUID")
    if not isinstance(value, str):
        raise CanonicalError(name, "must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, only possible in a hand-made file
        raise CanonicalError(name, "not valid Unicode text") from exc
    return unicodedata.normalize("NFC", value)


def canonical_entry(entry: EntryFields) -> bytes:
    """The bytes that are hashed: `v1|` + the JSON array of `ENTRY_FIELDS` (see the module doc)."""
    values: list[object] = []
    for name in ENTRY_FIELDS:
        try:
            raw = entry[name]
        except KeyError as exc:
            raise CanonicalError(name, "missing") from exc
        values.append(_canonical_value(name, raw))
    body = json.dumps(values, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{CANONICAL_VERSION}|{body}".encode()


def entry_hash(entry: EntryFields) -> str:
    return hashlib.sha256(canonical_entry(entry)).hexdigest()


def chain_hash(previous: str, entry_digest: str) -> str:
    return hashlib.sha256((previous + entry_digest).encode("ascii")).hexdigest()


def export_entry(entry: EntryFields) -> dict[str, Any]:
    """An entry as JSON: exactly the hashed fields, as stored (not normalised)."""
    exported: dict[str, Any] = {}
    for name in ENTRY_FIELDS:
        value = entry[name]
        if name == "created_at":
            value = canonical_timestamp(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        exported[name] = value
    return exported


# --- verification of a stream of (seal, entry) pairs: the service and the CLI alike -----------

MismatchReason = Literal[
    "entry_changed",  # the entry no longer hashes to what was sealed
    "malformed_entry",  # the entry cannot even be put in canonical form (export files only)
    "entry_missing",  # a seal whose entry is gone
    "chain_broken",  # the stored chain hash is not the recomputed one (seal rewritten, removed, reordered)
    "out_of_order",  # seals not in (txid, id) / seq order
    "not_in_chain",  # a committed entry below the watermark that was never sealed
    "checkpoint_mismatch",  # a published checkpoint differs from the recomputed chain at its entry
    "checkpoint_count",  # … or counts a different number of entries
    "checkpoint_not_in_chain",  # a published checkpoint names an entry the chain does not contain
    "checkpoint_signature_invalid",  # a line of the checkpoint sink whose signature does not verify
]
CheckpointSource = Literal["database", "external"]


class Mismatch(BaseModel):
    """The first place where the ledger and its chain disagree."""

    reason: MismatchReason
    entry_id: int | None
    seq: int | None
    expected: str | None = Field(default=None, description="What the chain (or checkpoint) says it should be")
    found: str | None = Field(default=None, description="What is there now")
    checkpoint_day: date | None = None
    checkpoint_source: CheckpointSource | None = Field(
        default=None,
        description="For a checkpoint: the stored one (`database`) or a signed one kept outside it (`external`)",
    )
    detail: str | None = None


@dataclass(frozen=True)
class CheckpointMark:
    day: date
    entry_id: int
    chain_hash: str
    entries: int
    source: CheckpointSource = "database"


class ChainVerifier:
    """Feed it the chain in seq order; it recomputes each hash and says where it first breaks."""

    def __init__(
        self, checkpoints: Iterable[CheckpointMark] = (), *, previous: str = GENESIS, verified: int = 0
    ) -> None:
        self.chain = previous
        self.verified = verified
        self.last_seq: int | None = None
        self.last_entry_id: int | None = None
        self._last_order: tuple[int, int] | None = None
        self._pending: dict[int, list[CheckpointMark]] = {}
        for mark in sorted(checkpoints, key=lambda m: m.day):
            self._pending.setdefault(mark.entry_id, []).append(mark)

    def add(
        self,
        *,
        seq: int,
        entry_id: int,
        entry: EntryFields | None,
        sealed_entry_hash: str,
        sealed_chain_hash: str,
        order: tuple[int, int] | None = None,
    ) -> Mismatch | None:
        def mismatch(reason: MismatchReason, expected: str | None, found: str | None, **extra: Any) -> Mismatch:
            return Mismatch(reason=reason, entry_id=entry_id, seq=seq, expected=expected, found=found, **extra)

        if self.last_seq is not None and seq <= self.last_seq:
            return mismatch("out_of_order", f"seq after {self.last_seq}", str(seq))
        if entry is None:
            return mismatch("entry_missing", sealed_entry_hash, None)
        try:
            digest = entry_hash(entry)
        except CanonicalError as exc:
            return mismatch("malformed_entry", sealed_entry_hash, None, detail=str(exc))
        if digest != sealed_entry_hash:
            return mismatch("entry_changed", sealed_entry_hash, digest)
        if order is not None and self._last_order is not None and order <= self._last_order:
            return mismatch("out_of_order", f"(txid, id) after {self._last_order}", str(order))
        link = chain_hash(self.chain, digest)
        if link != sealed_chain_hash:
            return mismatch("chain_broken", link, sealed_chain_hash)
        self.chain = link
        self.verified += 1
        self.last_seq = seq
        self.last_entry_id = entry_id
        if order is not None:
            self._last_order = order
        for mark in self._pending.pop(entry_id, ()):
            where = {"checkpoint_day": mark.day, "checkpoint_source": mark.source}
            if mark.chain_hash != link:
                return mismatch("checkpoint_mismatch", mark.chain_hash, link, **where)
            if mark.entries != self.verified:
                return mismatch("checkpoint_count", str(mark.entries), str(self.verified), **where)
        return None

    def finish(self) -> Mismatch | None:
        """After the last seal: a checkpoint whose entry never came is not on this chain."""
        remaining = sorted((mark for marks in self._pending.values() for mark in marks), key=lambda m: m.day)
        if not remaining:
            return None
        first = remaining[0]
        return Mismatch(
            reason="checkpoint_not_in_chain",
            entry_id=first.entry_id,
            seq=None,
            expected=first.chain_hash,
            checkpoint_day=first.day,
            checkpoint_source=first.source,
        )


EXPORT_FORMAT = "longgang-vouchers-ledger"
EXPORT_VERSION = 1
