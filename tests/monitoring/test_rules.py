"""monitoring/: Prometheus rules (promtool), their unit tests, the Grafana dashboard.

`promtool` must be installed (Debian package `prometheus`); a missing tool is a failure,
not a skip, because CI installs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
README = MONITORING / "README.md"

EXPECTED_ALERTS = {
    "BadgedDown",
    "BadgedConfigReloadFailed",
    "BadgedReaderDown",
    "BadgedSamMissing",
    "BadgedTaskNotSucceeding",
    "BadgedOutboxNotDraining",
    "BadgedCrousDeadlineMissed",
    "BadgedCrousDeadlineNear",
    "BadgedCardStockLow",
    "BadgedCrousSyncFailing",
    "BadgedCrousPeopleInBlockingError",
    "BadgedCrousChangesPending",
    "BadgedAccessExportStale",
}
# Extensions of docs/contracts.md's metrics that the rules need (the daemon must export them).
NEW_METRICS = {
    "badged_exchange_last_sent_timestamp_seconds",
    "badged_academic_year_start_timestamp_seconds",
    "badged_card_stock_low_threshold",
    "badged_crous_sync_last_run_timestamp_seconds",
    "badged_crous_sync_last_success_timestamp_seconds",
    "badged_access_last_run_timestamp_seconds",
    "badged_access_interval_seconds",
}
METRIC_NAME = re.compile(r"\bbadged_[a-z0-9_]+\b")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found in PATH: install the Debian package 'prometheus' "
            "(apt-get install --no-install-recommends prometheus)",
            pytrace=False,
        )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=MONITORING,
        check=False,
    )


def documented_metrics() -> dict[str, str]:
    """Metric name → type, from the table of monitoring/README.md."""
    table = re.findall(r"^\| `(badged_[a-z0-9_]+)` \| (\w+) \|", README.read_text(), re.M)
    assert table, "no metric table in monitoring/README.md"
    return dict(table)


def series_names(metrics: dict[str, str]) -> set[str]:
    """Names a query may use: counters as documented (_total), histograms' series."""
    names = set()
    for name, kind in metrics.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    queries.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            queries.append(query["query"])
        elif variable["type"] == "query":
            queries.append(query)
    return queries


def test_check_rules_clean():
    proc = run("check", "rules", ALERTS.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout, proc.stdout
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_rule_unit_tests_pass():
    proc = run("test", "rules", ALERTS_TEST.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout, proc.stdout


def test_every_alert_is_tested_firing_and_quiet():
    names = {rule["alert"] for rule in alert_rules()}
    assert names == EXPECTED_ALERTS
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired, quiet = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == EXPECTED_ALERTS, f"never tested firing: {EXPECTED_ALERTS - fired}"
    assert quiet == EXPECTED_ALERTS, f"never tested quiet: {EXPECTED_ALERTS - quiet}"


def test_alerts_have_severity_summary_description():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_rules_use_only_documented_metrics():
    metrics = documented_metrics()
    assert set(metrics) >= NEW_METRICS
    allowed = series_names(metrics)
    for rule in alert_rules():
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used <= allowed, f"{rule['alert']}: undocumented {used - allowed}"
        other = set(re.findall(r"\b(?!badged_)([a-z_]+)\{", rule["expr"]))
        assert other <= {"up"}, f"{rule['alert']}: non-badged metrics {other}"


def test_dashboard_parses_and_uses_documented_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "badged"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    queries = dashboard_queries()
    assert queries
    allowed = series_names(documented_metrics())
    used = set()
    for query in queries:
        used |= set(METRIC_NAME.findall(query))
    assert used <= allowed, f"dashboard queries undocumented metrics: {used - allowed}"
    # The dashboard covers what docs/operations.md relies on.
    for needed in (
        "badged_reader_up",
        "badged_card_reads_total",
        "badged_card_read_errors_total",
        "badged_card_read_duration_seconds_bucket",
        "badged_task_last_success_timestamp_seconds",
        "badged_outbox_pending_batches",
        "badged_exchange_deadline_timestamp_seconds",
        "badged_card_stock",
        "badged_card_spend_euros_total",
    ):
        assert needed in used, needed


def test_dashboard_queries_are_valid_promql(tmp_path):
    """Every dashboard query, with Grafana's variables substituted, passes promtool."""
    substitutions = {
        "$__rate_interval": "5m",
        "$__range": "1d",
        "$instance": ".*",
    }
    rules = []
    for index, query in enumerate(dashboard_queries()):
        if query.startswith("label_values("):
            continue
        for variable, value in substitutions.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"unknown Grafana variable in {query!r}"
        rules.append({"record": f"dashboard:query_{index}", "expr": query})
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
