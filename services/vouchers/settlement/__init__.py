"""Settlement batches and statements (issue #4).

**Settlement.** `POST /v1/settlement-batches` gathers a vendor's captured redemptions that
are in no batch yet into a new, open batch; `POST /v1/settlement-batches/{id}/close`
closes it and, in the same transaction, writes the one `settle` entry moving the batch
total from the vendor's `vendor_receivable` account to its `settled` account (ref: the
vendor's credit code). Batch creation is serialised per vendor (a transaction-scoped
advisory lock), and the rows are locked `FOR UPDATE SKIP LOCKED` in id order, so the
redemption path is never waited on and two simultaneous requests never share a row: one
gets the batch, the other `nothing_to_settle`. The database holds the rules on its own
(migration 0003): a redemption's `settlement_batch_id` is set once, only when captured,
only to an open batch of the same vendor; a batch's redemptions add up to its total; a
batch is closed only with its matching `settle` entry; a closed batch never changes; no
batch is deleted.

**Statements** (all with `?limit=` / `?cursor=`; the header is computed over everything,
the page lists `items`):

- a voucher: its entries in order with running available / held / redeemed / returned;
- an enterprise and year: the vouchers the ledger counts in that year (M3: the claim
  year; M1: the benefit year, the year its class cap counts against), claimed and
  redeemed totals per kind, redemptions made in that calendar year (what the M3 ceiling
  counts), the ceilings (limit, used, headroom) and the grants of that year;
- a vendor: its redemptions (any status), receivable balance, settled total, batches.

**Who sees what.** Officers and administrators create and close batches (the token's client
is the actor recorded); officers, approvers, administrators and auditors read batches and
every statement. A vendor client reads only its own batches and its own statement; an
applicant only the statements of its own enterprise and vouchers. Anything else answers
404 (`settlement_batch_not_found`, `voucher_not_found`, `statement_not_found`).

The package: `endpoints.py` (the routes), `deps.py` (what they share: roles, paths, pages),
`service.py` (batches and statements), `repository.py` (all their SQL), `schemas.py`
(payloads), `errors.py` (error codes).
"""
