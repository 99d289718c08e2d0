"""Events for integrators: an outbox per service, an ordered change feed and signed webhooks.

**Outbox.** Every state change writes one row to `<schema>.outbox` with `emit()`, in the
same transaction as the change (an `AsyncSession`, an SQLAlchemy connection or a raw
asyncpg connection; the vouchers ledger's SQL functions insert theirs themselves). A
change that rolls back leaves no event; an event never exists without its change.

**Order and watermark** (as the ledger's sealer, `services/vouchers/chain/sealer.py`). Rows are
ordered by (transaction id, id), and only rows whose transaction id is below the oldest running
transaction (`<schema>.feed_watermark()`) are ever served: every transaction below it has ended,
and every later one gets a larger id, so nothing can later appear before a position once served.
The ids are the feed's own (the cluster's plus an offset that a restore into a new cluster raises
above every stored position: `tables.feed_epoch_sql`), so cursors survive a restore. A reader that
resumes after a position (`?after=<cursor>`, or a webhook subscription's stored position) therefore
misses nothing and sees nothing twice.
The price is latency: a write transaction still open anywhere on the PostgreSQL server
holds the feed back until it ends (lag, never a gap).

**Change feed.** `GET /v1/events?after=&limit=&types=` (platform, auditor, admin): the
next page and a `next_cursor` to continue from; with a type filter the cursor also moves
past events that do not match, so a poller never rescans them.

**Webhooks.** A client subscribes a URL to event types (`POST /v1/webhooks`); the secret
it gets back once signs every delivery per Standard Webhooks: `webhook-id` (the event id),
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<t>.<raw body>")>`
(the deprecated `Longgang-Signature` beside it until 0.3.0; `signing`). Applicant and vendor clients only receive
events about their own organisation (`organisation` / `vendor` of the event). A
dispatcher in each process serves subscriptions one event at a time, in feed order:
a 2xx moves the subscription on; anything else (or no answer within the timeout) is
logged and retried with exponential backoff and jitter, the same event first, for
`retry_for_seconds` (24 h by default); after that the subscription is suspended, not
skipped ahead, and `POST /v1/webhooks/{id}/resume` continues where it stopped. Two
processes share the work safely: a subscription is claimed with `FOR UPDATE SKIP LOCKED`
in a short transaction and held by a lease (a token and an expiry) while its events are
sent, so no transaction stays open during an outbound call (an open transaction would
hold the watermark back for everyone). Delivery is at least once: a receiver dedupes by
the event id. See docs/webhooks.md.

The modules: `catalogue` (each service registers its event types from its own `events.py`),
`tables` (the DDL the migrations run), `outbox` (`emit`, and the dispatcher's lag for /metrics),
`signing` (Standard Webhooks and house signatures, envelopes, backoff), `secretbox` (secrets
encrypted at rest), `retention` (the job trimming the outbox and the delivery log: docs/webhooks.md,
"Retention"), `addresses` (what a webhook may reach), `settings` (`WEBHOOK_*`), `dispatcher`,
`schemas`, `errors`, `endpoints` (the router) and `metrics`
(the outbox lag at scrape time, which each service registers with `shared.metrics.on_scrape`).
"""
