"""A real herald (the debug binary, or $HERALD_BIN) for the centrifuge-python suite, with the
namespaces the suite uses; tokens signed with its secret (HS256, the standard library's hmac);
publications through its server API; and the wire each test runs on: JSON, or Protobuf
(`use_protobuf=True`, payloads as bytes: here the bytes of JSON text)."""

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sdk-python-secret"
API_KEY = "sdk-python-key"
NAMESPACES = {
    "HERALD_NAMESPACES__CHAT__CLIENT_PUBLISH": "true",
    "HERALD_NAMESPACES__CHAT__HISTORY_SIZE": "100",
    "HERALD_NAMESPACES__CHAT__HISTORY_TTL": "5m",
    "HERALD_NAMESPACES__CHAT__PRESENCE": "true",
    "HERALD_NAMESPACES__SECRET__SUBSCRIBE": "token",
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def wait_for(condition, timeout, what):
    """Polls condition() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def herald_bin():
    path = Path(os.environ.get("HERALD_BIN", ROOT / "target/debug/herald"))
    assert path.exists(), f"{path} not found: cargo build -p herald (or set HERALD_BIN)"
    return path


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(claims: dict, secret: str = SECRET) -> str:
    """An HS256 JWT of `claims`."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


class Herald:
    """One herald process on free ports (it binds port 0 and logs its addresses)."""

    def __init__(self, tmp):
        env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "info", "NO_COLOR": "1",
               "HERALD_SERVER__CLIENT_ADDR": "127.0.0.1:0", "HERALD_SERVER__INTERNAL_ADDR": "127.0.0.1:0",
               "HERALD_AUTH__HMAC_SECRET": SECRET, "HERALD_API__KEY": API_KEY, **NAMESPACES}
        self.log_path = Path(tmp) / "herald.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(herald_bin())], env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        found = wait_for(lambda: self.addresses() or self.proc.poll() is not None, 15, "the listening line")
        assert found is not True, f"herald exited:\n{self.log()}"
        client, internal = found
        self.ws_url = f"ws://{client}/connection/websocket"
        self.api_url = f"http://{internal}/api"
        wait_for(lambda: self.get(f"http://{internal}/readyz") == 200, 15, "herald /readyz")

    def log(self):
        return ANSI.sub("", self.log_path.read_text(errors="replace"))

    def addresses(self):
        for line in self.log().splitlines():
            if "listening" in line and "internal" in line:
                fields = dict(re.findall(r"(client|internal)=\"?([0-9.:\[\]]+)", line))
                if "client" in fields and "internal" in fields:
                    return fields["client"], fields["internal"]
        return None

    @staticmethod
    def get(url):
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status
        except OSError:
            return None

    def token(self, user, exp_in=3600, secret=SECRET):
        return sign({"sub": user, "exp": int(time.time()) + exp_in}, secret)

    def sub_token(self, user, channel):
        return sign({"sub": user, "channel": channel, "exp": int(time.time()) + 3600})

    def api(self, method, body):
        req = urllib.request.Request(f"{self.api_url}/{method}", data=json.dumps(body).encode(),
                                     headers={"X-API-Key": API_KEY}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            answer = json.loads(r.read())
        assert "error" not in answer, f"{method} failed: {answer}"
        return answer.get("result", answer)

    def publish(self, channel, data):
        return self.api("publish", {"channel": channel, "data": data})

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def herald():
    with tempfile.TemporaryDirectory(prefix="herald-sdk-python-") as tmp:
        node = Herald(tmp)
        try:
            yield node
        finally:
            node.stop()


@dataclass
class Wire:
    """How the SDK talks: its `use_protobuf` flag and how application data travels."""

    name: str
    use_protobuf: bool
    send: Callable[[Any], Any]
    read: Callable[[Any], Any]


def _read_bytes(data):
    assert isinstance(data, bytes), f"bytes expected, got {type(data)}"
    return json.loads(data)


WIRES = {
    "json": Wire("json", False, lambda d: d, lambda d: d),
    "protobuf": Wire("protobuf", True, lambda d: json.dumps(d).encode(), _read_bytes),
}


@pytest.fixture(params=list(WIRES))
def wire(request):
    return WIRES[request.param]


@pytest.fixture
def name():
    """A unique suffix for this test's channels and users."""
    return uuid.uuid4().hex[:12]
