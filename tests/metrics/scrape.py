"""Reading `GET /metrics` the way Prometheus does (the text exposition format)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.auth import METRICS_READ
from tests.auth import auth

PROMETHEUS = auth(METRICS_READ, name="prometheus")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=PROMETHEUS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value (0 when absent: a counter not incremented yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(samples: Samples, method: str, route: str, status_class: str) -> float:
    return value(samples, "http_request_duration_seconds_count", method=method, route=route, status_class=status_class)
