"""Redemptions: vendors redeem, hold, capture and release; the bureau ends a hold.

The package: `endpoints.py` (the routes, and the bare redemption route that answers first),
`deps.py` (the vendor, its Idempotency-Key, the bare route's validation), `service.py` (a call
answered as the ledger decided; holds released by a void, an expiry or the bureau),
`repository.py` (all its SQL: `vouchers.redeem()`, `vouchers.finish_hold()`, the holds'),
`schemas.py`, `errors.py`.
"""
