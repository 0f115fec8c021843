"""Pods as rendered by every kustomization: security contexts, the drain arithmetic (grace
period covers preStop + drain timeout), rolling updates that never lower capacity, probes,
environment and labels."""

import pytest

from manifests import (
    KUSTOMIZATIONS,
    base_name,
    container,
    env_value,
    herald_deployments,
    seconds,
    workloads,
)

NAMES = list(KUSTOMIZATIONS)
LABELS = {"app.kubernetes.io/name": "herald", "app.kubernetes.io/instance": "herald"}


@pytest.mark.parametrize("name", NAMES)
def test_every_pod_is_locked_down(rendered, name):
    for w in workloads(rendered[name]):
        pod = w["spec"]["template"]["spec"]
        # Redis runs as the image's own user (uid 999, group 1000).
        uid, gid = (999, 1000) if w["kind"] == "StatefulSet" else (10001, 10001)
        assert pod["automountServiceAccountToken"] is False, base_name(w)
        assert pod["enableServiceLinks"] is False, base_name(w)
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert (psc["runAsUser"], psc["runAsGroup"]) == (uid, gid)
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid)
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "limits" in c["resources"] and "requests" in c["resources"]


@pytest.mark.parametrize("name", NAMES)
def test_grace_period_covers_prestop_and_drain(rendered, name):
    for d in herald_deployments(rendered[name]):
        c = container(d)
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        spread = seconds(env_value(c, "HERALD_SERVER__DRAIN_SPREAD")["value"])
        timeout = seconds(env_value(c, "HERALD_SERVER__DRAIN_TIMEOUT")["value"])
        grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert pre_stop >= 5, "endpoint removal needs a few seconds to reach the proxies"
        assert spread <= timeout
        assert grace >= pre_stop + timeout, f"{base_name(d)}: killed before it drained"
        assert (pre_stop, spread, timeout, grace) == (5, 5, 30, 40)


@pytest.mark.parametrize("name", NAMES)
def test_rolling_updates_keep_capacity(rendered, name):
    for d in herald_deployments(rendered[name]):
        strategy = d["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


@pytest.mark.parametrize("name", NAMES)
def test_herald_containers_run_their_role(rendered, name):
    for d in herald_deployments(rendered[name]):
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        c = container(d)
        assert c["name"] == role
        assert c["command"] == ["/usr/local/bin/herald"]
        assert c["args"] == ["run", "--role", role]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == ({"client": 8000, "internal": 8001} if role == "gateway" else {"internal": 8001})
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "internal"}
        assert env_value(c, "HERALD_SERVER__NAME")["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.name"}
        }
        assert env_value(c, "HERALD_LOG_FORMAT")["value"] == "json"
        assert [list(e) for e in c["envFrom"]] == [["configMapRef"]]


@pytest.mark.parametrize("name", NAMES)
def test_secrets_come_from_the_secret_and_only_where_needed(rendered, name):
    objs = rendered[name]
    secret_names = {o["metadata"]["name"] for o in objs if o["kind"] == "Secret"}
    for d in herald_deployments(objs):
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container(d)["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        wanted = {"HERALD_AUTH__HMAC_SECRET": "hmac-secret"}
        if role == "publisher":
            wanted["HERALD_API__KEY"] = "api-key"
        assert {k: r["key"] for k, r in refs.items()} == wanted
        for ref in refs.values():
            if name == "dev":
                assert ref["name"] in secret_names, "the generated Secret's hashed name"
            else:
                assert ref["name"] == "herald", "the Secret created beforehand"


@pytest.mark.parametrize("name", NAMES)
def test_topology_spread_over_zones_and_hosts(rendered, name):
    for d in herald_deployments(rendered[name]):
        spec = d["spec"]["template"]["spec"]
        selector = d["spec"]["selector"]["matchLabels"]
        keys = set()
        for t in spec["topologySpreadConstraints"]:
            assert t["whenUnsatisfiable"] == "ScheduleAnyway"
            assert t["labelSelector"]["matchLabels"] == selector
            keys.add(t["topologyKey"])
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


@pytest.mark.parametrize("name", NAMES)
def test_labels_and_selectors(rendered, name):
    for w in workloads(rendered[name]):
        component = base_name(w).removeprefix("herald-")
        want = {**LABELS, "app.kubernetes.io/component": component}
        assert w["metadata"]["labels"] == want
        assert w["spec"]["selector"]["matchLabels"] == want
        if component != "redis":
            want["herald.io/metrics"] = "true"
        assert w["spec"]["template"]["metadata"]["labels"] == want


@pytest.mark.parametrize("name", NAMES)
def test_images_are_pinned_by_tag(rendered, name):
    for w in workloads(rendered[name]):
        for c in w["spec"]["template"]["spec"]["containers"]:
            repo, _, tag = c["image"].rpartition(":")
            assert repo and tag and tag != "latest", c["image"]
