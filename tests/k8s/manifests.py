"""Helpers of the manifest tests: the repository root, kubectl (from the venv that
scripts/k8s/test.sh installs, never a system kubectl), rendering a kustomization, and small
lookups into the rendered objects."""

import os
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZATIONS = {
    "base": ROOT / "k8s/base",
    "dev": ROOT / "k8s/overlays/dev",
    "prod": ROOT / "k8s/overlays/prod",
}
# The version the manifests promise to work on (native preStop sleep needs 1.30).
KUBERNETES_VERSION = "1.30.0"


def kubectl() -> str:
    path = os.environ.get("KUBECTL")
    if not path:
        raise RuntimeError("KUBECTL is not set: run the tests through scripts/k8s/test.sh")
    return path


def render(name: str) -> list[dict]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(KUSTOMIZATIONS[name])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def base_name(obj: dict) -> str:
    """The object's name without the hash suffix kustomize adds to generated objects."""
    name = obj["metadata"]["name"]
    if obj["kind"] in ("ConfigMap", "Secret"):
        return re.sub(r"-[a-z0-9]{10}$", "", name)
    return name


def find(objs: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objs if o["kind"] == kind and base_name(o) == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def workloads(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def herald_deployments(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["kind"] == "Deployment"]


def container(workload: dict) -> dict:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def env_value(c: dict, name: str) -> dict:
    hits = [e for e in c.get("env", []) if e["name"] == name]
    assert len(hits) == 1, f"{c['name']}: expected one env {name}, found {len(hits)}"
    return hits[0]


def seconds(duration: str) -> int:
    m = re.fullmatch(r"(\d+)s", duration)
    assert m, f"duration {duration!r} is not whole seconds"
    return int(m.group(1))
