"""Live test: redis-server, a Herald publisher and two gateways on the Redis engine, a real
Prometheus scraping them with the labels the chart's ServiceMonitor gives (job, namespace, pod,
role, ...) and loading the plain rules file, traffic from the load generator and the centrifuge SDK
(tests/observability/traffic.mjs). Then every query of every shipped dashboard must return data
and every alert must be quiet; with Redis killed, HeraldRedisUnavailable's expression must fire."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import DASHBOARDS, ROOT, RULES

NAMESPACE = "herald-test"
JOB = "herald-metrics"
SECRET = "observability-test-secret"
API_KEY = "observability-test-key"
QUEUE_SIZE = 64
# Grafana's variables and intervals as a dashboard user would see them.
SUBSTITUTE = {"$namespace": NAMESPACE, "$pod": ".*", "$__rate_interval": "1m", "$__interval": "15s",
              "$__range": "5m"}
HERE = Path(__file__).parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what):
    """Polls condition() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def http(url, data=None, headers=None, timeout=5):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


class Processes:
    """Child processes, stopped in reverse order; their output goes to files in `dir`."""

    def __init__(self, dir):
        self.dir, self.procs = Path(dir), []

    def start(self, name, cmd, env=None, **kw):
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, env=env, stdout=kw.pop("stdout", log), stderr=log, **kw)
        proc.name = name
        self.procs.append(proc)
        return proc

    def log(self, name):
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def binary(env, default):
    path = Path(os.environ.get(env, ROOT / default))
    assert path.exists(), f"{path} not found: cargo build --workspace --all-targets (or set {env})"
    return path


