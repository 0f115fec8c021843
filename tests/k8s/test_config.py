"""The environment each rendered Herald container gets is a configuration Herald accepts:
`herald check-config` runs with exactly that environment (ConfigMap, Secret, downward API)
and the container's arguments, and must name the role and the Redis engine."""

import base64
import os
import subprocess

import pytest

from manifests import container, herald_deployments

# Stand-ins for the Secret that production creates beforehand.
PROD_SECRET = {"hmac-secret": "prod-test-hmac", "api-key": "prod-test-key"}


def herald_bin() -> str:
    path = os.environ.get("HERALD_BIN")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("HERALD_BIN is not an executable: run scripts/k8s/test.sh")
    return path


def container_env(objs: list[dict], deployment: dict) -> dict[str, str]:
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    c = container(deployment)
    env = {}
    for source in c["envFrom"]:
        env.update(by_name[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif "fieldRef" in e["valueFrom"]:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[e["name"]] = deployment["metadata"]["name"] + "-7d9f8-x2x4z"
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            secret = by_name.get(("Secret", ref["name"]))
            if secret is None:
                env[e["name"]] = PROD_SECRET[ref["key"]]
            else:
                env[e["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_rendered_environment_is_a_valid_configuration(rendered, name):
    objs = rendered[name]
    for d in herald_deployments(objs):
        c = container(d)
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        assert c["args"][0] == "run"
        args = ["check-config", *c["args"][1:]]
        env = {"PATH": os.environ["PATH"], **container_env(objs, d)}
        done = subprocess.run([herald_bin(), *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{name} {role}: {done.stderr}"
        assert done.stdout.strip() == f"configuration ok (role {role}, engine redis)"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_gentoken_works_inside_the_containers(rendered, name):
    """k8s/README.md mints tokens with `kubectl exec ... herald gentoken`."""
    objs = rendered[name]
    for d in herald_deployments(objs):
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        env = {"PATH": os.environ["PATH"], **container_env(objs, d)}
        # A gateway holds no API key: HERALD_SERVER__ROLE in its environment makes gentoken
        # check the gateway's settings, exactly as `kubectl exec` would run it.
        assert env["HERALD_SERVER__ROLE"] == role
        args = ["gentoken", "--user", "42"]
        done = subprocess.run([herald_bin(), *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{name} {role}: {done.stderr}"
        assert done.stdout.count(".") == 2, "a JWT"


def test_a_misspelt_setting_is_refused():
    """The check above would catch a typo in a HERALD_ key: Herald refuses unknown sections."""
    env = {"PATH": os.environ["PATH"], "HERALD_SERVR__NAME": "x"}
    done = subprocess.run([herald_bin(), "check-config"], env=env, capture_output=True, text=True)
    assert done.returncode == 64, done.stdout
