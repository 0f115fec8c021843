"""A live WebSocket client of Herald's JSON protocol (Centrifugo's): connects with a token, sends
commands, waits for pushes and for the close frame. Enough to watch what the server API does to
real connections; no reconnects, no SDK logic."""

import json
import time
from contextlib import ExitStack

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WITHIN = 5.0


class Live:
    """One connection: `client` is the id the connect reply gave it."""

    def __init__(self, url, token):
        self.stack = ExitStack()
        self.ws = self.stack.enter_context(connect(url, open_timeout=WITHIN, close_timeout=1))
        self.next_id = 1
        self.pushes = []
        self.replies = {}
        self.client = self.command({"connect": {"token": token, "name": "api-tests"}})["connect"]["client"]

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def _read(self, deadline):
        """Reads one WebSocket message (frames joined by newlines) and files its frames."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("nothing arrived in time")
        message = self.ws.recv(timeout=remaining)
        for line in message.splitlines():
            frame = json.loads(line)
            if frame.get("id"):
                self.replies[frame["id"]] = frame
            elif "push" in frame:
                self.pushes.append(frame["push"])
            else:
                self.send({})  # a ping, answered with a pong

    def command(self, body):
        """Sends one command and returns its reply; raises on an error reply."""
        cid, self.next_id = self.next_id, self.next_id + 1
        self.send({"id": cid, **body})
        deadline = time.monotonic() + WITHIN
        while cid not in self.replies:
            self._read(deadline)
        reply = self.replies.pop(cid)
        if "error" in reply:
            raise AssertionError(f"{body} failed: {reply['error']}")
        return reply

    def push(self, kind, channel=None):
        """The next push of `kind` (`pub`, `subscribe`, ...), of `channel` if given; earlier
        pushes of other kinds stay queued."""
        deadline = time.monotonic() + WITHIN
        while True:
            for i, push in enumerate(self.pushes):
                if kind in push and (channel is None or push.get("channel") == channel):
                    return self.pushes.pop(i)
            self._read(deadline)

    def closed(self):
        """The close code and reason the server ended the connection with."""
        deadline = time.monotonic() + WITHIN
        try:
            while True:
                self._read(deadline)
        except ConnectionClosed as closed:
            frame = closed.rcvd
            return (frame.code, frame.reason) if frame else (None, "")

    def close(self):
        self.stack.close()
