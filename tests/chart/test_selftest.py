"""`helm test` as a process: the rendered test Pod's exact command, args and environment run
`herald selftest` against the rendered gateway and publisher (local processes, Redis pointed at a
local redis-server, the Services' addresses mapped to their local ports). It must pass, and fail
with a clear line when the API key is wrong."""

import subprocess

from conftest import find, render, wait_for
from test_drain import Pod, resolve_env, status


def selftest_command(objs, herald_bin, services):
    pod = find(objs, "Pod", "herald-selftest")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    cmd = container["command"] + container["args"]
    assert cmd[0] == "/usr/local/bin/herald" and cmd[1] == "selftest"
    cmd[0] = str(herald_bin)
    for i, arg in enumerate(cmd):
        for service, local in services.items():
            arg = arg.replace(service, local)
        cmd[i] = arg
    return cmd, resolve_env(objs, container, pod_name="herald-selftest")


def test_helm_test_pod_passes_against_the_release(herald_bin, redis_url):
    objs = render()
    client_port = find(objs, "Service", "herald-client")["spec"]["ports"][0]["port"]
    internal_port = find(objs, "Service", "herald-internal")["spec"]["ports"][0]["port"]
    gateway = Pod(objs, "herald-gateway", herald_bin, redis_url)
    publisher = Pod(objs, "herald-publisher", herald_bin, redis_url)
    try:
        for pod in (gateway, publisher):
            wait_for(lambda p=pod: status(p.probe_url("readinessProbe")) == 200, 30, "readiness")
        services = {
            f"herald-client:{client_port}": f"127.0.0.1:{gateway.ports['client'][1]}",
            f"herald-internal:{internal_port}": f"127.0.0.1:{publisher.ports['internal'][1]}",
        }
        cmd, env = selftest_command(objs, herald_bin, services)
        print("selftest:", " ".join(cmd[1:]))
        ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        print(ok.stdout.strip())
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.strip(), "selftest says what it verified"

        env["HERALD_API__KEY"] = "not-the-key"
        bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        print((bad.stdout + bad.stderr).strip())
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert "publish" in (bad.stdout + bad.stderr).lower()
    finally:
        gateway.stop()
        publisher.stop()
