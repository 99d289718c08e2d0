"""Issue #15: the PromQL in docs/operations.md works as written against its own scrape configuration.

The examples filter on `service`, which `/metrics` does not carry: a target label that every
scrape job of the document must attach (the Kubernetes job by relabelling, the local one by
static labels). Every metric an example names must be one a service exposes, and every label
it filters or groups on must be on that metric or attached by every job.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.metrics.scrape import scrape

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
#: PromQL's functions and keywords the examples use (anything else with a name is a metric or a label)
PROMQL_WORDS = frozenset({"histogram_quantile", "sum", "max", "rate", "by"})
SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'([a-z_][a-z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def _block(text: str, after: str, language: str) -> str:
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start : text.index("```", start)]


def _target_labels(job: dict[str, Any]) -> dict[str, set[str]]:
    """The labels a job attaches to every target, with the values they can take (`*`: any)."""
    groups = job.get("static_configs")
    if groups:  # the labels every group has, with each group's value
        names = set.intersection(*(set(group.get("labels", {})) for group in groups))
        return {name: {group["labels"][name] for group in groups} for name in names}
    labels: dict[str, set[str]] = {}
    keep: set[str] | None = None
    for rule in job.get("relabel_configs", []):
        if rule.get("action") == "keep":
            keep = set(str(rule["regex"]).split("|"))
        elif "target_label" in rule:
            labels[rule["target_label"]] = keep if keep is not None else {"*"}
    return labels


def _examples(promql: str) -> list[str]:
    return [line for line in promql.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_examples_read_as_the_document_says() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    config = yaml.safe_load(_block(text, "**Prometheus's client and scrape config.**", "yaml"))
    jobs = config["scrape_configs"]
    assert len(jobs) >= 2, "a Kubernetes job and one for make run"
    for job in jobs:
        assert "service" in _target_labels(job), f"job {job['job_name']} attaches no `service` label"
    assert {"registry", "eligibility", "vouchers"} <= set.union(*(_target_labels(job)["service"] for job in jobs))
    assert _examples(_block(text, "Per-request counters are per process", "promql"))


async def test_every_metric_and_label_of_the_examples_exists(
    registry: httpx.AsyncClient, eligibility: httpx.AsyncClient, vouchers: httpx.AsyncClient
) -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    jobs = yaml.safe_load(_block(text, "**Prometheus's client and scrape config.**", "yaml"))["scrape_configs"]
    attached = [_target_labels(job) for job in jobs]
    exposed: dict[str, set[str]] = {}  # metric sample name → its label names, over the three services
    for client in (registry, eligibility, vouchers):
        missing = await client.get("/v1/no-such-route")  # a problem answer: counters with labels appear once used
        assert missing.status_code == 404
        for name, pairs in await scrape(client):
            exposed.setdefault(name, set()).update(label for label, _ in pairs)
    # a histogram's buckets appear only once observed; its family is known by its _count/_sum after any request
    for name in list(exposed):
        if name.endswith("_count"):
            exposed.setdefault(name[: -len("_count")] + "_bucket", set()).update(exposed[name] | {"le"})

    for example in _examples(_block(text, "Per-request counters are per process", "promql")):
        strings = re.findall(r'"[^"]*"', example)  # label values may hold braces (route templates)
        bare = re.sub(r'"[^"]*"', '""', example)
        grouped = {label.strip() for group in re.findall(r"by\s*\(([^)]*)\)", example) for label in group.split(",")}
        selectors = [
            (name, matchers or "")
            for name, matchers in SELECTOR.findall(re.sub(r"by\s*\([^)]*\)", "", bare))
            if name not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", name)
        ]
        assert selectors, example
        values = iter(value.strip('"') for value in strings)
        for name, matchers in selectors:
            assert name in exposed, f"{example}: no service exposes {name}"
            for label, _, _empty in MATCHER.findall(matchers):
                wanted = next(values)
                if label in exposed[name]:
                    continue
                for job, labels in zip(jobs, attached, strict=True):
                    assert label in labels, f"{example}: job {job['job_name']} does not attach `{label}`"
                    assert "*" in labels[label] or wanted in labels[label], f"{example}: {label}={wanted!r}"
            for label in grouped - {"le"}:
                assert label in exposed[name] or all(label in labels for labels in attached), f"{example}: {label}"
