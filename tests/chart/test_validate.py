"""Rendered manifests are valid: Kubernetes 1.30 schemas (kubernetes-validate --strict), CRD schemas
for ServiceMonitor / PrometheusRule / HTTPRoute, and promtool for the alert rules (whose unit tests
are in tests/observability)."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prom_v1

from conftest import CHART, ROOT, find, object_list, render, render_text

HERE = Path(__file__).parent
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "HTTPRoute"}
HTTPROUTE = ["httpRoute.enabled=true", "httpRoute.parentRefs=null"]

CASES = {
    "default": ((), ()),
    "production": (("values-production.yaml",), ()),
    "cluster": (("values-cluster.yaml",), ()),
    "httproute": ((), ("httpRoute.enabled=true", "httpRoute.hostnames={realtime.example.com}")),
}


def case_objects(name, tmp_path):
    files, sets = CASES[name]
    if name == "httproute":
        parent = tmp_path / "parent.yaml"
        parent.write_text("httpRoute:\n  parentRefs:\n    - name: public\n      namespace: gateway-system\n")
        files = (str(parent),)
    return render(*files, sets=sets)


@pytest.mark.parametrize("name", CASES)
def test_kubernetes_schemas(name, tmp_path):
    objs = case_objects(name, tmp_path)
    print(f"\n{name}: {len(objs)} objects: " + ", ".join(object_list(objs)))
    builtin = [o for o in objs if o["kind"] not in CRD_KINDS]
    path = tmp_path / "builtin.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    out = subprocess.run(["kubernetes-validate", "-k", "1.30.0", "--strict", str(path)],
                         capture_output=True, text=True)
    print(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed for resource") == len(builtin)


@pytest.mark.parametrize("name", ["production", "cluster", "httproute"])
def test_crd_schemas(name, tmp_path):
    crs = [o for o in case_objects(name, tmp_path) if o["kind"] in CRD_KINDS]
    assert crs, "no custom resources rendered"
    out = subprocess.run(["node", str(HERE / "crd_validate.mjs")], input=json.dumps(crs),
                         capture_output=True, text=True, cwd=HERE)
    print(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    # The packaged CRD schemas, like the CRDs, accept unknown fields; check those against the
    # Prometheus Operator models, made strict.
    for o in crs:
        if o["kind"] == "HTTPRoute":
            spec = o["spec"]
            assert set(spec) <= {"parentRefs", "hostnames", "rules"}
            assert all(set(r) <= {"matches", "backendRefs"} for r in spec["rules"])
            continue
        schema = strict(getattr(prom_v1, o["kind"]).model_json_schema(by_alias=True))
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(o)]
        assert not errors, f'{o["kind"]}: {errors}'


def strict(node):
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


def test_strict_crd_check_catches_a_misspelled_field():
    sm = find(render("values-production.yaml"), "ServiceMonitor", "herald")
    sm["spec"]["endpoints"][0]["scrapeTimout"] = "5s"
    schema = strict(prom_v1.ServiceMonitor.model_json_schema(by_alias=True))
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(sm)]
    assert any("scrapeTimout" in e for e in errors), errors


def rule_file(tmp_path):
    rule = find(render("values-production.yaml"), "PrometheusRule", "herald")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return rule, path


ALERTS = ["HeraldDown", "HeraldNoReadyGateways", "HeraldNotReady", "HeraldRedisUnavailable", "HeraldNodeMissing",
          "HeraldDeliveryLatencyHigh", "HeraldSlowClientCutoffs", "HeraldPubSubGapsFilled", "HeraldClientResyncs",
          "HeraldReconnectStorm", "HeraldFdsNearLimit", "HeraldApiErrors", "HeraldEngineErrors",
          "HeraldHighPublishLatency"]


def test_promtool_check_rules(tmp_path):
    rule, path = rule_file(tmp_path)
    rules = rule["spec"]["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == ALERTS
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for r in rules:
        assert r["for"] and r["labels"]["severity"] in ("critical", "warning")
        assert {"summary", "description", "runbook_url"} <= set(r["annotations"])
        anchor = r["alert"].lower()
        assert r["annotations"]["runbook_url"].endswith(f"/docs/runbook.md#{anchor}")
        assert f"\n## {r['alert']}\n" in runbook, f"docs/runbook.md has no section {r['alert']}"
        assert 'job="herald-metrics", namespace="herald"' in r["expr"] or r["alert"] == "HeraldNotReady"
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    print(out.stdout + out.stderr)
    assert out.returncode == 0 and f"SUCCESS: {len(ALERTS)} rules found" in out.stdout, out.stdout + out.stderr


def test_plain_rules_file_is_the_chart_rules():
    """rules/herald.rules.yaml (for rule_files) is the PrometheusRule rendered with job="herald";
    the chart ships it and promtool accepts it."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "observability" / "gen-rules.py"), "--check"],
                         capture_output=True, text=True)
    print(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    plain = yaml.safe_load((CHART / "rules" / "herald.rules.yaml").read_text())
    default = find(render(sets=["metrics.prometheusRule.enabled=true"]), "PrometheusRule", "herald")
    sel = 'job="herald-metrics", namespace="herald"'
    for p, d in zip(plain["groups"][0]["rules"], default["spec"]["groups"][0]["rules"], strict=True):
        assert p["expr"].replace('job="herald"', sel) == d["expr"]
        assert p["annotations"] == d["annotations"] and p["for"] == d["for"]
    out = subprocess.run(["promtool", "check", "rules", str(CHART / "rules" / "herald.rules.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_thresholds_come_from_values():
    sets = ["metrics.prometheusRule.enabled=true", "metrics.prometheusRule.thresholds.fdsRatio=0.9",
            "metrics.prometheusRule.thresholds.reconnectStormFactor=7",
            "metrics.prometheusRule.selector=job=\"edge\""]
    rules = {r["alert"]: r for r in find(render(sets=sets), "PrometheusRule", "herald")["spec"]["groups"][0]["rules"]}
    assert rules["HeraldFdsNearLimit"]["expr"] == 'herald_process_open_fds{job="edge"} / herald_process_max_fds{job="edge"} > 0.9'
    assert "> 7 * sum(rate(herald_connects_total{job=\"edge\"}[1h]))" in rules["HeraldReconnectStorm"]["expr"]


def test_servicemonitor_labels_targets_with_their_role():
    sm = find(render("values-production.yaml"), "ServiceMonitor", "herald")
    assert sm["spec"]["endpoints"][0]["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"], "targetLabel": "role"}]


def test_notes_render():
    notes = render_text(notes=True).stdout
    assert "exec deploy/herald-gateway -- herald gentoken --user 42" in notes
    assert "svc/herald-internal 8001:8001" in notes and "X-API-Key" in notes
    assert "svc/herald-client 8000:8000" in notes
    assert "FOR TRIALS ONLY" in notes
    assert "FOR TRIALS ONLY" not in render_text("values-production.yaml", notes=True).stdout
