"""Dashboards and alert rules name only metrics that a running Herald exports: every dashboards/*.json
ships in the ConfigMaps as valid JSON, is what scripts/observability/gen-dashboards.py writes, filters
every query by namespace and pod, and each query's metric appears in the binary's /metrics.
tests/observability runs every query against a live Prometheus."""

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
import websockets

from conftest import CHART, ROOT, find, free_port, render, wait_for

# A metric name right before a label selector: `herald_connections{...}`.
SELECTED = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
NOT_HERALD = {"up", "kube_deployment_status_replicas_available", "kube_deployment_spec_replicas"}


def get(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read().decode()


@pytest.fixture(scope="module")
def exposed(herald_bin, redis_url):
    """Metric names of a live Herald (role all, Redis engine, so that the engine's families exist)
    after a connect, subscribe, publish, delivery and disconnect."""
    client, internal = free_port(), free_port()
    env = dict(os.environ, HERALD_AUTH__HMAC_SECRET="chart-test-secret", HERALD_API__KEY="chart-test-key",
               HERALD_ENGINE__REDIS_URL=redis_url)
    proc = subprocess.Popen([str(herald_bin), "--client-addr", f"127.0.0.1:{client}",
                             "--internal-addr", f"127.0.0.1:{internal}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(internal), 30, "herald /readyz")
        token = subprocess.run([str(herald_bin), "gentoken", "--user", "7"], env=env, capture_output=True,
                               text=True, check=True).stdout.strip()
        asyncio.run(exercise(client, internal, token))
        # The disconnect is counted once the server has seen the close.
        def counted():
            text = get(f"http://127.0.0.1:{internal}/metrics")[1]
            return text if "herald_disconnects_total{" in text else None
        text = wait_for(counted, 10, "herald_disconnects_total")
    finally:
        proc.terminate()
        proc.wait(30)
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            names.add(name)
    return names


def ready(port):
    try:
        return get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    except OSError:
        return False


async def exercise(client, internal, token):
    async with websockets.connect(f"ws://127.0.0.1:{client}/connection/websocket") as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
        assert "connect" in json.loads(await ws.recv())
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "chart-test"}}))
        assert "subscribe" in json.loads(await ws.recv())
        body = json.dumps({"channel": "chart-test", "data": {"n": 1}}).encode()
        status, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{internal}/api/publish", body,
                                            {"X-API-Key": "chart-test-key", "Content-Type": "application/json"})
        assert status == 200
        push = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert push["push"]["pub"]["data"] == {"n": 1}


def dashboards():
    paths = sorted((CHART / "dashboards").glob("*.json"))
    assert paths, "no dashboards"
    return paths


def test_dashboards_are_generated():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "observability" / "gen-dashboards.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert {p.name for p in dashboards()} == {"herald-overview.json", "herald-engine.json", "herald-nodes.json"}


def test_dashboard_configmaps_carry_every_dashboard():
    objs = render(sets=["dashboards.enabled=true"])
    for path in dashboards():
        cm = find(objs, "ConfigMap", f"herald-dashboard-{path.stem}")
        assert json.loads(cm["data"][path.name]) == json.loads(path.read_text())


@pytest.mark.parametrize("path", dashboards(), ids=lambda p: p.name)
def test_dashboard_queries_use_exported_metrics(path, exposed):
    dash = json.loads(path.read_text())
    assert 38 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert dash["uid"] and variables["datasource"]["type"] == "datasource"
    assert variables["namespace"]["query"]["query"] == "label_values(herald_build_info, namespace)"
    assert variables["pod"]["query"]["query"] == 'label_values(herald_build_info{namespace="$namespace"}, pod)'
    assert variables["pod"]["multi"] and variables["pod"]["includeAll"]
    exprs = [v["query"]["query"] for v in variables.values() if v["type"] == "query"]
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert 'namespace="$namespace", pod=~"$pod"' in t["expr"], f'{panel["title"]}: {t["expr"]}'
        exprs += [t["expr"] for t in panel["targets"]]
    print(f"\n{path.name}: {len(dash['panels'])} panels, {len(exprs)} queries")
    for expr in exprs:
        metrics = set(SELECTED.findall(expr)) | set(re.findall(r"label_values\((\w+)", expr))
        assert metrics, f"no metric in {expr}"
        missing = metrics - exposed
        assert not missing, f"{expr}: {missing} not in /metrics"


def test_alert_rules_use_exported_metrics(exposed):
    rule = find(render("values-production.yaml"), "PrometheusRule", "herald")
    for r in rule["spec"]["groups"][0]["rules"]:
        metrics = set(SELECTED.findall(r["expr"])) - NOT_HERALD
        assert not metrics - exposed, f'{r["alert"]}: {metrics - exposed} not in /metrics'
