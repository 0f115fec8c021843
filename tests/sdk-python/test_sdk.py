"""Herald with Centrifugo's official Python SDK, centrifuge-python, once per wire (JSON, and
Protobuf with `use_protobuf=True`): connecting, the server-side personal channel, client-side
subscriptions, every client error code the SDK reacts to, client publish, history, presence, and
recovery after a reconnect for client-side and server-side subscriptions."""

import asyncio
import time
from collections import defaultdict

import pytest
from centrifuge import Client, ClientEventHandler, ReplyError, SubscriptionEventHandler

WITHIN = 5.0
EVENTS = ["connecting", "connected", "disconnected", "error", "subscribing", "subscribed",
          "unsubscribed", "publication", "join", "leave"]


class Recorder(ClientEventHandler, SubscriptionEventHandler):
    """Records every event of a client or a subscription; `next` awaits one."""

    def __init__(self):
        self.seen = defaultdict(list)
        self.changed = asyncio.Event()

    def record(self, event, ctx):
        self.seen[event].append(ctx)
        self.changed.set()

    async def next(self, event, match=lambda ctx: True, count=1, timeout=WITHIN):
        """Waits until `count` recorded `event`s match; returns them (the last if count is 1)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [ctx for ctx in self.seen[event] if match(ctx)]
            if len(found) >= count:
                return found[0] if count == 1 else found
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {count} '{event}' within {timeout}s: {self.seen[event]}")
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


def _recorder_method(event):
    async def on_event(self, ctx):
        self.record(event, ctx)
    return on_event


for _event in EVENTS:
    setattr(Recorder, f"on_{_event}", _recorder_method(_event))


def run(body):
    """Runs an async test body on a fresh event loop, disconnecting the clients it made."""
    async def main():
        clients = []
        try:
            await body(clients)
        finally:
            for c in clients:
                await c.disconnect()
    asyncio.run(main())


def make_client(herald, wire, clients, **options):
    events = Recorder()
    c = Client(herald.ws_url, events=events, use_protobuf=wire.use_protobuf, timeout=WITHIN,
               min_reconnect_delay=0.05, max_reconnect_delay=0.5, **options)
    clients.append(c)
    return c, events


async def connected(herald, wire, clients, user):
    c, events = make_client(herald, wire, clients, token=herald.token(user))
    await c.connect()
    await c.ready(WITHIN)
    return c, events


async def subscribed(c, channel, **options):
    events = Recorder()
    sub = c.new_subscription(channel, events=events, **options)
    await sub.subscribe()
    await sub.ready(WITHIN)
    return sub, events


def test_connects_and_gets_its_client_id(herald, wire, name):
    async def body(clients):
        _, events = await connected(herald, wire, clients, f"u{name}")
        ctx = await events.next("connected")
        assert ctx.client
    run(body)


def test_personal_channel_is_subscribed_server_side_and_receives(herald, wire, name):
    async def body(clients):
        user = f"u{name}"
        channel = f"user:{user}"
        _, events = await connected(herald, wire, clients, user)
        sub = await events.next("subscribed", lambda ctx: ctx.channel == channel)
        assert sub.recoverable
        sent = herald.publish(channel, {"text": "for you"})
        ctx = await events.next("publication", lambda ctx: ctx.channel == channel)
        assert wire.read(ctx.pub.data) == {"text": "for you"}
        assert ctx.pub.offset == sent["offset"]
    run(body)


def test_topic_subscription_receives_api_publications(herald, wire, name):
    async def body(clients):
        c, _ = await connected(herald, wire, clients, f"u{name}")
        channel = f"stock:{name}"
        _, events = await subscribed(c, channel)
        herald.publish(channel, {"symbol": name, "price": 1.5})
        ctx = await events.next("publication")
        assert wire.read(ctx.pub.data) == {"symbol": name, "price": 1.5}
    run(body)


def test_expired_token_is_refreshed_after_109(herald, wire, name):
    async def body(clients):
        calls = []

        async def get_token():
            calls.append(1)
            return herald.token(f"u{name}", exp_in=-60 if len(calls) == 1 else 3600)

        c, events = make_client(herald, wire, clients, get_token=get_token)
        await c.connect()
        await c.ready(WITHIN)
        errors = [ctx.error for ctx in events.seen["error"]]
        assert any(isinstance(e, ReplyError) and e.code == 109 for e in errors), errors
        assert len(calls) == 2
    run(body)


@pytest.mark.parametrize("token,code", [("forged", 3500), ("", 3501)])
def test_refused_connections_end_with_their_code(herald, wire, name, token, code):
    async def body(clients):
        token_value = herald.token(f"u{name}", secret="not-the-secret") if token == "forged" else ""
        c, events = make_client(herald, wire, clients, token=token_value)
        await c.connect()
        ctx = await events.next("disconnected")
        assert ctx.code == code, ctx
    run(body)


@pytest.mark.parametrize("channel,code", [("nope:{name}", 102), ("user:other{name}", 103),
                                          ("secret:{name}", 103)])
def test_refused_subscriptions_end_with_their_code(herald, wire, name, channel, code):
    async def body(clients):
        c, _ = await connected(herald, wire, clients, f"u{name}")
        events = Recorder()
        sub = c.new_subscription(channel.format(name=name), events=events)
        await sub.subscribe()
        ctx = await events.next("unsubscribed")
        assert ctx.code == code, ctx
        assert c.state.value == "connected"
    run(body)


def test_subscription_token_lets_a_client_into_a_token_channel(herald, wire, name):
    async def body(clients):
        user, channel = f"u{name}", f"secret:{name}"
        c, _ = await connected(herald, wire, clients, user)

        async def get_token(ch):
            assert ch == channel
            return herald.sub_token(user, channel)

        _, events = await subscribed(c, channel, get_token=get_token)
        herald.publish(channel, {"secret": True})
        ctx = await events.next("publication")
        assert wire.read(ctx.pub.data) == {"secret": True}
    run(body)


def test_client_publish_is_allowed_in_chat_and_refused_in_stock(herald, wire, name):
    async def body(clients):
        writer, _ = await connected(herald, wire, clients, f"w{name}")
        reader, _ = await connected(herald, wire, clients, f"r{name}")
        channel = f"chat:{name}"
        _, events = await subscribed(reader, channel)
        await writer.publish(channel, wire.send({"text": "from a client"}))
        ctx = await events.next("publication")
        assert wire.read(ctx.pub.data) == {"text": "from a client"}
        assert ctx.pub.info.user == f"w{name}"
        with pytest.raises(ReplyError) as refused:
            await writer.publish(f"stock:{name}", wire.send({"price": 1}))
        assert refused.value.code == 103
    run(body)


def test_history(herald, wire, name):
    async def body(clients):
        c, _ = await connected(herald, wire, clients, f"u{name}")
        channel = f"chat:{name}"
        offsets = [herald.publish(channel, {"i": i})["offset"] for i in range(3)]
        sub, _ = await subscribed(c, channel)
        history = await sub.history(limit=10)
        assert [wire.read(p.data) for p in history.publications] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert [p.offset for p in history.publications] == offsets
        assert history.offset == offsets[-1] and history.epoch
        top = await sub.history(limit=0)
        assert top.publications == [] and top.offset == offsets[-1]
    run(body)


def test_presence_and_presence_stats(herald, wire, name):
    async def body(clients):
        channel = f"chat:{name}"
        subs = []
        for user in (f"a{name}", f"b{name}"):
            c, _ = await connected(herald, wire, clients, user)
            sub, _ = await subscribed(c, channel)
            subs.append(sub)
        presence = await subs[0].presence()
        assert sorted(info.user for info in presence.clients.values()) == [f"a{name}", f"b{name}"]
        stats = await subs[1].presence_stats()
        assert (stats.num_clients, stats.num_users) == (2, 2)
    run(body)


def test_recovery_of_a_client_side_subscription_after_a_reconnect(herald, wire, name):
    async def body(clients):
        c, client_events = await connected(herald, wire, clients, f"u{name}")
        channel = f"chat:room{name}"
        _, events = await subscribed(c, channel, recoverable=True)
        first = herald.publish(channel, {"n": 0})
        await events.next("publication")
        await c.disconnect()
        sent = [herald.publish(channel, {"n": n})["offset"] for n in range(1, 6)]
        assert sent == [first["offset"] + k for k in range(1, 6)]
        await c.connect()
        await c.ready(WITHIN)
        again = await events.next("subscribed", count=2)
        assert again[-1].was_recovering and again[-1].recovered
        pubs = await events.next("publication", count=6)
        assert [wire.read(p.pub.data)["n"] for p in pubs[1:]] == [1, 2, 3, 4, 5]
        assert [p.pub.offset for p in pubs[1:]] == sent
    run(body)


def test_recovery_of_the_personal_channel_through_connect_subs(herald, wire, name):
    async def body(clients):
        user = f"u{name}"
        channel = f"user:{user}"
        c, events = await connected(herald, wire, clients, user)
        on_channel = lambda ctx: ctx.channel == channel  # noqa: E731
        await events.next("subscribed", on_channel)
        before = herald.publish(channel, {"n": 0})
        await events.next("publication", on_channel)
        await c.disconnect()
        for n in range(1, 6):
            herald.publish(channel, {"n": n})
        await c.connect()
        await c.ready(WITHIN)
        again = await events.next("subscribed", on_channel, count=2)
        assert again[-1].was_recovering and again[-1].recovered
        pubs = await events.next("publication", on_channel, count=6)
        assert [wire.read(p.pub.data)["n"] for p in pubs[1:]] == [1, 2, 3, 4, 5]
        assert [p.pub.offset for p in pubs[1:]] == [before["offset"] + k for k in range(1, 6)]
    run(body)
