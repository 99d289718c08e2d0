"""Tamper evidence: a hash chain over the ledger's entries, computed off the hot path.

The design measurements (docs/benchmarks.md) found that a chain computed inside each redemption
halves throughput, so the redemption path only inserts entries. A **sealer** (a background task
in each vouchers process, on its own connection) appends one row per committed entry to
`vouchers.seals`:

    entry_hash = sha256(canonical_entry(entry))
    chain_hash = sha256(previous chain_hash + entry_hash)        genesis: 64 zeros

**Order and watermark.** Sequence order is not commit order, so entries are sealed in
(transaction id, entry id) order, and only those whose transaction id is below
`pg_snapshot_xmin(pg_current_snapshot())`: every transaction older than that has ended,
and every later one gets a larger id, so the set below the watermark never grows and
the chain's order is final. An entry of a transaction still in flight is never passed:
sealing stops before it (and before everything after it) until it commits or aborts.
Each batch is one short transaction holding a transaction-level advisory lock, so one
sealer runs at a time across processes; it continues from the last seal (highest seq).

**Canonical form, version 1** (frozen: a different form needs a new version tag):
`"v1|"` followed by the JSON array of the fields in `ENTRY_FIELDS` order. Integers as
JSON integers, `created_at` as UTC ISO-8601 with microseconds (`2026-11-27T02:45:05.953712Z`),
`decision_id` as a lower-case hyphenated UUID, every string NFC-normalised, null as
JSON `null`; encoded with `ensure_ascii=False` and separators `,` `:`, then UTF-8. So
a tool that re-normalises Unicode or re-escapes the export's JSON never breaks
verification (NFC and NFD spellings of the same text are the same content).

**Verification** (`GET /v1/ledger/verify`) seals what is sealable, then recomputes every
entry hash and the chain from genesis in seq order, in keyset batches (flat memory), and
names the first entry that does not match. It also finds committed entries below the
watermark that are not in the chain (hidden, e.g. inserted with a forged old `txid`),
seals whose entry is gone, and checkpoints that no longer match. **Checkpoints**
(`POST /v1/ledger/checkpoints`, one a day) publish the head: someone able to rewrite
entries *and* recompute every seal after them is still caught by an earlier checkpoint;
and since the database's owner can rewrite the stored checkpoint too, each one is signed and
written outside the database as it is made (`anchor.py`), and verification compares the chain
with those signed heads as well.
**Export** (`GET /v1/ledger/export`) streams NDJSON that `python -m services.vouchers.verify`
checks offline with the very functions of `hashing.py`.

The package: `hashing.py` (canonical form, hashes, the verifier; no I/O), `sealer.py` (the
background sealer), `repository.py` (all its SQL), `service.py` (verify, checkpoints, export),
`anchor.py` (signed checkpoints outside the database), `schemas.py`, `errors.py`, `endpoints.py` (routes only).
"""
