"""promtool unit tests of charts/herald/rules/herald.rules.yaml: every alert fires on a synthetic
series that shows its condition and stays quiet on a normal one. Expected annotations are the
rule's own templates with the labels and the rendered $value of the case filled in."""

import re
import subprocess

import pytest
import yaml

from conftest import RULES

S = 'job="herald"'
GW_A = f'{S}, instance="10.0.0.1:8001", pod="gateway-a", role="gateway"'
GW_B = f'{S}, instance="10.0.0.2:8001", pod="gateway-b", role="gateway"'
PUB = f'{S}, instance="10.0.0.3:8001", pod="publisher", role="publisher"'
GW_A_LABELS = {"job": "herald", "instance": "10.0.0.1:8001", "pod": "gateway-a", "role": "gateway"}
GW_B_LABELS = {**GW_A_LABELS, "instance": "10.0.0.2:8001", "pod": "gateway-b"}


def hist(name, le, per_minute, minutes=30):
    """A histogram whose observations all fall in the bucket ending at `le` (and above)."""
    buckets = ["0.01", "0.1", "0.25", "0.5", "1", "+Inf"]
    return [{"series": f'{name}_bucket{{{GW_A}, le="{b}"}}',
             "values": f"0+{per_minute}x{minutes}" if float(b) >= float(le) else f"0x{minutes}"}
            for b in buckets]


def up(*targets, value="1x20"):
    return [{"series": f"up{{{t}}}", "values": value} for t in targets]


# alert -> (firing case, quiet case); a case: input series, eval time, and for the firing one the
# alert's labels and its rendered {{ $value }}.
CASES = {
    "HeraldDown": (
        dict(series=up(GW_A, value="0x15"), at="10m", labels={}, value=None),
        dict(series=up(GW_A, value="1x15"), at="10m")),
    "HeraldNoReadyGateways": (
        dict(series=up(GW_A, GW_B) + [{"series": f"herald_engine_up{{{GW_A}}}", "values": "0x20"},
                                      {"series": f"herald_engine_up{{{GW_B}}}", "values": "0x20"}],
             at="5m", labels={}, value=None),
        dict(series=up(GW_A, GW_B) + [{"series": f"herald_engine_up{{{GW_A}}}", "values": "1x20"},
                                      {"series": f"herald_engine_up{{{GW_B}}}", "values": "0x20"}],
             at="5m")),
    "HeraldNotReady": (
        dict(series=[
            {"series": 'kube_deployment_status_replicas_available{namespace="herald", deployment="herald-gateway"}',
             "values": "1x20"},
            {"series": 'kube_deployment_spec_replicas{namespace="herald", deployment="herald-gateway"}',
             "values": "2x20"}],
             at="15m", labels={"namespace": "herald", "deployment": "herald-gateway"}, value=None),
        dict(series=[
            {"series": 'kube_deployment_status_replicas_available{namespace="herald", deployment="herald-gateway"}',
             "values": "2x20"},
            {"series": 'kube_deployment_spec_replicas{namespace="herald", deployment="herald-gateway"}',
             "values": "2x20"}],
             at="15m")),
    "HeraldRedisUnavailable": (
        dict(series=[{"series": f"herald_engine_up{{{GW_A}}}", "values": "1 1 0 0 0 0 0"},
                     {"series": f"herald_engine_up{{{GW_B}}}", "values": "1x6"}],
             at="5m", labels=GW_A_LABELS, value=None),
        dict(series=[{"series": f"herald_engine_up{{{GW_A}}}", "values": "1x6"}], at="5m")),
    "HeraldNodeMissing": (
        dict(series=up(GW_A, GW_B, PUB) + [{"series": f"herald_nodes{{{GW_A}}}", "values": "3x20"},
                                           {"series": f"herald_nodes{{{GW_B}}}", "values": "2x20"},
                                           {"series": f"herald_nodes{{{PUB}}}", "values": "3x20"}],
             at="10m", labels=GW_B_LABELS, value="2"),
        dict(series=up(GW_A, GW_B, PUB) + [{"series": f"herald_nodes{{{t}}}", "values": "3x20"}
                                           for t in (GW_A, GW_B, PUB)],
             at="10m")),
    "HeraldDeliveryLatencyHigh": (
        dict(series=hist("herald_publish_to_write_seconds", "1", 600), at="20m", labels={}, value="995ms"),
        dict(series=hist("herald_publish_to_write_seconds", "0.01", 600), at="20m")),
    "HeraldSlowClientCutoffs": (
        dict(series=[{"series": f'herald_slow_client_cutoffs_total{{{GW_A}, transport="websocket"}}',
                      "values": "0+120x30"}], at="20m", labels={}, value="2"),
        dict(series=[{"series": f'herald_slow_client_cutoffs_total{{{GW_A}, transport="websocket"}}',
                      "values": "0+6x30"}], at="20m")),
    "HeraldPubSubGapsFilled": (
        dict(series=[{"series": f'herald_redis_gap_checks_total{{{GW_A}, outcome="filled"}}',
                      "values": "0 0 0 1 1 1 1 1"}], at="5m", labels={"pod": "gateway-a"}, value="1"),
        dict(series=[{"series": f'herald_redis_gap_checks_total{{{GW_A}, outcome="filled"}}', "values": "0x8"},
                     {"series": f'herald_redis_gap_checks_total{{{GW_A}, outcome="unrecoverable"}}',
                      "values": "0x8"}], at="5m")),
    "HeraldClientResyncs": (
        dict(series=[{"series": f"herald_redis_resyncs_total{{{GW_A}}}", "values": "0 0 0 2 2 2 2 2"},
                     {"series": f'herald_redis_gap_checks_total{{{GW_A}, outcome="unrecoverable"}}',
                      "values": "0 0 0 1 1 1 1 1"}],
             at="5m", labels={"pod": "gateway-a"}, value="2"),
        dict(series=[{"series": f"herald_redis_resyncs_total{{{GW_A}}}", "values": "0x8"},
                     {"series": f'herald_redis_gap_checks_total{{{GW_A}, outcome="unrecoverable"}}',
                      "values": "0x8"}], at="5m")),
    "HeraldReconnectStorm": (
        # One connect a second for an hour, then 500 a second.
        dict(series=[{"series": f'herald_connects_total{{{GW_A}, transport="websocket"}}',
                      "values": "0+60x60 3600+30000x10"}], at="68m", labels={}, value="500"),
        # 300 a second all along: busy, but normal for this cluster.
        dict(series=[{"series": f'herald_connects_total{{{GW_A}, transport="websocket"}}',
                      "values": "0+18000x70"}], at="68m")),
    "HeraldFdsNearLimit": (
        dict(series=[{"series": f"herald_process_open_fds{{{GW_A}}}", "values": "900x20"},
                     {"series": f"herald_process_max_fds{{{GW_A}}}", "values": "1000x20"},
                     {"series": f"herald_process_open_fds{{{GW_B}}}", "values": "100x20"},
                     {"series": f"herald_process_max_fds{{{GW_B}}}", "values": "1000x20"}],
             at="15m", labels=GW_A_LABELS, value="90%"),
        dict(series=[{"series": f"herald_process_open_fds{{{GW_A}}}", "values": "100x20"},
                     {"series": f"herald_process_max_fds{{{GW_A}}}", "values": "1000x20"}], at="15m")),
    "HeraldApiErrors": (
        dict(series=[{"series": f'herald_api_requests_total{{{PUB}, method="publish", result="ok"}}',
                      "values": "0+540x30"},
                     {"series": f'herald_api_requests_total{{{PUB}, method="publish", result="100"}}',
                      "values": "0+60x30"}], at="20m", labels={}, value="10%"),
        dict(series=[{"series": f'herald_api_requests_total{{{PUB}, method="publish", result="ok"}}',
                      "values": "0+600x30"},
                     {"series": f'herald_api_requests_total{{{PUB}, method="publish", result="102"}}',
                      "values": "0+6x30"}], at="20m")),
    "HeraldEngineErrors": (
        dict(series=[{"series": f"herald_engine_errors_total{{{PUB}}}", "values": "0+120x20"}],
             at="15m", labels={}, value="2"),
        dict(series=[{"series": f"herald_engine_errors_total{{{PUB}}}", "values": "0x20"}], at="15m")),
    "HeraldHighPublishLatency": (
        dict(series=hist("herald_publish_duration_seconds", "1", 600), at="20m", labels={}, value="995ms"),
        dict(series=hist("herald_publish_duration_seconds", "0.01", 600), at="20m")),
}


