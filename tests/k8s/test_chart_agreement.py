"""The kustomize manifests and the Helm chart (charts/herald) describe the same deployment:
same container ports, probes, commands, environment variable names, Secret keys, Service
ports, drain and scaling numbers. The chart's templates are read as text (not rendered) and
its values.yaml as YAML."""

import re

import pytest
import yaml

from manifests import ROOT, base_name, container, find, herald_deployments

CHART = ROOT / "charts/herald"


@pytest.fixture(scope="module")
def templates() -> str:
    files = sorted((CHART / "templates").glob("*.yaml")) + [CHART / "templates/_helpers.tpl"]
    return "\n---\n".join(f.read_text() for f in files)


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def containers(objs):
    return [
        c
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet")
        for c in o["spec"]["template"]["spec"]["containers"]
    ]


def test_container_ports(rendered, templates):
    chart = set(re.findall(r"- name: (\w+)\s+containerPort: (\d+)", templates))
    ours = {(p["name"], str(p["containerPort"])) for c in containers(rendered["dev"]) for p in c["ports"]}
    assert ours == chart == {("client", "8000"), ("internal", "8001"), ("redis", "6379")}


def test_probes(rendered, templates):
    chart = set(re.findall(r"httpGet:\s+path: (\S+)\s+port: (\S+)", templates))
    ours = {
        (probe["httpGet"]["path"], probe["httpGet"]["port"])
        for d in herald_deployments(rendered["base"])
        for probe in (container(d)["readinessProbe"], container(d)["livenessProbe"])
    }
    assert ours == chart


def test_commands_and_roles(rendered, templates):
    commands = {tuple(yaml.safe_load(m)) for m in re.findall(r"command: (\[/.*\])", templates)}
    args = {tuple(yaml.safe_load(m)) for m in re.findall(r"args: (\[run, .*\])", templates)}
    ours = [container(d) for d in herald_deployments(rendered["base"])]
    assert commands == {tuple(c["command"]) for c in ours}
    assert args == {tuple(c["args"]) for c in ours}
    chart_names = set(re.findall(r"containers:\s+- name: (\w+)", templates))
    assert chart_names == {c["name"] for c in containers(rendered["dev"])}


def test_environment_variable_names(rendered, templates):
    """Placement may differ (a setting in the ConfigMap here, in env there); names may not."""
    ours = set()
    for name in ("dev", "prod"):
        ours |= {e["name"] for d in herald_deployments(rendered[name]) for e in container(d)["env"]}
        ours |= set(find(rendered[name], "ConfigMap", "herald")["data"])
    chart_env = set(re.findall(r"- name: (HERALD_\w+)", templates))
    chart_all = set(re.findall(r"HERALD_\w+", templates))
    assert {"HERALD_SERVER__NAME", "HERALD_AUTH__HMAC_SECRET", "HERALD_API__KEY"} <= chart_env
    assert chart_env <= ours
    assert ours <= chart_all


def test_secret_keys(rendered, templates):
    chart = set(re.findall(r"secretKeyRef:\s+name: .*\s+key: ([\w-]+)", templates))
    ours = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for d in herald_deployments(rendered["prod"])
        for e in container(d)["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert ours == chart == {"hmac-secret", "api-key"}
    assert set(find(rendered["dev"], "Secret", "herald")["data"]) == ours


def test_services(rendered, templates, values):
    chart = {}
    for doc in templates.split("\n---\n"):
        kind = re.search(r"^kind: (\w+)", doc, re.MULTILINE)
        if not kind or kind.group(1) != "Service":
            continue
        suffix = re.search(r'name: \{\{ include "herald.fullname" \. \}\}-(\w+)', doc).group(1)
        ports = set(re.findall(r"- name: (\w+)\s+port: .*\s+targetPort: (\w+)", doc))
        chart[suffix] = ports
    ours = {
        base_name(s).removeprefix("herald-"): {(p["name"], p["targetPort"]) for p in s["spec"]["ports"]}
        for s in rendered["dev"]
        if s["kind"] == "Service"
    }
    assert ours == chart
    assert values["service"]["client"]["port"] == 8000
    assert values["service"]["internal"]["port"] == 8001
    metrics = find(rendered["base"], "Service", "herald-metrics")["spec"]
    assert "herald.io/metrics" in metrics["selector"]
    assert re.search(r'herald\.io/metrics: "true"', templates)


def test_drain_rollout_and_spread(rendered, values):
    gateway = find(rendered["base"], "Deployment", "herald-gateway")
    c = container(gateway)
    env = {e["name"]: e.get("value") for e in c["env"]}
    drain = values["gateway"]["drain"]
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] == drain["preStopSeconds"]
    assert env["HERALD_SERVER__DRAIN_SPREAD"] == f"{drain['spreadSeconds']}s"
    assert env["HERALD_SERVER__DRAIN_TIMEOUT"] == f"{drain['timeoutSeconds']}s"
    grace = gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == drain["preStopSeconds"] + drain["timeoutSeconds"] + 5
    assert gateway["spec"]["strategy"]["rollingUpdate"] == values["gateway"]["strategy"]
    spread = gateway["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [t["topologyKey"] for t in spread] == values["gateway"]["topologySpread"]["topologyKeys"]


def test_autoscaling_and_disruption_budget(rendered, values):
    hpa = find(rendered["prod"], "HorizontalPodAutoscaler", "herald-gateway")["spec"]
    chart = values["gateway"]["autoscaling"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (chart["minReplicas"], chart["maxReplicas"])
    cpu = hpa["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert cpu == chart["targetCPUUtilizationPercentage"]
    assert hpa["behavior"] == chart["behavior"]
    pdb = find(rendered["prod"], "PodDisruptionBudget", "herald-gateway")["spec"]
    assert pdb["maxUnavailable"] == values["gateway"]["podDisruptionBudget"]["maxUnavailable"]


def test_security_contexts(templates):
    for needle in (
        "runAsNonRoot: true",
        "runAsUser: 10001",
        "runAsUser: 999",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [ALL]",
        "type: RuntimeDefault",
        "automountServiceAccountToken: false",
    ):
        assert needle in templates, needle


def test_ingress_annotations_and_redis_image(rendered, templates, values):
    ingress = find(rendered["prod"], "Ingress", "herald")
    for key, value in ingress["metadata"]["annotations"].items():
        assert f'"{key}" "{value}"' in templates, key
    redis = find(rendered["dev"], "StatefulSet", "herald-redis")
    image = values["redis"]["image"]
    assert container(redis)["image"] == f"{image['repository']}:{image['tag']}"
