"""What differs between the overlays: Redis in-cluster (dev) or external (prod), the Secret
generated (dev) or expected (prod), and the production extras: HPA, PDBs, NetworkPolicy and an
Ingress that reaches only the client port. Also: every Service finds its pods and port."""

import base64

import pytest

from manifests import KUSTOMIZATIONS, base_name, find


def configmap(objs):
    return find(objs, "ConfigMap", "herald")["data"]


def is_redis(obj):
    labels = obj["metadata"].get("labels", {})
    return "redis" in base_name(obj) or labels.get("app.kubernetes.io/component") == "redis"


def test_dev_runs_its_own_redis_without_persistence(rendered):
    objs = rendered["dev"]
    sts = find(objs, "StatefulSet", "herald-redis")
    assert sts["spec"]["replicas"] == 1
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "redis:7-alpine"
    assert c["args"][:4] == ["--save", "", "--appendonly", "no"]
    assert "volumeClaimTemplates" not in sts["spec"]
    assert [sorted(v) for v in pod["volumes"]] == [["emptyDir", "name"]], "no disk"
    svc = find(objs, "Service", "herald-redis")
    assert [p["port"] for p in svc["spec"]["ports"]] == [6379]
    assert configmap(objs)["HERALD_ENGINE__REDIS_URL"] == "redis://herald-redis:6379"


def test_dev_has_one_gateway_and_an_obviously_dev_secret(rendered):
    objs = rendered["dev"]
    assert find(objs, "Deployment", "herald-gateway")["spec"]["replicas"] == 1
    data = find(objs, "Secret", "herald")["data"]
    assert set(data) == {"hmac-secret", "api-key"}
    for value in data.values():
        assert base64.b64decode(value).decode().startswith("dev-only-")


def test_prod_uses_external_redis_and_an_existing_secret(rendered):
    objs = rendered["prod"]
    assert not [o for o in objs if is_redis(o)]
    assert not [o for o in objs if o["kind"] == "Secret"]
    assert configmap(objs)["HERALD_ENGINE__REDIS_URL"] == "redis://redis.example.internal:6379"
    for d in (o for o in objs if o["kind"] == "Deployment"):
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "registry.example.com/herald:0.1.0"
        )


def test_base_has_no_engine_and_no_secret(rendered):
    objs = rendered["base"]
    assert "HERALD_ENGINE__REDIS_URL" not in configmap(objs)
    assert not [o for o in objs if o["kind"] == "Secret" or is_redis(o)]


def test_prod_gateway_autoscales_slowly_down(rendered):
    objs = rendered["prod"]
    hpa = find(objs, "HorizontalPodAutoscaler", "herald-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "herald-gateway",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 20)
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    down = spec["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == 600
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert "replicas" not in find(objs, "Deployment", "herald-gateway")["spec"], (
        "the HPA owns the replica count"
    )
    assert find(objs, "Deployment", "herald-publisher")["spec"]["replicas"] == 2


def test_prod_disruption_budgets(rendered):
    objs = rendered["prod"]
    for component in ("gateway", "publisher"):
        pdb = find(objs, "PodDisruptionBudget", f"herald-{component}")
        deploy = find(objs, "Deployment", f"herald-{component}")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deploy["spec"]["selector"]


def test_prod_network_policy_keeps_the_internal_port_private(rendered):
    objs = rendered["prod"]
    policy = find(objs, "NetworkPolicy", "herald")["spec"]
    for d in (o for o in objs if o["kind"] == "Deployment"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    by_port = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).append(rule)
    assert set(by_port) == {8000, 8001}
    assert any("from" not in r for r in by_port[8000]), "the client port is open"
    for rule in by_port[8001]:
        assert rule["from"], "the internal port only from listed peers"
    peers = [p for r in by_port[8001] for p in r["from"]]
    assert {"podSelector": {"matchLabels": {"herald.io/api-client": "true"}}} in peers
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in peers


def test_prod_ingress_reaches_only_the_client_port(rendered):
    objs = rendered["prod"]
    ingresses = [o for o in objs if o["kind"] == "Ingress"]
    assert ingresses
    client = find(objs, "Service", "herald-client")
    client_ports = {p["name"]: p["port"] for p in client["spec"]["ports"]}
    for ing in ingresses:
        notes = ing["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
        assert notes["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
        assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
        backends = [
            p["backend"]["service"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]
        ]
        assert "defaultBackend" not in ing["spec"]
        for b in backends:
            assert b["name"] == "herald-client"
            port = b["port"].get("number") or client_ports[b["port"]["name"]]
            assert port == 8000


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_services_select_pods_with_their_target_port(rendered, name):
    objs = rendered[name]
    pods = [o["spec"]["template"] for o in objs if o["kind"] in ("Deployment", "StatefulSet")]
    for svc in (o for o in objs if o["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        matched = [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]
        assert matched, f"{base_name(svc)} selects no pods"
        for port in svc["spec"]["ports"]:
            serving = [
                p
                for p in matched
                for c in p["spec"]["containers"]
                for cp in c["ports"]
                if port["targetPort"] in (cp["name"], cp["containerPort"])
            ]
            assert serving, f"{base_name(svc)}: no selected pod has port {port['targetPort']}"
