"""Retention of the outbox and the delivery log: a periodic job running `<schema>.trim_feed` (issue #15).

Each round deletes, in batches of `WEBHOOK_RETENTION_BATCH`, the events older than
`WEBHOOK_RETENTION_DAYS` that every subscription not deactivated has passed, and the delivery-log
rows older than that (the rule and its guard rails live in the SQL function: shared/feed/tables.py,
`retention_sql`). A change-feed cursor before what was trimmed is answered 410 `cursor_expired`.
"""

from __future__ import annotations

import logging

import asyncpg

from shared.dbconnect import libpq_url
from shared.feed.settings import WebhookSettings
from shared.periodic import OnOwnConnection

logger = logging.getLogger("shared.events")

#: batches per round at most; the next round (after `WEBHOOK_RETENTION_INTERVAL_SECONDS`) goes on
MAX_BATCHES = 50


class FeedRetention(OnOwnConnection):
    """Trims one service's outbox and delivery log in small batches, each its own short transaction."""

    log = logger

    def __init__(self, dsn: str, schema: str, settings: WebhookSettings, *, role: str | None = None) -> None:
        interval = settings.retention_interval_seconds if settings.retention_days > 0 else 0.0
        super().__init__(libpq_url(dsn), role or "", interval)
        self.name = f"feed-retention-{schema}"
        self.schema = schema
        self.settings = settings
        self.trimmed_events = 0
        self.trimmed_deliveries = 0

    async def step(self, connection: asyncpg.Connection) -> None:
        await self.trim(connection)

    async def trim(self, connection: asyncpg.Connection) -> tuple[int, int]:
        """Batches until nothing is left to trim (or MAX_BATCHES): events and deliveries deleted."""
        sql = f'SELECT events, deliveries FROM "{self.schema}".trim_feed(make_interval(days => $1), $2)'
        events = deliveries = 0
        for _ in range(MAX_BATCHES):
            row = await connection.fetchrow(sql, self.settings.retention_days, self.settings.retention_batch)
            assert row is not None
            events += int(row["events"])
            deliveries += int(row["deliveries"])
            if row["events"] < self.settings.retention_batch and row["deliveries"] < self.settings.retention_batch:
                break
        self.trimmed_events += events
        self.trimmed_deliveries += deliveries
        if events or deliveries:
            logger.info("feed retention %s: %d events, %d deliveries deleted", self.schema, events, deliveries)
        return events, deliveries
