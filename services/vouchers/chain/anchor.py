"""Checkpoints anchored outside the database (issue #12, finding 3).

Someone with the schema owner's login can rewrite an entry, re-seal every later link and
rewrite the stored checkpoint: the chain, the checkpoints table and the invariants then all
agree with each other. What they cannot rewrite is what already left the database. So each
checkpoint, as it is made, is

- **signed** with the vouchers service's own Ed25519 key (`VOUCHERS_CHECKPOINT_KEYS_DIR`,
  `<kid>.pem` files as the registry's token keys; the newest signs), a compact JWS whose
  payload is the checkpoint; the public halves are served at
  `/.well-known/ledger-checkpoint-keys.json` (a JWKS), which auditors keep a copy of;
- **appended** to a file the database owner cannot reach (`VOUCHERS_CHECKPOINT_SINK`: opened
  `O_APPEND`, one JSON line per checkpoint, fsynced before the checkpoint is stored), and
- **published** as `vouchers.ledger.checkpoint` on the change feed, hence to the platform's
  webhooks.

Verification (online and `python -m services.vouchers.verify --signed-checkpoints`) checks
every signed line with the public keys, then requires the database's chain to carry each
signed head at its entry: a rewrite before the last signed checkpoint cannot pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.tokens import _private_keys, jwks

ISSUER = "longgang-vouchers-ledger"
PAYLOAD_TYPE = "ledger-checkpoint"
#: the checkpoint's fields, as signed and as written on a sink line
SIGNED_FIELDS = ("day", "entry_id", "chain_hash", "entries", "signed_off_by", "canonical")


class CheckpointSigner:
    """Signs checkpoints with the newest key of a directory (all keys stay published)."""

    def __init__(self, directory: Path) -> None:
        keys = _private_keys(directory) if directory.is_dir() else []
        if not keys:
            raise RuntimeError(
                f"no checkpoint signing key in {directory} (python -m shared.tokens generate {directory})"
            )
        self.directory = directory
        self.kid: str
        self._key: Ed25519PrivateKey
        self.kid, self._key = keys[-1]

    def sign(self, checkpoint: Mapping[str, Any]) -> str:
        claims = {"iss": ISSUER, "typ": PAYLOAD_TYPE, **{name: checkpoint[name] for name in SIGNED_FIELDS}}
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid, "typ": PAYLOAD_TYPE})

    def public_keys(self) -> dict[str, Any]:
        return jwks(self.directory)


def sink_line(checkpoint: Mapping[str, Any], kid: str, signature: str) -> bytes:
    """One line of the sink: the checkpoint's fields in clear (for people), the JWS (for verifiers)."""
    record = {"type": "checkpoint", **{name: checkpoint[name] for name in SIGNED_FIELDS}, "kid": kid, "jws": signature}
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def append_to_sink(path: Path, line: bytes) -> None:
    """Append one line and fsync it (blocking: call it in a thread). Never truncates, never seeks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


# --- verification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedMark:
    """A signed checkpoint that verified: where the chain must be, and who signed."""

    line: int
    day: date
    entry_id: int
    chain_hash: str
    entries: int
    kid: str


@dataclass(frozen=True)
class BadLine:
    line: int
    problem: str
    entry_id: int | None = None


@dataclass
class SignedCheckpoints:
    """What a sink (or any file of signed checkpoint lines) holds, after checking each signature."""

    lines: int = 0
    marks: list[SignedMark] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)

    @property
    def latest(self) -> SignedMark | None:
        return max(self.marks, key=lambda mark: (mark.entries, mark.day), default=None)


def public_keys_by_kid(document: Mapping[str, Any]) -> dict[str, Any]:
    """kid → verification key, from a JWKS document (Ed25519 keys only)."""
    keys: dict[str, Any] = {}
    for entry in document.get("keys", ()):
        if isinstance(entry, dict) and entry.get("kty") == "OKP" and entry.get("crv") == "Ed25519" and entry.get("kid"):
            keys[str(entry["kid"])] = jwt.PyJWK(entry, algorithm="EdDSA").key
    return keys


def _claimed_entry(record: Mapping[str, Any]) -> int | None:
    value = record.get("entry_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_line(number: int, raw: str, keys: Mapping[str, Any]) -> SignedMark | BadLine:
    """One sink line: its JWS must verify with a published key and say exactly what the line says."""
    try:
        record = json.loads(raw)
    except ValueError:
        return BadLine(number, "not JSON")
    if not isinstance(record, dict) or record.get("type") != "checkpoint" or not isinstance(record.get("jws"), str):
        return BadLine(number, "not a signed checkpoint line")
    claimed = _claimed_entry(record)
    try:
        kid = jwt.get_unverified_header(record["jws"]).get("kid")
    except jwt.PyJWTError:
        return BadLine(number, "the signature is not a JWS", claimed)
    key = keys.get(str(kid))
    if key is None:
        return BadLine(number, f"signed with an unknown key {kid!r}", claimed)
    try:
        payload = jwt.decode(
            record["jws"],
            key,
            algorithms=["EdDSA"],
            issuer=ISSUER,
            options={"require": ["iss", *SIGNED_FIELDS], "verify_aud": False},
        )
    except jwt.PyJWTError as exc:
        return BadLine(number, f"bad signature ({type(exc).__name__})", claimed)
    if payload.get("typ") != PAYLOAD_TYPE:
        return BadLine(number, "not a checkpoint signature", claimed)
    if any(record.get(name) != payload[name] for name in SIGNED_FIELDS):
        return BadLine(number, "the line's fields differ from what was signed", claimed)
    try:
        return SignedMark(
            number,
            date.fromisoformat(str(payload["day"])),
            int(payload["entry_id"]),
            str(payload["chain_hash"]),
            int(payload["entries"]),
            str(kid),
        )
    except (TypeError, ValueError):
        return BadLine(number, "the signed checkpoint is malformed", claimed)


def read_signed(path: Path, keys: Mapping[str, Any]) -> SignedCheckpoints:
    """Every line of a sink file, checked (blocking). A missing file holds nothing."""
    result = SignedCheckpoints()
    if not path.exists():
        return result
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            result.lines += 1
            checked = check_line(number, raw, keys)
            if isinstance(checked, BadLine):
                result.bad.append(checked)
            else:
                result.marks.append(checked)
    return result
