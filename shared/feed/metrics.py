"""The feed's scrape-time figures (GET /metrics), which each service registers with `shared.metrics.on_scrape`."""

from fastapi import FastAPI
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.feed.outbox import outbox_lag
from shared.metrics import gauge


async def outbox_figures(app: FastAPI, connection: AsyncConnection) -> list[Metric]:
    """How far the webhook dispatcher is behind, and the subscriptions by status."""
    lag = await outbox_lag(connection, app.state.schema)
    subscriptions = GaugeMetricFamily("webhook_subscriptions", "Webhook subscriptions by status", labels=["status"])
    for status, count in lag.subscriptions.items():
        subscriptions.add_metric([status], count)
    return [
        gauge(
            "outbox_undelivered_events",
            "Events after the positions of active webhook subscriptions (each counted up to 10,000)",
            lag.undelivered,
        ),
        gauge(
            "outbox_oldest_undelivered_age_seconds",
            "Age of the oldest event an active webhook subscription still waits for (0: none)",
            lag.oldest_age_seconds,
        ),
        subscriptions,
    ]
