"""The rendered gateway and publisher containers run as local processes with the chart's exact
command, args and environment (Redis pointed at a local redis-server): probes answer on the paths
and port the chart names, and a gateway's SIGTERM drain closes WebSockets with 3001 and exits well
within terminationGracePeriodSeconds minus the preStop wait."""

import asyncio
import base64
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import websockets

from conftest import find, free_port, render, wait_for

CONNECTIONS = 6


def status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None  # port closed


class Pod:
    """One rendered container started as a process, its container ports mapped to free local ports."""

    def __init__(self, objs, deployment, herald_bin, redis_url):
        dep = find(objs, "Deployment", deployment)
        self.spec = dep["spec"]["template"]["spec"]
        self.container = self.spec["containers"][0]
        self.ports = {p["name"]: (p["containerPort"], free_port()) for p in self.container["ports"]}
        env = resolve_env(objs, self.container, pod_name=f"{deployment}-0")
        assert "HERALD_ENGINE__REDIS_URL" in env, "the chart configures no Redis"
        env["HERALD_ENGINE__REDIS_URL"] = redis_url
        self.env = env
        cmd = self.container["command"] + self.container["args"]
        assert cmd[0] == "/usr/local/bin/herald"
        cmd[0] = str(herald_bin)
        local = {cport: lport for cport, lport in self.ports.values()}
        cmd += ["--internal-addr", f"127.0.0.1:{local[8001]}"]
        if 8000 in local:
            cmd += ["--client-addr", f"127.0.0.1:{local[8000]}"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def probe_url(self, probe):
        get = self.container[probe]["httpGet"]
        return f"http://127.0.0.1:{self.ports[get['port']][1]}{get['path']}"

    def client_url(self, path):
        return f"ws://127.0.0.1:{self.ports['client'][1]}{path}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def resolve_env(objs, container, pod_name):
    """The container's environment as the kubelet builds it: envFrom first, env over it."""
    env = {"PATH": "/usr/bin:/bin"}
    for src in container.get("envFrom", []):
        env.update(find(objs, "ConfigMap", src["configMapRef"]["name"])["data"])
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name"
            env[e["name"]] = pod_name
        elif "secretKeyRef" in ref:
            secret = find(objs, "Secret", ref["secretKeyRef"]["name"])
            env[e["name"]] = base64.b64decode(secret["data"][ref["secretKeyRef"]["key"]]).decode()
        elif "configMapKeyRef" in ref:
            cm = find(objs, "ConfigMap", ref["configMapKeyRef"]["name"])
            env[e["name"]] = cm["data"][ref["configMapKeyRef"]["key"]]
        else:
            raise AssertionError(f"unhandled env source {ref}")
    return env


@pytest.fixture
def objs():
    return render()


def test_publisher_probes(objs, herald_bin, redis_url):
    pod = Pod(objs, "herald-publisher", herald_bin, redis_url)
    try:
        wait_for(lambda: status(pod.probe_url("readinessProbe")) == 200, 30, "publisher readiness")
        assert status(pod.probe_url("livenessProbe")) == 200
    finally:
        pod.stop()


def test_gateway_probes_and_drain(objs, herald_bin, redis_url):
    pod = Pod(objs, "herald-gateway", herald_bin, redis_url)
    grace = pod.spec["terminationGracePeriodSeconds"]
    pre_stop = pod.container["lifecycle"]["preStop"]["sleep"]["seconds"]
    try:
        ready_url = pod.probe_url("readinessProbe")
        wait_for(lambda: status(ready_url) == 200, 30, "gateway readiness")
        assert status(pod.probe_url("livenessProbe")) == 200
        token = subprocess.run([str(herald_bin), "gentoken", "--user", "42"], env=pod.env, capture_output=True, text=True,
                               check=True).stdout.strip()
        budget = grace - pre_stop
        codes, times, exit_after, not_ready_after = asyncio.run(
            drain(pod, token, ready_url, budget))
    finally:
        pod.stop()
    for i, (code, t) in enumerate(zip(codes, times)):
        print(f"connection {i}: closed with {code} after {t:.2f}s")
    print(f"/readyz not 200 after {not_ready_after:.2f}s; process exited after {exit_after:.2f}s "
          f"(budget: terminationGracePeriodSeconds {grace} - preStop {pre_stop} = {budget}s)")
    assert codes == [3001] * CONNECTIONS, codes
    assert not_ready_after < 2
    assert exit_after < budget
    # Nothing else holds the node: it leaves within its drain spread plus a little.
    spread = int(pod.env["HERALD_SERVER__DRAIN_SPREAD"].rstrip("s"))
    assert exit_after < spread + 1.5, f"exited {exit_after:.2f}s after SIGTERM, spread {spread}s"
    assert pod.proc.returncode == 0, pod.proc.stderr.read()[-2000:]


async def drain(pod, token, ready_url, budget):
    sockets = []
    for _ in range(CONNECTIONS):
        ws = await websockets.connect(pod.client_url("/connection/websocket"))
        await ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert "connect" in reply, reply
        sockets.append(ws)
    started = time.monotonic()
    pod.proc.send_signal(signal.SIGTERM)

    async def closed(ws):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, time.monotonic() - started

    async def not_ready():
        while (code := status(ready_url)) == 200:
            await asyncio.sleep(0.02)
        assert code in (503, None), f"/readyz answered {code} while draining"
        return time.monotonic() - started

    not_ready_after = await asyncio.wait_for(not_ready(), budget)
    results = await asyncio.wait_for(asyncio.gather(*(closed(ws) for ws in sockets)), budget)
    deadline = started + budget
    while pod.proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    exit_after = time.monotonic() - started
    return [c for c, _ in results], [t for _, t in results], exit_after, not_ready_after
