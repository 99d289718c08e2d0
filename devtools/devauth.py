"""Authentication for a local stack (`make run`, the tests): keys, JWKS and clients.

Keeps everything under one directory (`.data/auth/` for `make run`):
    keys/<kid>.pem   the signing key(s) of the registry's token endpoint
    jwks.json        their public halves, which every service verifies tokens with
    clients.json     the local clients' ids and secrets (mode 600): the services' own
                     identities and the demo's officer, approver, vendor and admin
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.auth import (
    ADMIN,
    APPROVER,
    AUDITOR,
    BUDGET_RESERVE,
    DASHBOARD,
    DECISIONS_READ,
    METRICS_READ,
    OFFICER,
    PLATFORM,
    REGISTRY_READ,
    VENDOR,
)
from shared.dbconnect import libpq_url
from shared.tokens import generate_key, write_jwks

#: The demo data set's compute vendor (devtools/demo.py), the one the local `dev-vendor` client is bound to.
DEMO_VENDOR = "914403001922038216"

#: Peer identities: the least each service needs (shared/auth.py).
SERVICE_CLIENTS: dict[str, dict[str, Any]] = {
    # approvals reserve the programme budget in the vouchers service (A2)
    "svc-eligibility": {"name": "eligibility service", "scopes": [REGISTRY_READ, BUDGET_RESERVE]},
    "svc-vouchers": {"name": "vouchers service", "scopes": [REGISTRY_READ, DECISIONS_READ]},
}


def demo_clients(vendor_credit_code: str) -> dict[str, dict[str, Any]]:
    return {
        "dev-admin": {"name": "local administrator", "scopes": [ADMIN]},
        "dev-officer": {"name": "demo officer 王科员", "scopes": [OFFICER]},
        "dev-approver": {"name": "demo approver 李科长", "scopes": [APPROVER]},
        "dev-auditor": {"name": "demo auditor", "scopes": [AUDITOR]},
        "dev-platform": {"name": "municipal data platform (local)", "scopes": [PLATFORM]},
        "dev-vendor": {"name": "demo compute vendor", "scopes": [VENDOR], "organisation": vendor_credit_code},
        "dev-dashboard": {"name": "programme dashboard (local)", "scopes": [DASHBOARD]},
        "dev-prometheus": {"name": "Prometheus (local)", "scopes": [METRICS_READ]},
    }


def ensure_checkpoint_key(directory: Path) -> Path:
    """The vouchers service's checkpoint signing key (made once; not the token key); returns the directory."""
    if not any(directory.glob("*.pem")):
        generate_key(directory)
    return directory


def ensure_keys(directory: Path) -> tuple[Path, Path]:
    """A signing key (made once) and the JWKS file; returns (keys dir, jwks path)."""
    keys = directory / "keys"
    if not any(keys.glob("*.pem")):
        generate_key(keys)
    jwks_path = directory / "jwks.json"
    write_jwks(keys, jwks_path)
    return keys, jwks_path


async def _ensure_clients(database_url: str, wanted: dict[str, dict[str, Any]], known: dict[str, Any]) -> None:
    from services.registry import identity

    connection = await asyncpg.connect(libpq_url(database_url))
    try:
        for client_id, spec in wanted.items():
            exists = await connection.fetchval(
                "SELECT revoked_at IS NULL FROM registry.clients WHERE client_id = $1", client_id
            )
            if exists and client_id in known:
                # a local stack made before a service needed a new scope: give its client the scopes it needs now
                await connection.execute(
                    "UPDATE registry.clients SET scopes = $2 WHERE client_id = $1 AND NOT scopes @> $2",
                    client_id,
                    list(spec["scopes"]),
                )
                continue
            if exists:
                secret = await identity.rotate_secret(connection, client_id)
            else:
                created = await identity.create_client(
                    connection,
                    spec["name"],
                    spec["scopes"],
                    organisation=spec.get("organisation"),
                    client_id=client_id,
                )
                secret = created.client_secret
            known[client_id] = {"client_id": client_id, "client_secret": secret, **spec}
    finally:
        await connection.close()


def ensure_clients(database_url: str, path: Path, wanted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Make sure each wanted client exists in the registry's database and its secret is in `path`."""
    known: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    asyncio.run(_ensure_clients(database_url, wanted, known))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(known, handle, indent=2, ensure_ascii=False)
    return known


def service_env(directory: Path, registry_url: str, clients: dict[str, Any]) -> dict[str, str]:
    """What the three services need: where the keys are, and their own identities."""
    keys, jwks_path = directory / "keys", directory / "jwks.json"
    env = {
        "AUTH_JWKS": str(jwks_path),
        "REGISTRY_SIGNING_KEYS_DIR": str(keys),
        "AUTH_TOKEN_URL": registry_url.rstrip("/") + "/oauth/token",
    }
    for service in ("eligibility", "vouchers"):
        client = clients.get(f"svc-{service}")
        if client:
            env[f"{service.upper()}_CLIENT_ID"] = client["client_id"]
            env[f"{service.upper()}_CLIENT_SECRET"] = client["client_secret"]
    return env


def fetch_token(registry_url: str, client: dict[str, Any], timeout: float = 10.0) -> str:
    """An access token for one client, from the registry's token endpoint."""
    response = httpx.post(
        registry_url.rstrip("/") + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=timeout,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def main(argv: list[str] | None = None) -> int:
    """`token CLIENT_ID [REGISTRY_URL]`: print an access token for a local client;
    `setup DIR DATABASE_URL`: keys and clients in DIR (docker compose's init step)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 3 and args[0] == "setup":  # docker compose: keys and clients on a shared volume
        directory = Path(args[1])
        ensure_keys(directory)
        ensure_checkpoint_key(directory / "checkpoint-keys")
        ensure_clients(args[2], directory / "clients.json", {**SERVICE_CLIENTS, **demo_clients(DEMO_VENDOR)})
        print(f"keys and clients in {directory}")
        return 0
    if len(args) < 2 or args[0] != "token":
        print("usage: python -m devtools.devauth token CLIENT_ID [REGISTRY_URL]", file=sys.stderr)
        return 2
    directory = Path(os.environ.get("AUTH_DIR", Path(__file__).resolve().parent.parent / ".data" / "auth"))
    clients = json.loads((directory / "clients.json").read_text(encoding="utf-8"))
    if args[1] not in clients:
        print(f"no local client {args[1]}; known: {', '.join(sorted(clients))}", file=sys.stderr)
        return 2
    registry_url = args[2] if len(args) > 2 else os.environ.get("REGISTRY_URL", "http://127.0.0.1:8001")
    try:
        print(fetch_token(registry_url, clients[args[1]]))
    except httpx.HTTPError as exc:
        print(f"error: could not get a token from {registry_url} ({exc}); is `make run` running?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
