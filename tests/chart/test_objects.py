"""What the rendered chart must contain: the objects of a trial install, drain timing, rollout and
security settings, the NetworkPolicy, Redis choice, Secret reuse on upgrade, Ingress targets."""

import base64

import pytest
import yaml

from conftest import CHART, find, object_list, render

DEFAULT_OBJECTS = [
    "ConfigMap/herald", "Deployment/herald-gateway", "NetworkPolicy/herald", "NetworkPolicy/herald-redis",
    "PodDisruptionBudget/herald-gateway", "Deployment/herald-publisher", "Service/herald-redis",
    "StatefulSet/herald-redis", "Secret/herald", "ServiceAccount/herald", "Service/herald-client",
    "Service/herald-internal", "Service/herald-metrics", "Pod/herald-selftest",
]


def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"] if obj["kind"] != "Pod" else obj["spec"]["containers"]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]


def env(container):
    return {e["name"]: e for e in container.get("env", [])}


def test_default_objects():
    objs = render()
    print("\ndefault objects:\n  " + "\n  ".join(object_list(objs)))
    assert sorted(object_list(objs)) == sorted(DEFAULT_OBJECTS)


def test_gateway_and_publisher_roles():
    objs = render()
    gw = containers(find(objs, "Deployment", "herald-gateway"))[0]
    pub = containers(find(objs, "Deployment", "herald-publisher"))[0]
    assert gw["command"] == ["/usr/local/bin/herald"] and gw["args"] == ["run", "--role", "gateway"]
    assert pub["args"] == ["run", "--role", "publisher"]
    assert find(objs, "Deployment", "herald-gateway")["spec"]["replicas"] == 2
    assert find(objs, "Deployment", "herald-publisher")["spec"]["replicas"] == 1
    assert {p["name"]: p["containerPort"] for p in gw["ports"]} == {"client": 8000, "internal": 8001}
    for c in (gw, pub):
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "internal"}
        e = env(c)
        assert e["HERALD_SERVER__NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert e["HERALD_LOG_FORMAT"]["value"] == "json"
        assert e["HERALD_AUTH__HMAC_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "herald", "key": "hmac-secret"}
        assert c["envFrom"] == [{"configMapRef": {"name": "herald"}}]
    assert env(gw)["HERALD_SERVER__ROLE"]["value"] == "gateway"
    assert env(pub)["HERALD_SERVER__ROLE"]["value"] == "publisher"
    # The server API key goes to publishers only: gateways face the internet.
    assert "HERALD_API__KEY" not in env(gw)
    assert env(pub)["HERALD_API__KEY"]["valueFrom"]["secretKeyRef"] == {"name": "herald", "key": "api-key"}


@pytest.mark.parametrize("sets, grace", [
    ((), 40),
    (("gateway.drain.timeoutSeconds=60", "gateway.drain.preStopSeconds=10"), 75),
])
def test_drain_timing(sets, grace):
    objs = render(sets=sets)
    dep = find(objs, "Deployment", "herald-gateway")
    spec = pod_spec(dep)
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]["drain"]
    for s in sets:
        k, v = s.split("=")
        values[k.split(".")[-1]] = int(v)
    assert spec["terminationGracePeriodSeconds"] == grace
    assert grace == values["preStopSeconds"] + values["timeoutSeconds"] + 5
    c = containers(dep)[0]
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": values["preStopSeconds"]}}
    e = env(c)
    assert e["HERALD_SERVER__DRAIN_SPREAD"]["value"] == f'{values["spreadSeconds"]}s'
    assert e["HERALD_SERVER__DRAIN_TIMEOUT"]["value"] == f'{values["timeoutSeconds"]}s'


def test_prestop_exec_before_kubernetes_1_30():
    dep = find(render(kube="1.29.4"), "Deployment", "herald-gateway")
    assert containers(dep)[0]["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}


def test_rollout_spread_and_disruption():
    objs = render()
    dep = find(objs, "Deployment", "herald-gateway")
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    tsc = pod_spec(dep)["topologySpreadConstraints"]
    assert [t["topologyKey"] for t in tsc] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert all(t["whenUnsatisfiable"] == "ScheduleAnyway" for t in tsc)
    assert find(objs, "PodDisruptionBudget", "herald-gateway")["spec"]["maxUnavailable"] == 1
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert len(ann["checksum/config"]) == 64
    changed = find(render(sets=["config.HERALD_CLIENT__QUEUE_SIZE=512"]), "Deployment", "herald-gateway")
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != ann["checksum/config"]


def test_hpa(tmp_path):
    objs = render("values-production.yaml")
    hpa = find(objs, "HorizontalPodAutoscaler", "herald-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert "replicas" not in find(objs, "Deployment", "herald-gateway")["spec"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 600
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
    assert not find(render(), "HorizontalPodAutoscaler")
    connections = [{"type": "Pods", "pods": {"metric": {"name": "herald_connections"},
                                             "target": {"type": "AverageValue", "averageValue": "10000"}}}]
    path = tmp_path / "hpa.yaml"
    path.write_text(yaml.safe_dump({"gateway": {"autoscaling": {"enabled": True, "metrics": connections}}}))
    assert find(render(str(path)), "HorizontalPodAutoscaler", "herald-gateway")["spec"]["metrics"] == connections


def test_security_contexts_everywhere():
    objs = render()
    pods = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Pod")]
    assert len(pods) == 4
    for o in pods:
        spec = pod_spec(o)
        uid = 999 if o["kind"] == "StatefulSet" else 10001
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert find(objs, "ServiceAccount", "herald")["automountServiceAccountToken"] is False


def test_network_policy():
    objs = render()
    np = find(objs, "NetworkPolicy", "herald")
    assert np["spec"]["policyTypes"] == ["Ingress"]
    client, internal = np["spec"]["ingress"]
    assert client["ports"] == [{"port": "client", "protocol": "TCP"}] and "from" not in client
    assert internal["ports"] == [{"port": "internal", "protocol": "TCP"}]
    release = {"app.kubernetes.io/name": "herald", "app.kubernetes.io/instance": "herald"}
    assert internal["from"] == [{"podSelector": {"matchLabels": release}}]
    test_pod = find(objs, "Pod", "herald-selftest")
    assert release.items() <= test_pod["metadata"]["labels"].items()
    redis = find(objs, "NetworkPolicy", "herald-redis")
    assert redis["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    peer = redis["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert peer["matchExpressions"] == [{"key": "app.kubernetes.io/component", "operator": "In",
                                         "values": ["gateway", "publisher"]}]
    prod = find(render("values-production.yaml"), "NetworkPolicy", "herald")
    assert len(prod["spec"]["ingress"][1]["from"]) == 3
    assert not find(render(sets=["networkPolicy.enabled=false"]), "NetworkPolicy")


@pytest.mark.parametrize("files, sets, key, value", [
    (("values-production.yaml",), (), "HERALD_ENGINE__REDIS_URL", "redis://redis.example.internal:6379"),
    (("values-cluster.yaml",), (), "HERALD_ENGINE__REDIS_CLUSTER",
     "redis://redis-cluster-0.redis-cluster-headless.redis.svc:6379,"
     "redis://redis-cluster-1.redis-cluster-headless.redis.svc:6379,"
     "redis://redis-cluster-2.redis-cluster-headless.redis.svc:6379"),
    ((), ("redis.urlSecret.name=redis-auth",), None, None),
])
def test_external_redis_removes_in_chart_redis(files, sets, key, value):
    objs = render(*files, sets=sets)
    kinds = object_list(objs)
    assert not [k for k in kinds if "redis" in k], kinds
    data = find(objs, "ConfigMap", "herald")["data"]
    if key:
        assert data[key] == value
    else:
        assert not {"HERALD_ENGINE__REDIS_URL", "HERALD_ENGINE__REDIS_CLUSTER"} & set(data)
        e = env(containers(find(objs, "Deployment", "herald-gateway"))[0])
        assert e["HERALD_ENGINE__REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "redis-url"}


def test_in_chart_redis_is_for_trials():
    objs = render()
    assert find(objs, "ConfigMap", "herald")["data"]["HERALD_ENGINE__REDIS_URL"] == "redis://herald-redis:6379"
    sts = find(objs, "StatefulSet", "herald-redis")
    c = containers(sts)[0]
    assert sts["spec"]["replicas"] == 1 and c["image"].startswith("redis:7")
    assert c["args"][:5] == ["redis-server", "--save", "", "--appendonly", "no"]


def test_secret_is_generated_once_and_reused(tmp_path):
    first = find(render(), "Secret", "herald")
    second = find(render(), "Secret", "herald")
    assert first["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(first["data"]["hmac-secret"])) == 48
    assert first["data"] != second["data"], "a fresh install gets fresh random values"
    existing = {"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "herald", "namespace": "herald"},
                "data": {"hmac-secret": base64.b64encode(b"kept-secret").decode(),
                         "api-key": base64.b64encode(b"kept-key").decode()}}
    path = tmp_path / "existing.yaml"
    path.write_text(yaml.safe_dump(existing))
    upgraded = find(render(lookup=path), "Secret", "herald")
    assert upgraded["data"] == existing["data"]
    other_ns = find(render(lookup=path, namespace="elsewhere"), "Secret", "herald")
    assert other_ns["data"] != existing["data"]


def test_existing_secret():
    objs = render("values-production.yaml")
    assert not find(objs, "Secret")
    for name in ("herald-gateway", "herald-publisher"):
        e = env(containers(find(objs, "Deployment", name))[0])
        assert e["HERALD_AUTH__HMAC_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "herald-auth"
    pub_env = env(containers(find(objs, "Deployment", "herald-publisher"))[0])
    assert pub_env["HERALD_API__KEY"]["valueFrom"]["secretKeyRef"]["name"] == "herald-auth"
    test_env = env(containers(find(objs, "Pod", "herald-selftest"))[0])
    assert test_env["HERALD_AUTH__HMAC_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "herald-auth"


def test_services_and_ingress_never_reach_the_internal_port():
    objs = render("values-production.yaml")
    client = find(objs, "Service", "herald-client")
    internal = find(objs, "Service", "herald-internal")
    metrics = find(objs, "Service", "herald-metrics")
    assert client["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
    assert client["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "client", "protocol": "TCP"}]
    assert internal["spec"]["selector"]["app.kubernetes.io/component"] == "publisher"
    assert internal["spec"]["ports"][0]["port"] == 8001
    assert metrics["spec"]["clusterIP"] == "None" and metrics["spec"]["ports"][0]["port"] == 8001
    ing = find(objs, "Ingress", "herald")
    backends = [p["backend"]["service"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends and all(b == {"name": "herald-client", "port": {"name": "http"}} for b in backends)
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert ann["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    plain = find(render(sets=["ingress.enabled=true", "ingress.nginxDefaults=false"]), "Ingress", "herald")
    assert "annotations" not in plain["metadata"]


def test_httproute_targets_the_client_service(tmp_path):
    parent = tmp_path / "p.yaml"
    parent.write_text("httpRoute:\n  enabled: true\n  parentRefs: [{name: public}]\n")
    route = find(render(str(parent)), "HTTPRoute", "herald")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "herald-client", "port": 8000}]


def test_selftest_hook():
    pod = find(render(), "Pod", "herald-selftest")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = containers(pod)[0]
    assert c["args"] == ["selftest", "--api", "http://herald-internal:8001",
                         "--ws", "ws://herald-client:8000/connection/websocket"]
    assert set(env(c)) == {"HERALD_API__KEY", "HERALD_AUTH__HMAC_SECRET"}


def test_monitoring_objects():
    objs = render("values-production.yaml")
    sm = find(objs, "ServiceMonitor", "herald")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "metrics"
    dash = find(objs, "ConfigMap", "herald-dashboard-herald-overview")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash["metadata"]["annotations"]["grafana_folder"] == "Herald"