def rules():
    return yaml.safe_load(RULES.read_text())["groups"][0]["rules"]


def expand(template, labels, value):
    """The rule's annotation template with the case's labels and rendered $value."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    return re.sub(r"\{\{ \$value[^}]*\}\}", lambda m: value, text)


def test_every_alert_has_a_firing_and_a_quiet_case():
    assert [r["alert"] for r in rules()] == list(CASES)


def test_promtool_unit_tests(tmp_path):
    tests = []
    for rule in rules():
        firing, quiet = CASES[rule["alert"]]
        labels = {**firing["labels"], **rule["labels"]}
        annotations = {k: expand(v, labels, firing["value"]) for k, v in rule["annotations"].items()}
        assert "{{" not in "".join(annotations.values()), rule["alert"]
        tests.append({"name": f'{rule["alert"]} fires', "interval": "1m", "input_series": firing["series"],
                      "alert_rule_test": [{"eval_time": firing["at"], "alertname": rule["alert"],
                                           "exp_alerts": [{"exp_labels": labels,
                                                           "exp_annotations": annotations}]}]})
        tests.append({"name": f'{rule["alert"]} stays quiet', "interval": "1m", "input_series": quiet["series"],
                      "alert_rule_test": [{"eval_time": quiet["at"], "alertname": rule["alert"],
                                           "exp_alerts": []}]})
    path = tmp_path / "herald.rules.test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False))
    out = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    print(out.stdout + out.stderr)
    print(f"{len(tests)} promtool cases: {len(CASES)} alerts x (fires, stays quiet)")
    assert out.returncode == 0, out.stdout + out.stderr
