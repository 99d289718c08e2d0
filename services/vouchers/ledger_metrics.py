"""The vouchers service's metrics, registered with the kernel's (shared/metrics.py) by `register_metrics`.

Scrape-time figures of the ledger and its sealer (`ledger_figures`), and the ceiling counter
(metrics.py) as an observer of every problem answered.
"""

from __future__ import annotations

from typing import cast

import asyncpg
from fastapi import FastAPI
from prometheus_client.metrics_core import Metric
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import metrics
from shared.errors import observe_problems

from .chain.sealer import seal_lag
from .metrics import count_ceiling

SEALED_SQL = "SELECT coalesce(max(seq), 0) FROM vouchers.seals"


async def ledger_figures(app: FastAPI, connection: AsyncConnection) -> list[Metric]:
    """Entries in the ledger and how far sealing is behind: index probes, in one snapshot.

    Entries = the chain's last seal sequence number + the entries after the last sealed one
    (the sealer writes one seal per entry; a sealing transaction that failed leaves a gap in
    the sequence, so this is exact or slightly above). With the sealer off (interval 0)
    every entry is "behind" and this counts the whole ledger: leave the sealer on.
    """

    raw = await connection.get_raw_connection()
    driver = cast(asyncpg.Connection, raw.driver_connection)  # SQLAlchemy types it Any | None; it is open here
    lag = await seal_lag(driver)
    sealed = int((await connection.execute(text(SEALED_SQL))).scalar_one())
    figures: list[Metric] = [
        metrics.counter("vouchers_ledger_entries", "Entries in the ledger (append-only)", sealed + lag.unsealed),
        metrics.gauge(
            "vouchers_seal_lag_entries", "Committed entries not yet sealed into the hash chain", lag.unsealed
        ),
        metrics.gauge("vouchers_seal_lag_seconds", "Age of the oldest entry not yet sealed (0: none)", lag.lag_seconds),
    ]
    sealer = getattr(app.state, "sealer", None)
    if sealer is not None:
        figures += [
            metrics.gauge("vouchers_sealer_enabled", "1 if this process runs the sealer", int(sealer.enabled)),
            metrics.counter("vouchers_sealer_sealed", "Entries sealed by this process", sealer.stats.sealed_total),
            metrics.gauge(
                "vouchers_sealer_failing",
                "1 if this process's last sealing round failed",
                int(bool(sealer.last_error)),
            ),
        ]
    return figures


def register_metrics() -> None:
    """The ledger's scrape-time figures and the ceiling counter (idempotent: each is registered once)."""
    metrics.on_scrape("vouchers", ledger_figures)
    observe_problems(count_ceiling)
