"""Webhook secrets encrypted at rest: AES-256-GCM under `WEBHOOK_SECRET_KEY` (issue #15).

A subscription's signing secret must be read back to sign each delivery, so it cannot be hashed
like a client secret; it is stored encrypted instead, in `webhook_subscriptions.secret_encrypted`
as `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`: the key id is the first 8 hex digits of
the key's SHA-256 (which key decrypts it), the nonce 12 random bytes, and the associated data the
service's schema, so a value copied into another service's table does not decrypt there.

Keys are 32 random bytes in base64 (`python -m shared.feed.secretbox generate`). Rotation:
put the new key in `WEBHOOK_SECRET_KEY` and the old one in `WEBHOOK_SECRET_OLD_KEYS` (a comma-
separated list, decryption only); at start-up each process re-encrypts what an old key sealed
(`seal_at_rest`), after which the old key can be dropped. Secrets stored in plaintext before
(the `secret` column) are encrypted the same way, at the first start with a key, and the
plaintext is set to NULL: the migration needs no key (docs/webhooks.md, "Secrets at rest").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.db import Connection

VERSION = "v1"

logger = logging.getLogger("shared.events")


class SecretKeyError(ValueError):
    """A key setting is missing or malformed, or a stored secret was sealed by a key we do not have."""


def generate_key() -> str:
    """A new key: 32 random bytes, standard base64."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_key(value: str, name: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise SecretKeyError(f"{name} must be 32 bytes in base64 (python -m shared.feed.secretbox generate)")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class SecretBox:
    """Encrypts with the current key; decrypts with it or any old one."""

    def __init__(self, key: str, old_keys: str = "") -> None:
        if not key.strip():
            raise SecretKeyError("WEBHOOK_SECRET_KEY is not set: webhook secrets are stored encrypted with it")
        current = _decode_key(key, "WEBHOOK_SECRET_KEY")
        self.current_id = key_id(current)
        self._keys: dict[str, AESGCM] = {self.current_id: AESGCM(current)}
        for old in (part for part in old_keys.split(",") if part.strip()):
            decoded = _decode_key(old, "WEBHOOK_SECRET_OLD_KEYS")
            self._keys.setdefault(key_id(decoded), AESGCM(decoded))

    def encrypt(self, secret: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.current_id].encrypt(nonce, secret.encode("utf-8"), context.encode("utf-8"))
        return f"{VERSION}.{self.current_id}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, stored: str, context: str) -> str:
        version, _, rest = stored.partition(".")
        kid, _, payload = rest.partition(".")
        aead = self._keys.get(kid)
        if version != VERSION or aead is None:
            raise SecretKeyError(f"a webhook secret sealed by key {kid!r}, which is not configured")
        try:
            raw = base64.urlsafe_b64decode(payload)
            return aead.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SecretKeyError(f"a webhook secret does not decrypt with key {kid!r}") from exc

    def is_current(self, stored: str) -> bool:
        return stored.startswith(f"{VERSION}.{self.current_id}.")

    def secret_of(self, row: Any, context: str) -> str:
        """A subscription row's secret: `secret_encrypted` decrypted, else the plaintext not yet sealed."""
        if row["secret_encrypted"] is not None:
            return self.decrypt(str(row["secret_encrypted"]), context)
        return str(row["secret"])


def seal_sql(schema: str) -> tuple[str, str]:
    """The rows to seal (plaintext, or sealed by another key, or whose replaced secret, still signing, another key
    sealed) and the update that seals one."""
    s = f'"{schema}"'
    select = (
        f"SELECT id, secret, secret_encrypted, previous_secret_encrypted, "
        "coalesce(previous_secret_valid_until > clock_timestamp(), false) AS previous_signs "
        f"FROM {s}.webhook_subscriptions WHERE secret IS NOT NULL OR NOT starts_with(secret_encrypted, $1) "
        "OR (previous_secret_valid_until > clock_timestamp() AND NOT starts_with(previous_secret_encrypted, $1)) "
        "ORDER BY id"
    )
    update = (
        f"UPDATE {s}.webhook_subscriptions SET secret_encrypted = $2, secret = NULL, previous_secret_encrypted = $5 "
        "WHERE id = $1 AND secret IS NOT DISTINCT FROM $3 AND secret_encrypted IS NOT DISTINCT FROM $4 "
        "AND previous_secret_encrypted IS NOT DISTINCT FROM $6"
    )
    return select, update


async def seal_at_rest(connection: Connection, schema: str, box: SecretBox) -> int:
    """Encrypt plaintext secrets, re-encrypt those an old key sealed, with the current key; how many rows.

    A secret a rotation replaced is re-encrypted too while it still signs (an expired one is left as it is: it is
    never read again). Safe with several processes starting at once: each update applies only if the row is still
    as read. A row sealed by a key that is not configured is left as it is (and logged): its deliveries fail
    until the key is given back in `WEBHOOK_SECRET_OLD_KEYS`.
    """
    select, update = seal_sql(schema)
    done = 0
    for row in await connection.fetch(select, f"{VERSION}.{box.current_id}."):
        previous = row["previous_secret_encrypted"]
        try:
            secret = box.secret_of(row, schema)
            if previous is not None and row["previous_signs"]:
                previous = box.encrypt(box.decrypt(str(previous), schema), schema)
        except SecretKeyError as exc:
            logger.error("webhook subscription %s.%s: %s", schema, row["id"], exc)
            continue
        status = await connection.execute(
            update,
            row["id"],
            box.encrypt(secret, schema),
            row["secret"],
            row["secret_encrypted"],
            previous,
            row["previous_secret_encrypted"],
        )
        done += status.endswith(" 1")
    return done


def ensure_key_file(path: Path) -> str:
    """A local key kept in a file (owner-only), made when missing (`make run`)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(generate_key() + "\n")
    return path.read_text(encoding="ascii").strip()


if __name__ == "__main__":
    if sys.argv[1:] != ["generate"]:
        sys.exit("usage: python -m shared.feed.secretbox generate   (prints a new WEBHOOK_SECRET_KEY)")
    print(generate_key())
