"""Fixtures of the chart tests: the renderer, rendered objects, free ports, a redis-server and the
herald binary. scripts/chart/test.sh builds the renderer and installs everything first."""

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "herald"
RENDER = Path(os.environ.get("CHART_RENDER", ROOT / "target" / "chart" / "render"))
VALUES_FILES = ["values.yaml", "values-production.yaml", "values-cluster.yaml"]


def render_text(*files, sets=(), lookup=None, notes=False, kube="1.30.0", namespace="herald", check=True):
    """Runs the renderer; returns the CompletedProcess (stdout = manifests or NOTES)."""
    cmd = [str(RENDER), "--chart", str(CHART), "--release", "herald", "--namespace", namespace,
           "--kube-version", kube]
    for f in files:
        cmd += ["-f", str(CHART / f) if not os.path.isabs(f) else f]
    for s in sets:
        cmd += ["--set", s]
    if lookup:
        cmd += ["--lookup", str(lookup)]
    if notes:
        cmd.append("--notes")
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def render(*files, **kw):
    """Rendered objects (dicts) of the chart with the given values files and --set overrides."""
    return [d for d in yaml.safe_load_all(render_text(*files, **kw).stdout) if d]


def find(objs, kind, name=None):
    """The objects of a kind (and name); asserts there is exactly one when a name is given."""
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    if name is not None:
        assert len(hits) == 1, f"{kind}/{name}: {len(hits)} objects"
        return hits[0]
    return hits


def object_list(objs):
    return [f'{o["kind"]}/{o["metadata"]["name"]}' for o in objs]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what):
    """Polls condition() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def herald_bin():
    path = Path(os.environ.get("HERALD_BIN", ROOT / "target" / "debug" / "herald"))
    if not path.exists():
        subprocess.run(["cargo", "build", "-p", "herald"], cwd=ROOT, check=True)
    assert path.exists(), f"no herald binary at {path}"
    return path


@pytest.fixture(scope="session")
def redis_url():
    """A throw-away redis-server on a free port, no persistence."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"],
                                            capture_output=True, text=True).stdout.strip() == "PONG",
                     10, "redis-server PING")
            yield f"redis://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)
