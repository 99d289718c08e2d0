"""Who may spend a compute voucher (issue #12, finding 7): only a vendor its holder authorised.

Through the HTTP API, on M1 vouchers issued from real approved decisions: a compute vendor that
knows the code but was never authorised cannot hold or redeem it (and nothing changes); the
holder authorises (idempotently) and revokes; the service's database login cannot undo a
revocation or delete an authorisation.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.auth import OFFICER
from tests.auth import as_applicant, auth
from tests.eligibility import seed
from tests.vouchers.flow import (
    YUAN,
    approve,
    approved_m3,
    authorise,
    issue,
    m1_decision,
    redeem,
    vendor_call,
)


async def m1_voucher(
    vouchers: httpx.AsyncClient, registry: httpx.AsyncClient, eligibility: httpx.AsyncClient
) -> tuple[str, str, str]:
    """A fresh M1 voucher: (code, holder, the provider its application named)."""
    holder, provider, application = await m1_decision(registry, eligibility)
    issued = await issue(vouchers, await approve(eligibility, application))
    assert issued.status_code == 201, issued.text
    return str(issued.json()["code"]), holder, provider


async def ledger_of(database: str, code: str) -> dict[str, Any]:
    connection = await asyncpg.connect(database)
    try:
        row = await connection.fetchrow(
            "SELECT v.available_fen, v.held_fen, v.redeemed_fen, "
            "(SELECT count(*) FROM vouchers.redemptions r WHERE r.voucher_id = v.id) AS redemptions, "
            "(SELECT count(*) FROM vouchers.entries e WHERE e.voucher_id = v.id) AS entries "
            "FROM vouchers.vouchers v WHERE v.code = $1",
            code,
        )
    finally:
        await connection.close()
    assert row is not None
    return dict(row)


async def test_an_unauthorised_compute_vendor_cannot_hold_or_redeem_and_nothing_changes(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    code, holder, provider = await m1_voucher(vouchers, live_registry_client, live_eligibility_client)
    squatter = await seed.vendor(live_registry_client, is_compute_vendor=True)  # eligible, knows the code
    before = await ledger_of(vouchers_database, code)
    assert (before["redemptions"], before["entries"]) == (0, 1)

    held = await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": 500_000 * YUAN, "invoice_number": "SQUAT-1", "hold_seconds": 24 * 3600},
        headers=vendor_call(squatter, "squat-h"),
    )
    assert (held.status_code, held.json()["code"]) == (403, "vendor_not_authorised"), held.text
    assert held.headers["content-type"] == "application/problem+json"
    english = await vouchers.post(
        f"/v1/vouchers/{code}/redemptions",
        json={"amount_fen": 100 * YUAN, "invoice_number": "SQUAT-2"},
        headers=vendor_call(squatter, "squat-r", **{"Accept-Language": "en"}),
    )
    assert (english.status_code, english.json()["code"]) == (403, "vendor_not_authorised")
    assert english.json()["detail"] == (
        f"The holder of voucher {code} has not authorised vendor {squatter} to spend it; nothing was changed"
    )
    assert await ledger_of(vouchers_database, code) == before
    replay = await redeem(vouchers, code, squatter, 100 * YUAN, "squat-r", "SQUAT-2")  # the key's stored answer
    assert (replay.status_code, replay.json()["code"]) == (403, "vendor_not_authorised")

    # the vendor the holder's own application named spends it; the holder's voucher is not blocked
    own = await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": 500_000 * YUAN, "invoice_number": "OWN-1"},
        headers=vendor_call(provider, "own-h"),
    )
    assert own.status_code == 201, own.text
    listed = await vouchers.get(f"/v1/vouchers/{code}/authorisations", headers=as_applicant(holder))
    assert [(a["vendor"], a["basis"], a["granted_by"]) for a in listed.json()] == [(provider, "application", holder)]


async def test_the_holder_authorises_and_revokes_a_vendor(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    code, holder, _ = await m1_voucher(vouchers, live_registry_client, live_eligibility_client)
    chosen = await seed.vendor(live_registry_client, is_compute_vendor=True)
    path = f"/v1/vouchers/{code}/authorisations"

    no_key = await vouchers.post(path, json={"vendor": chosen}, headers=as_applicant(holder))
    assert (no_key.status_code, no_key.json()["code"]) == (400, "idempotency_key_required")
    stranger = await seed.organisation(live_registry_client)
    others = await vouchers.post(
        path, json={"vendor": chosen}, headers=as_applicant(stranger, **{"Idempotency-Key": "a-0"})
    )
    assert (others.status_code, others.json()["code"]) == (404, "voucher_not_found")
    as_vendor_itself = await vouchers.post(path, json={"vendor": chosen}, headers=vendor_call(chosen, "a-00"))
    assert (as_vendor_itself.status_code, as_vendor_itself.json()["code"]) == (403, "forbidden")

    headers = as_applicant(holder, **{"Idempotency-Key": "a-1"})
    granted = await vouchers.post(path, json={"vendor": chosen}, headers=headers)
    assert granted.status_code == 201, granted.text
    body = granted.json()
    assert (body["vendor"], body["basis"], body["revoked_at"]) == (chosen, "holder", None)
    replay = await vouchers.post(path, json={"vendor": chosen}, headers=headers)
    assert (replay.status_code, replay.json()) == (201, body)
    reused = await vouchers.post(path, json={"vendor": stranger}, headers=headers)
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    standing = await vouchers.post(
        path, json={"vendor": chosen}, headers=as_applicant(holder, **{"Idempotency-Key": "a-2"})
    )
    assert (standing.status_code, standing.json()["id"]) == (200, body["id"])

    redeemed = await redeem(vouchers, code, chosen, 1_000 * YUAN, "chosen-1")
    assert redeemed.status_code == 201, redeemed.text

    revoked = await vouchers.delete(f"{path}/{chosen}", params={"reason": "更换供应商"}, headers=as_applicant(holder))
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["revoked_by"], revoked.json()["revoke_reason"]) == (f"applicant {holder}", "更换供应商")
    before = await ledger_of(vouchers_database, code)
    after = await redeem(vouchers, code, chosen, 1_000 * YUAN, "chosen-2")
    assert (after.status_code, after.json()["code"]) == (403, "vendor_not_authorised")
    assert await ledger_of(vouchers_database, code) == before
    again = await vouchers.delete(f"{path}/{chosen}", headers=as_applicant(holder))
    assert (again.status_code, again.json()["code"]) == (404, "authorisation_not_found")

    # authorised anew, then revoked by an officer (fraud): the history keeps both
    await authorise(vouchers, code, holder, chosen)
    by_officer = await vouchers.delete(f"{path}/{chosen}", headers=auth(OFFICER, name="officer-zhao"))
    assert (by_officer.status_code, by_officer.json()["revoked_by"]) == (200, "officer-zhao")
    history = (await vouchers.get(path, headers=auth(OFFICER, name="officer-zhao"))).json()
    assert [(a["vendor"], a["revoked_by"]) for a in history if a["vendor"] == chosen] == [
        (chosen, f"applicant {holder}"),
        (chosen, "officer-zhao"),
    ]


async def test_a_model_voucher_names_its_vendor_and_needs_no_authorisation(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    other = await seed.vendor(live_registry_client, is_model_vendor=True)
    refused = await vouchers.post(
        f"/v1/vouchers/{code}/authorisations",
        json={"vendor": other},
        headers=as_applicant(supply.holder, **{"Idempotency-Key": "m3-a"}),
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "voucher_names_its_vendor")
    assert (await redeem(vouchers, code, supply.vendor, 100 * YUAN, "m3-own")).status_code == 201


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE vouchers.vendor_authorisations SET revoked_at = NULL, revoked_by = NULL WHERE id = $1",
        "UPDATE vouchers.vendor_authorisations SET revoked_at = now(), revoked_by = 'x', vendor = 'y' WHERE id = $1",
        "UPDATE vouchers.vendor_authorisations SET basis = 'holder' WHERE id = $1",
        "DELETE FROM vouchers.vendor_authorisations WHERE id = $1",
    ],
)
async def test_the_service_login_cannot_undo_a_revocation_or_forge_one(
    statement: str,
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    vouchers_app: FastAPI,
) -> None:
    code, holder, provider = await m1_voucher(vouchers, live_registry_client, live_eligibility_client)
    revoked = await vouchers.delete(f"/v1/vouchers/{code}/authorisations/{provider}", headers=as_applicant(holder))
    assert revoked.status_code == 200, revoked.text
    ledger = vouchers_app.state.ledger_pool  # the very pool (and login) the redemption path uses
    async with ledger.pool.acquire() as connection:
        with pytest.raises(asyncpg.PostgresError):
            await connection.execute(statement, revoked.json()["id"])
    listed = (await vouchers.get(f"/v1/vouchers/{code}/authorisations", headers=as_applicant(holder))).json()
    assert [a["revoked_at"] is not None for a in listed] == [True]
