"""Rendering: kubectl's kustomize is recent enough, every kustomization renders exactly the
expected objects, and every object validates against the Kubernetes 1.30 schemas (strict:
unknown fields are errors)."""

import re
import subprocess

import kubernetes_validate
import pytest

from manifests import KUBERNETES_VERSION, KUSTOMIZATIONS, base_name, kubectl

SHARED = {
    ("ServiceAccount", "herald"),
    ("ConfigMap", "herald"),
    ("Service", "herald-client"),
    ("Service", "herald-internal"),
    ("Service", "herald-metrics"),
    ("Deployment", "herald-gateway"),
    ("Deployment", "herald-publisher"),
}
EXPECTED = {
    "base": SHARED,
    "dev": SHARED
    | {
        ("Namespace", "herald-dev"),
        ("Secret", "herald"),
        ("Service", "herald-redis"),
        ("StatefulSet", "herald-redis"),
    },
    "prod": SHARED
    | {
        ("HorizontalPodAutoscaler", "herald-gateway"),
        ("PodDisruptionBudget", "herald-gateway"),
        ("PodDisruptionBudget", "herald-publisher"),
        ("NetworkPolicy", "herald"),
        ("Ingress", "herald"),
    },
}


def test_kustomize_is_v5_or_newer():
    out = subprocess.run(
        [kubectl(), "version", "--client"], check=True, capture_output=True, text=True
    ).stdout
    print(out)
    m = re.search(r"Kustomize Version: v(\d+)\.", out)
    assert m, f"no kustomize in kubectl: {out}"
    assert int(m.group(1)) >= 5


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renders_the_expected_objects(rendered, name):
    objs = {(o["kind"], base_name(o)) for o in rendered[name]}
    print(f"{name}: " + ", ".join(f"{k}/{n}" for k, n in sorted(objs)))
    assert objs == EXPECTED[name]
    assert len(rendered[name]) == len(objs), "duplicate objects"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_validates_against_kubernetes_1_30(rendered, name):
    for obj in rendered[name]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_unknown_fields(rendered):
    gateway = next(o for o in rendered["base"] if base_name(o) == "herald-gateway")
    broken = {**gateway, "spec": {**gateway["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
