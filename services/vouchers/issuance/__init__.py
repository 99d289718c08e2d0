"""Issuance: a voucher or a grant from an approved decision, and a voucher's life after it.

Officers issue compute (M1) and model (M3) vouchers and disburse the other measures' grants,
each once per approved decision and held to every ceiling (the M3 and M1 ceilings here, the
programme budget in `budgets/`); they void vouchers and expire those past their date; approvers
reverse a mistaken grant with a reversing entry.

The package: `endpoints.py` (the routes), `deps.py` (an officer's payment, once per
Idempotency-Key), `service.py` (issue, grant, reverse, void, expire; a voucher as it is read),
`ceilings.py` (the M3 and M1 ceilings an issuance takes), `repository.py` (all its SQL),
`schemas.py`, `errors.py`.
"""
