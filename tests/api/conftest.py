"""A real herald (the debug binary, or $HERALD_BIN) for the server API tests, once on the memory
engine and once on a redis-server of its own; Centrifugo's official `cent` client pointed at its
`/api`, and live WebSocket clients speaking the JSON protocol (tests/api/live.py)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from cent import Client

from live import Live

ROOT = Path(__file__).resolve().parents[2]
SECRET = "api-test-secret"
API_KEY = "api-test-key"
# Namespaces beside the built-in `user` and `stock`: `room` keeps presence and history, `feed`
# history only; bare names (namespace `default`) keep neither.
NAMESPACES = {
    "HERALD_NAMESPACES__ROOM__PRESENCE": "true",
    "HERALD_NAMESPACES__ROOM__HISTORY_SIZE": "10",
    "HERALD_NAMESPACES__ROOM__HISTORY_TTL": "1m",
    "HERALD_NAMESPACES__FEED__HISTORY_SIZE": "100",
    "HERALD_NAMESPACES__FEED__HISTORY_TTL": "5m",
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Process:
    """A child process whose output goes to a file; terminated (then killed) on stop."""

    def __init__(self, name, cmd, env, dir):
        self.log_path = Path(dir) / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def log(self):
        return ANSI.sub("", self.log_path.read_text(errors="replace"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def listening(log):
    """The client and internal addresses from herald's `listening` line (it binds port 0)."""
    for line in log.splitlines():
        if "listening" in line and "internal" in line:
            fields = dict(re.findall(r"(client|internal)=\"?([0-9.:\[\]]+)", line))
            if "internal" in fields:
                return fields.get("client", ""), fields["internal"]
    return None


class Herald:
    """One herald node: its addresses, a `cent` client on its API and live WebSocket clients."""

    def __init__(self, engine, tmp, redis_url=None):
        env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "info", "NO_COLOR": "1",
               "HERALD_SERVER__CLIENT_ADDR": "127.0.0.1:0", "HERALD_SERVER__INTERNAL_ADDR": "127.0.0.1:0",
               "HERALD_AUTH__HMAC_SECRET": SECRET, "HERALD_API__KEY": API_KEY, **NAMESPACES}
        if redis_url:
            env["HERALD_ENGINE__REDIS_URL"] = redis_url
        self.engine, self.env = engine, env
        self.process = Process(f"herald-{engine}", [str(herald_bin())], env, tmp)
        found = wait_for(lambda: listening(self.process.log()) or self.process.proc.poll() is not None,
                         15, "herald's listening line")
        assert found is not True, f"herald exited:\n{self.process.log()}"
        self.client_addr, self.internal_addr = found
        self.api_url = f"http://{self.internal_addr}/api"
        self.cent = Client(self.api_url, API_KEY, timeout=5)
        wait_for(self.is_ready, 15, "herald /readyz")

    def is_ready(self):
        try:
            with urllib.request.urlopen(f"http://{self.internal_addr}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def token(self, user):
        """A connection token for `user`, from `herald gentoken` with the node's secret."""
        out = subprocess.run([str(herald_bin()), "gentoken", "--user", user], env=self.env,
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()

    def connect(self, user):
        """A WebSocket client connected as `user`."""
        return Live(f"ws://{self.client_addr}/connection/websocket", self.token(user))

    def stop(self):
        self.cent.close()
        self.process.stop()


@pytest.fixture(scope="session", params=["memory", "redis"])
def herald(request):
    tmp = tempfile.mkdtemp(prefix="herald-api-")
    redis = None
    try:
        redis_url = None
        if request.param == "redis":
            port = free_port()
            redis = Process("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", tmp], dict(os.environ), tmp)
            wait_for(lambda: redis_ping(port), 10, "redis-server PING")
            redis_url = f"redis://127.0.0.1:{port}"
        node = Herald(request.param, tmp, redis_url)
        try:
            yield node
        finally:
            node.stop()
    finally:
        if redis:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def cent(herald):
    return herald.cent


@pytest.fixture
def name():
    """A unique suffix for this test's channels and users."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def live(herald):
    """Opens WebSocket clients for the test and closes them after it."""
    opened = []

    def open_as(user):
        client = herald.connect(user)
        opened.append(client)
        return client

    yield open_as
    for client in opened:
        client.close()