@pytest.fixture(scope="module")
def stack():
    herald = binary("HERALD_BIN", "target/debug/herald")
    tmp = tempfile.mkdtemp(prefix="herald-obs-")
    procs = Processes(tmp)
    try:
        yield start_stack(procs, herald, Path(tmp))
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def start_stack(procs, herald, tmp):
    redis_port = free_port()
    redis = procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(tmp)])
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(redis_port), "ping"], capture_output=True,
                                    text=True).stdout.strip() == "PONG", 10, "redis-server PING")
    nodes = {}
    for pod, role in (("publisher", "publisher"), ("gateway-a", "gateway"), ("gateway-b", "gateway")):
        client, internal = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env.update(HERALD_SERVER__ROLE=role, HERALD_SERVER__NAME=pod,
                   HERALD_SERVER__CLIENT_ADDR=f"127.0.0.1:{client}",
                   HERALD_SERVER__INTERNAL_ADDR=f"127.0.0.1:{internal}",
                   HERALD_ENGINE__REDIS_URL=f"redis://127.0.0.1:{redis_port}",
                   HERALD_AUTH__HMAC_SECRET=SECRET, HERALD_API__KEY=API_KEY,
                   HERALD_NAMESPACES__FEED__HISTORY_SIZE="100", HERALD_NAMESPACES__FEED__HISTORY_TTL="300s",
                   HERALD_CLIENT__QUEUE_SIZE=str(QUEUE_SIZE), HERALD_CLIENT__WRITE_TIMEOUT="30s",
                   HERALD_SERVER__DRAIN_SPREAD="500ms", HERALD_SERVER__DRAIN_TIMEOUT="3s", NO_COLOR="1")
        nodes[pod] = {"role": role, "client": client, "internal": internal,
                      "proc": procs.start(pod, [str(herald)], env=env)}
    for pod, n in nodes.items():
        wait_for(lambda: n["proc"].poll() is not None or http(f"http://127.0.0.1:{n['internal']}/readyz")[0] == 200,
                 30, f"{pod} /readyz")
        assert n["proc"].poll() is None, f"{pod} exited:\n{procs.log(pod)}"

    rules = tmp / "herald.rules.yaml"
    # What the chart does with its selector: the release's job and namespace.
    rules.write_text(RULES.read_text().replace('job="herald"', f'job="{JOB}", namespace="{NAMESPACE}"'))
    prom_port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        # The labels a ServiceMonitor target of the chart carries (job = the metrics Service,
        # role from the relabeling of app.kubernetes.io/component).
        "scrape_configs": [{"job_name": JOB, "static_configs": [
            {"targets": [f"127.0.0.1:{n['internal']}"],
             "labels": {"namespace": NAMESPACE, "pod": pod, "role": n["role"], "service": JOB,
                        "endpoint": "metrics", "container": "herald"}}
            for pod, n in nodes.items()]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = procs.start("prometheus", ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{prom_port}"])
    url = f"http://127.0.0.1:{prom_port}"
    wait_for(lambda: prom.poll() is not None or http(f"{url}/-/ready")[0] == 200, 30, "prometheus ready")
    assert prom.poll() is None, procs.log("prometheus")

    def targets_up():
        status, body = http(f"{url}/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        return len(active) == 3 and all(t["health"] == "up" for t in active)
    wait_for(targets_up, 30, "three targets up")
    return {"procs": procs, "redis": redis, "nodes": nodes, "prometheus": url, "tmp": tmp}


def query(prom, expr):
    status, body = http(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, f"{expr}: HTTP {status} {body}"
    return json.loads(body)["data"]["result"]


def substitute(expr):
    for k in sorted(SUBSTITUTE, key=len, reverse=True):
        expr = expr.replace(k, SUBSTITUTE[k])
    return expr


def dashboard_queries():
    """(dashboard, panel title, PromQL) of every panel target and query variable."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
                out.append((path.stem, f"${v['name']}", f"count by ({m.group(2)}) ({m.group(1)})"))
        for panel in dash["panels"]:
            for t in panel["targets"]:
                out.append((path.stem, panel["title"], t["expr"]))
    return [(d, title, substitute(e)) for d, title, e in out]


def alert_rules():
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    return [(r["alert"], r["expr"].replace('job="herald"', f'job="{JOB}", namespace="{NAMESPACE}"'))
            for r in rules]


def run_traffic(stack):
    """Runs the load generator against both gateways and the SDK script; returns the script's
    process (still holding its clients open) and its steps."""
    procs, nodes = stack["procs"], stack["nodes"]
    loadtest = binary("HERALD_LOADTEST_BIN", "target/debug/herald-loadtest")
    pub = f"http://127.0.0.1:{nodes['publisher']['internal']}"
    env = dict(os.environ, HERALD_LOADTEST_API_KEY=API_KEY, HERALD_LOADTEST_HMAC_SECRET=SECRET)
    loads = [procs.start(f"loadtest-{pod}", [
        str(loadtest), "--target", "herald", "--scenario", "broadcast", "--connections", "50",
        "--rate", "40", "--duration", "3s", "--settle", "0s", "--drain", "5s", "--threads", "1",
        "--channel", "stock:OBS", "--user-offset", str(i * 1000), "--no-plots",
        "--ws-url", f"ws://127.0.0.1:{nodes[pod]['client']}/connection/websocket", "--api-url", pub,
        "--out", str(stack["tmp"] / f"loadtest-{pod}.json")], env=env)
        for i, pod in enumerate(("gateway-a", "gateway-b"))]
    for p in loads:
        assert p.wait(120) == 0, procs.log(p.name)
    summaries = [json.loads((stack["tmp"] / f"loadtest-{pod}.json").read_text()) for pod in ("gateway-a", "gateway-b")]
    print("\nload generator:", ", ".join(f"{k}={s.get(k)}" for s in summaries for k in ("connections", "published")
                                        if k in s))

    cfg = {"gateways": [f"ws://127.0.0.1:{nodes[p]['client']}/connection/websocket" for p in ("gateway-a", "gateway-b")],
           "sse": f"http://127.0.0.1:{nodes['gateway-b']['client']}/connection/sse", "api": pub,
           "apiKey": API_KEY, "secret": SECRET,
           "metrics": f"http://127.0.0.1:{nodes['gateway-a']['internal']}/metrics", "queueSize": QUEUE_SIZE}
    sdk = procs.start("traffic", ["node", str(HERE / "traffic.mjs")], env=dict(os.environ, OBS_CONFIG=json.dumps(cfg)),
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    steps = []
    deadline = time.monotonic() + 120
    # Reads the script's steps until `ready` (its stdout closes early if it fails).
    for line in sdk.stdout:
        if line.strip() == "ready":
            break
        steps.append(json.loads(line))
        assert time.monotonic() < deadline, "traffic script too slow"
    else:
        sdk.wait(10)
        raise AssertionError(f"traffic script failed ({sdk.returncode}):\n{procs.log('traffic')}")
    for s in steps:
        print("traffic:", json.dumps(s))
    return sdk, steps


def test_dashboards_return_data_and_alerts_stay_quiet_then_redis_alert_fires(stack):
    prom = stack["prometheus"]
    sdk, steps = run_traffic(stack)
    assert [s["step"] for s in steps] == ["subscribed", "delivered", "errors", "recovered", "slow"]
    try:
        queries = dashboard_queries()
        counts = {}

        def all_have_data():
            for key in queries:
                if not counts.get(key):
                    counts[key] = len(query(prom, key[2]))
            return all(counts.values())
        try:
            wait_for(all_have_data, 60, "every dashboard query to return data")
        finally:
            print(f"\n{'dashboard':16} {'panel':52} series")
            for (dash, title, _), n in counts.items():
                print(f"{dash:16} {title[:52]:52} {n}")
        empty = [f"{d} / {t}: {e}" for (d, t, e), n in counts.items() if not n]
        assert not empty, "queries without data:\n" + "\n".join(empty)

        firing = {name: query(prom, expr) for name, expr in alert_rules()}
        print_alerts(prom, "after traffic", firing)
        assert not any(firing.values()), {k: v for k, v in firing.items() if v}
        loaded = rule_states(prom)
        assert set(loaded) == {name for name, _ in alert_rules()}
        assert all(health == "ok" for _, health in loaded.values()), loaded
    finally:
        sdk.stdin.close()
        sdk.wait(30)

    # Phase 2: Redis goes away; the gateways' engines must report it.
    stack["redis"].kill()
    stack["redis"].wait()
    expr = dict(alert_rules())["HeraldRedisUnavailable"]
    started = time.monotonic()
    series = wait_for(lambda: query(prom, expr), 60, "HeraldRedisUnavailable's expression to fire")
    print(f"\nRedis killed: HeraldRedisUnavailable fires after {time.monotonic() - started:.1f}s for "
          + ", ".join(s["metric"].get("pod", "?") for s in series))
    print_alerts(prom, "Redis down", {name: query(prom, e) for name, e in alert_rules()})


def rule_states(prom):
    status, body = http(f"{prom}/api/v1/rules")
    assert status == 200, body
    return {r["name"]: (r["state"], r["health"]) for g in json.loads(body)["data"]["groups"] for r in g["rules"]}


def print_alerts(prom, phase, firing):
    states = rule_states(prom)
    print(f"\nalerts ({phase}): {'alert':28} {'expression':10} state (with for)")
    for name, series in firing.items():
        print(f"{'':18}{name:28} {'FIRING' if series else 'quiet':10} {states.get(name, ('?',))[0]}")
