"""monitoring/ for a COMUE: the Prometheus recipe (file_sd targets labelled with school and
COMUE), the recording rules summed per COMUE (tested over three schools), the COMUE
dashboard. Everything through promtool (a missing promtool fails: CI installs it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_rules import (
    METRIC_NAME,
    MONITORING,
    documented_metrics,
    promtool,
    run,
    series_names,
)

REPO = MONITORING.parent
CONFIG = MONITORING / "prometheus-comue.yml"
RULES = MONITORING / "comue-rules.yml"
RULES_TEST = MONITORING / "comue-rules_test.yml"
DASHBOARD = MONITORING / "grafana-comue-dashboard.json"
RECORD_NAME = re.compile(r"\b(?:comue|school):[a-z0-9_]+:[a-z0-9_]+\b")


def recording_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def recorded() -> set[str]:
    return {rule["record"] for rule in recording_rules()}


def test_prometheus_recipe_passes_promtool_check_config():
    proc = run("check", "config", CONFIG.name)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "SUCCESS: 2 rule files found" in out and "WARNING" not in out, out
    config = yaml.safe_load(CONFIG.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "badged")
    assert job["file_sd_configs"] == [{"files": ["file_sd/badged-*.yml"]}]


def test_file_sd_examples_label_school_and_its_comue():
    files = sorted((MONITORING / "file_sd").glob("badged-*.yml"))
    assert len(files) >= 3
    for path in files:
        (group,) = yaml.safe_load(path.read_text())
        school = group["labels"]["school"]
        assert path.name == f"badged-{school}.yml"
        school_file = yaml.safe_load((REPO / "config" / "schools" / f"{school}.yaml")
                                     .read_text())
        assert group["labels"]["comue"] == school_file["comue"], path.name


def test_recording_rules_check_clean():
    proc = run("check", "rules", RULES.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(recording_rules())} rules found" in proc.stdout, proc.stdout
    assert "WARNING" not in proc.stdout + proc.stderr


def test_recording_rules_over_three_schools():
    proc = run("test", "rules", RULES_TEST.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    schools = {re.search(r'school="([^"]+)"', s["series"])[1]
               for t in tests for s in t["input_series"] if 'school="' in s["series"]}
    assert len(schools) >= 3
    tested = {case["expr"] for t in tests for case in t.get("promql_expr_test", [])}
    assert tested >= recorded(), f"recorded but never tested: {recorded() - tested}"


def test_recording_rules_sum_what_the_issue_asks_per_comue():
    names = recorded()
    for needed in ("comue:badged_card_spend_euros_total:sum", "comue:badged_card_stock:sum",
                   "comue:badged_cards:sum", "comue:badged_deadlines_at_risk:sum"):
        assert needed in names
    allowed = series_names(documented_metrics()) | {"up"}
    for rule in recording_rules():
        assert rule["record"].startswith("comue:") or rule["record"].startswith("school:")
        assert "comue" in rule["expr"], rule["record"]
        records = set(RECORD_NAME.findall(rule["expr"]))
        assert records <= recorded(), rule["record"]
        used = set(METRIC_NAME.findall(RECORD_NAME.sub("", rule["expr"])))
        assert used <= allowed, f"{rule['record']}: undocumented {used - allowed}"


def dashboard_queries(dashboard: dict) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"]
                if v["type"] == "query"]
    return queries


def test_comue_dashboard_parses_and_names_only_recorded_series_or_metrics(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "badged-comue"
    assert dashboard["uid"] != json.loads((MONITORING / "grafana-dashboard.json")
                                          .read_text())["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert "comue" in variables
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    queries = dashboard_queries(dashboard)
    metrics = series_names(documented_metrics()) | {"up"}
    used_records: set[str] = set()
    rules = []
    for index, query in enumerate(queries):
        records = set(RECORD_NAME.findall(query))
        assert records <= recorded(), f"{query}: not recorded {records - recorded()}"
        used_records |= records
        bare = RECORD_NAME.sub("", query)
        names = set(METRIC_NAME.findall(bare))
        assert names <= metrics, f"{query}: unknown {names - metrics}"
        others = set(re.findall(r"\b(?!badged_)([a-z_]+)\{", bare)) - {"up"}
        assert not others, f"{query}: non-badged series {others}"
        if query.startswith("label_values("):
            continue
        expr = query.replace("$__range", "1d").replace("$comue", ".*")
        assert "$" not in expr, query
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    assert "comue:badged_card_spend_euros_total:sum" in used_records
    assert "comue:badged_deadlines_at_risk:sum" in used_records
    rule_file = tmp_path / "comue-dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dash", "rules": rules}]}))
    proc = subprocess.run([promtool(), "check", "rules", str(rule_file)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_inventories_label_each_school_with_its_comue():
    """The role's file_sd target carries `badged_prometheus_labels` (+ school): each
    example school's inventory names the COMUE of its school file."""
    for vars_file in sorted((REPO / "ansible" / "inventories").glob("*/group_vars/badged/"
                                                                     "main.yml")):
        host_vars = yaml.safe_load(vars_file.read_text())
        school = yaml.safe_load((REPO / "config" / "schools" /
                                 f"{host_vars['badged_school']}.yaml").read_text())
        assert host_vars["badged_prometheus_labels"] == {"comue": school["comue"]}, vars_file
