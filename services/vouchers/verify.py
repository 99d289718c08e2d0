"""Verify a ledger export offline: `python -m services.vouchers.verify FILE.ndjson [--checkpoint HASH]
[--signed-checkpoints SINK.jsonl --keys KEYS.json]`.

The file is what `GET /v1/ledger/export` streams: a header, one line per sealed entry
in seq order (the entry's fields with its `entry_hash` and `chain_hash`), the published
checkpoints, and an end line. Every entry hash and the chain from genesis are recomputed
with the functions the service itself uses (`services/vouchers/chain/hashing.py`), no database
needed; every checkpoint in the file must match the recomputed chain at its entry, and
each `--checkpoint HASH` (a head published elsewhere, e.g. a signed daily checkpoint)
must be on the chain. `--signed-checkpoints` is the service's checkpoint sink (or the
`vouchers.ledger.checkpoint` events' lines): every line's signature is checked with the
public keys in `--keys` (the JWKS of `/.well-known/ledger-checkpoint-keys.json`, kept by the
auditor), and the chain must carry each signed head at its entry, with its count: a chain
rewritten and re-sealed by the database's owner fails here. Prints `OK` and the head, or the
first entry that does not match.

Exit status: 0 verified, 1 does not verify (or not a complete export), 2 cannot read the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .chain.anchor import SignedCheckpoints, public_keys_by_kid, read_signed
from .chain.hashing import CANONICAL_VERSION, EXPORT_FORMAT, ChainVerifier, CheckpointMark, Mismatch
from .chain.service import external_mark


class ExportError(Exception):
    """The file is not a complete, well-formed export (which is a failure too)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass
class Result:
    ok: bool
    entries: int = 0
    head: tuple[int, int, str] | None = None  # seq, entry id, chain hash
    mismatch: Mismatch | None = None
    line: int | None = None
    found_checkpoints: dict[str, tuple[int, int]] = field(default_factory=dict)
    problem: str | None = None


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise ExportError(number, f"not JSON ({exc})") from exc
            if not isinstance(record, dict) or not isinstance(record.get("type"), str):
                raise ExportError(number, "not a ledger export record (no type)")
            yield number, record


def _integer(record: dict[str, Any], key: str, line: int) -> int:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExportError(line, f"{key} must be an integer")
    return value


