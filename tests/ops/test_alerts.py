"""Alert rules and dashboard: promtool checks the rule file and runs its unit tests;
every metric the rules and the dashboard use exists in a real exposition, which itself
passes ``promtool check metrics``; the dashboard's queries are valid PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.ops.conftest import ALERT_TESTS, ALERTS, DASHBOARD, family_names, run_tool

METRIC_RE = re.compile(r"\b((?:retentiond|process)_[a-z0-9_]+)\b")


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_promtool_check_rules(promtool):
    p = run_tool(promtool, "check", "rules", str(ALERTS))
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in p.stdout


def test_promtool_unit_tests_of_every_alert(promtool):
    p = run_tool(promtool, "test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout
    tested = {t["alertname"] for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == set(rule_exprs()), "every alert needs a firing case in alerts_test.yaml"


def test_the_issue_asks_for_these_alerts():
    rules = rule_exprs()
    expected = {
        "RetentiondDeletionsOverdue": "retentiond_objects_overdue",
        "RetentiondSweepNotSuccessful": "retentiond_last_sweep_success_timestamp_seconds",
        "RetentiondIngestErrors": "retentiond_errors_total",
        "RetentiondProofLogWriteFailures": 'stage="proof"',
        "RetentiondQuarantineGrowing": "retentiond_quarantined_objects",
    }
    for alert, needle in expected.items():
        assert needle in rules[alert], alert


def test_exposition_is_clean_for_promtool(promtool, exposition):
    p = run_tool(promtool, "check", "metrics", stdin=exposition)
    assert p.returncode == 0, p.stdout + p.stderr


def test_rules_and_dashboard_use_only_exported_metrics(exposition):
    exported = family_names(exposition)
    used = {m for e in [*rule_exprs().values(), *dashboard_exprs()] for m in METRIC_RE.findall(e)}
    assert used, "no metric found in the rules or dashboard"
    missing = sorted(used - exported)
    assert not missing, f"used but never exported: {missing}"


def test_dashboard_queries_are_valid_promql(promtool, tmp_path: Path):
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    # Grafana's variables become what they stand for, then promtool parses each query
    rules = [{"record": f"dashboard:query{i}",
              "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
             for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    p = run_tool(promtool, "check", "rules", str(path))
    assert p.returncode == 0, p.stdout + p.stderr


def test_dashboard_is_importable_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "retentiond" and dash["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "instance"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert '$instance' in target["expr"], (panel["title"], target["expr"])


def test_every_alert_has_a_runbook_section():
    doc = yaml.safe_load(ALERTS.read_text())
    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for rule in (r for g in doc["groups"] for r in g["rules"]):
        alert = rule["alert"]
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{alert.lower()}"
        assert f"\n### {alert}\n" in operations, f"docs/operations.md lacks a section {alert}"
        assert rule["labels"]["severity"] in ("warning", "critical")


def test_every_exported_metric_is_documented(exposition):
    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    families = {line.split()[2] for line in exposition.splitlines()
                if line.startswith("# TYPE retentiond_")
                and not line.split()[2].endswith("_created")}  # client_python's own
    assert len(families) >= 25
    missing = sorted(f for f in families if f"`{f}" not in operations)
    assert not missing, f"docs/operations.md, Metrics, lacks {missing}"
