"""docs/alerts.yml: well-formed rules that name only metrics the bot really exposes.

No promtool here: the YAML is loaded, each rule checked for what Prometheus requires, and
every `tipjar_...` name in an expression looked up among the names of the app's registry
after the bot has done some work (so labelled counters have their samples).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import Metric

from bot.config import Settings
from bot.metrics import job_run, observe_api_call, observe_poll, observe_webhook
from bot.metrics_state import LedgerCollector, registry_for

RULES = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"
NAME = re.compile(r"\btipjar_[a-z0-9_]+")


def exposed_names(families: list[Metric]) -> set[str]:
    names = {f.name for f in families} | {s.name for f in families for s in f.samples}
    names |= {f"{f.name}_total" for f in families if f.type == "counter"}
    return names


def test_every_rule_is_well_formed_and_names_existing_metrics(engine, clock):
    observe_poll("x", 1, [("held", 1)])
    observe_api_call("x", "GET /2/users/:id/mentions", 200, 74)
    observe_webhook("checkout.session.completed", "applied")
    with job_run("poll"):
        pass
    registry = registry_for(LedgerCollector(engine, Settings(), clock, cache_seconds=0))
    names = exposed_names(list(registry.collect()))

    loaded = yaml.safe_load(RULES.read_text())
    rules = [rule for group in loaded["groups"] for rule in group["rules"]]

    assert {"tipjar_last_poll_age_seconds", "tipjar_job_runs_total"} <= names
    alerts = [rule["alert"] for rule in rules]
    assert len(alerts) == len(set(alerts)), "alert names must be unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        used = set(NAME.findall(rule["expr"]))
        assert used, f"{rule['alert']} names no tipjar metric"
        missing = used - names
        assert not missing, f"{rule['alert']} names metrics the bot does not expose: {missing}"


def test_the_rules_cover_what_the_issue_asks_for():
    text = RULES.read_text()
    for metric in (
        "tipjar_last_poll_age_seconds",  # no successful poll for 10 minutes
        "tipjar_outbox_rows",  # outbox failures
        "tipjar_audit_problems",  # audit problems
        "tipjar_escrow_expiring_unnoticed_holds",  # holds expiring in 24h, no notice
        "tipjar_payouts_failing",  # a failed payout
        "tipjar_platform_spend_cap_micros",  # spend cap reached
    ):
        assert metric in text, metric
    assert "> 600" in text