def _text(record: dict[str, Any], key: str, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise ExportError(line, f"{key} must be a string")
    return value


def _checkpoint(record: dict[str, Any], line: int) -> CheckpointMark:
    try:
        day = date.fromisoformat(_text(record, "day", line))
    except ValueError as exc:
        raise ExportError(line, "day must be YYYY-MM-DD") from exc
    return CheckpointMark(
        day, _integer(record, "entry_id", line), _text(record, "chain_hash", line), _integer(record, "entries", line)
    )


def _scan(path: Path) -> tuple[list[CheckpointMark], dict[str, Any]]:
    """First pass: the header's format, the checkpoints (few) and the end line."""
    marks: list[CheckpointMark] = []
    end: dict[str, Any] | None = None
    first = True
    for number, record in _records(path):
        kind = record["type"]
        if first:
            if kind != "header" or record.get("format") != EXPORT_FORMAT:
                raise ExportError(number, f"not a {EXPORT_FORMAT} export (no header)")
            if record.get("canonical") != CANONICAL_VERSION:
                raise ExportError(number, f"canonical form {record.get('canonical')!r} is not {CANONICAL_VERSION!r}")
            first = False
        elif end is not None:
            raise ExportError(number, "a record after the end line")
        elif kind == "checkpoint":
            marks.append(_checkpoint(record, number))
        elif kind == "end":
            end = record
        elif kind != "entry":
            raise ExportError(number, f"unknown record type {kind!r}")
    if first:
        raise ExportError(None, "the file is empty")
    if end is None:
        raise ExportError(None, "no end line: the export is incomplete (truncated?)")
    return marks, end


def verify_export(path: Path, published: Sequence[str] = (), signed: SignedCheckpoints | None = None) -> Result:
    """Recompute the chain of an export; `published` are chain hashes that must be on it, `signed`
    checkpoints kept outside the database (each must be on it at its entry)."""
    marks, end = _scan(path)
    if signed is not None:
        if signed.bad:
            bad = signed.bad[0]
            return Result(
                False,
                problem=f"signed checkpoint line {bad.line} does not verify: {bad.problem}"
                + (f" (it claims entry {bad.entry_id})" if bad.entry_id is not None else ""),
            )
        marks.extend(external_mark(mark) for mark in signed.marks)
    verifier = ChainVerifier(marks)
    wanted = {value.strip().lower() for value in published}
    found: dict[str, tuple[int, int]] = {}
    count = 0
    for number, record in _records(path):
        if record["type"] != "entry":
            continue
        entry = record.get("entry")
        if entry is not None and not isinstance(entry, dict):
            raise ExportError(number, "entry must be an object or null")
        seq = _integer(record, "seq", number)
        entry_id = _integer(record, "entry_id", number)
        mismatch = verifier.add(
            seq=seq,
            entry_id=entry_id,
            entry=entry,
            sealed_entry_hash=_text(record, "entry_hash", number),
            sealed_chain_hash=_text(record, "chain_hash", number),
        )
        if mismatch is not None:
            return Result(False, verifier.verified, mismatch=mismatch, line=number)
        count += 1
        if verifier.chain in wanted:
            found.setdefault(verifier.chain, (entry_id, seq))
    mismatch = verifier.finish()
    if mismatch is not None:
        return Result(False, verifier.verified, mismatch=mismatch)
    head = None
    if verifier.last_seq is not None and verifier.last_entry_id is not None:
        head = (verifier.last_seq, verifier.last_entry_id, verifier.chain)
    result = Result(True, count, head=head, found_checkpoints=found)
    if end.get("entries") != count:
        result.ok, result.problem = False, f"the end line counts {end.get('entries')} entries, the file has {count}"
    elif (end.get("head") or {}).get("chain_hash") != (head[2] if head else None):
        result.ok, result.problem = False, "the end line's head is not the recomputed head"
    elif missing := sorted(wanted - found.keys()):
        result.ok, result.problem = False, f"checkpoint {missing[0]} is not on the chain"
    return result


def _describe(mismatch: Mismatch, line: int | None) -> str:
    place = [f"seq {mismatch.seq}"] if mismatch.seq is not None else []
    if line is not None:
        place.append(f"line {line}")
    where = f"entry {mismatch.entry_id}" + (f" ({', '.join(place)})" if place else "")
    text = f"FAILED: {where}: {mismatch.reason}"
    if mismatch.checkpoint_day is not None:
        source = "signed " if mismatch.checkpoint_source == "external" else ""
        text += f" ({source}checkpoint of {mismatch.checkpoint_day.isoformat()})"
    text += f"\n  expected: {mismatch.expected}\n  found:    {mismatch.found}"
    if mismatch.detail:
        text += f"\n  detail:   {mismatch.detail}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.vouchers.verify", description="Verify a vouchers ledger export (NDJSON) offline."
    )
    parser.add_argument("file", type=Path, help="the export, from GET /v1/ledger/export")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="HASH",
        help="a published chain hash that must be on the chain (repeatable)",
    )
    parser.add_argument(
        "--signed-checkpoints",
        type=Path,
        metavar="SINK",
        help="signed checkpoints kept outside the database (the VOUCHERS_CHECKPOINT_SINK file, JSON lines)",
    )
    parser.add_argument(
        "--keys", type=Path, metavar="JWKS", help="the public keys that sign checkpoints (a JWKS file you trust)"
    )
    arguments = parser.parse_args(argv)
    if (arguments.signed_checkpoints is None) != (arguments.keys is None):
        parser.error("--signed-checkpoints and --keys go together")
    try:
        signed = None
        if arguments.signed_checkpoints is not None:
            keys = public_keys_by_kid(json.loads(arguments.keys.read_text(encoding="utf-8")))
            if not arguments.signed_checkpoints.exists():
                raise OSError(f"{arguments.signed_checkpoints}: no such file")
            signed = read_signed(arguments.signed_checkpoints, keys)
        result = verify_export(arguments.file, arguments.checkpoint, signed)
    except ExportError as exc:
        print(f"FAILED: {exc}")
        return 1
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"cannot read the input: {exc}", file=sys.stderr)
        return 2
    if result.mismatch is not None:
        print(_describe(result.mismatch, result.line))
        print(f"  {result.entries} entries verified before it")
        return 1
    if not result.ok:
        print(f"FAILED: {result.problem}")
        return 1
    if result.head is None:
        print(f"OK: 0 entries (empty chain, genesis {'0' * 64})")
    else:
        seq, entry_id, head = result.head
        print(f"OK: {result.entries} entries verified; head seq {seq}, entry {entry_id}, chain_hash {head}")
    for value, (entry_id, seq) in sorted(result.found_checkpoints.items(), key=lambda item: item[1][1]):
        print(f"checkpoint {value} is on the chain at entry {entry_id} (seq {seq})")
    if signed is not None:
        print(f"{len(signed.marks)} signed checkpoints verified and on the chain")
    return 0


if __name__ == "__main__":
    sys.exit(main())
