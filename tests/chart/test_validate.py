"""Rendered manifests are valid: Kubernetes 1.30 schemas (kubernetes-validate --strict), CRD schemas
for ServiceMonitor / PrometheusRule / HTTPRoute, and promtool for the alert rules."""

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prom_v1

from conftest import find, object_list, render, render_text

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


def test_promtool_check_rules(tmp_path):
    rule, path = rule_file(tmp_path)
    names = [r["alert"] for r in rule["spec"]["groups"][0]["rules"]]
    assert names == ["HeraldDown", "HeraldNotReady", "HeraldHighDisconnectRate", "HeraldEngineErrors",
                     "HeraldHighPublishLatency", "HeraldDeliveryLag", "HeraldApiErrors",
                     "HeraldReconnectStorm", "HeraldFdsNearLimit"]
    for r in rule["spec"]["groups"][0]["rules"]:
        assert r["for"] and r["labels"]["severity"] in ("critical", "warning")
        assert {"summary", "description", "runbook_url"} <= set(r["annotations"])
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    print(out.stdout + out.stderr)
    assert out.returncode == 0 and "SUCCESS: 9 rules found" in out.stdout, out.stdout + out.stderr


def test_promtool_alerts_fire(tmp_path):
    """Unit tests of two alerts on synthetic series: no target up, and fds close to the limit."""
    rule, path = rule_file(tmp_path)
    down = rule["spec"]["groups"][0]["rules"][0]["annotations"]
    runbook = down["runbook_url"].replace("#heralddown", "#heraldfdsnearlimit")
    sel = 'job="herald-metrics", namespace="herald"'
    tests = {
        "rule_files": [str(path)],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m",
             "input_series": [{"series": f'up{{{sel}, pod="herald-gateway-a"}}', "values": "0x15"}],
             "alert_rule_test": [{"eval_time": "10m", "alertname": "HeraldDown",
                                  "exp_alerts": [{"exp_labels": {"severity": "critical"},
                                                 "exp_annotations": down}]}]},
            {"interval": "1m",
             "input_series": [
                 {"series": f'herald_process_open_fds{{{sel}, pod="p"}}', "values": "900x20"},
                 {"series": f'herald_process_max_fds{{{sel}, pod="p"}}', "values": "1000x20"},
                 {"series": f'herald_process_open_fds{{{sel}, pod="q"}}', "values": "100x20"},
                 {"series": f'herald_process_max_fds{{{sel}, pod="q"}}', "values": "1000x20"}],
             "alert_rule_test": [{"eval_time": "15m", "alertname": "HeraldFdsNearLimit",
                                  "exp_alerts": [{"exp_labels": {"severity": "warning", "pod": "p",
                                                                 "job": "herald-metrics",
                                                                 "namespace": "herald"},
                                                  "exp_annotations": {
                                                      "summary": "Herald pod p is close to its file descriptor limit",
                                                      "description": "p uses 90% of its file descriptors: new connections will soon fail. Scale out the gateways or raise the container's nofile limit.",
                                                      "runbook_url": runbook}}]}]},
        ],
    }
    tpath = tmp_path / "tests.yaml"
    tpath.write_text(yaml.safe_dump(tests))
    out = subprocess.run(["promtool", "test", "rules", str(tpath)], capture_output=True, text=True)
    print(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr


def test_notes_render():
    notes = render_text(notes=True).stdout
    assert "exec deploy/herald-gateway -- herald gentoken --user 42" in notes
    assert "svc/herald-internal 8001:8001" in notes and "X-API-Key" in notes
    assert "svc/herald-client 8000:8000" in notes
    assert "FOR TRIALS ONLY" in notes
    assert "FOR TRIALS ONLY" not in render_text("values-production.yaml", notes=True).stdout
