"""What the server API does to live connections, through the official `cent` client: subscribe,
unsubscribe, disconnect and refresh against WebSocket clients; presence, presence_stats, channels
and info while they are connected."""

import time

from cent import (
    ChannelsRequest,
    ClientInfo,
    Disconnect,
    DisconnectRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)

from conftest import wait_for


def alive(cent, client, channel):
    """The connection still gets publications in `channel`."""
    cent.publish(PublishRequest(channel=channel, data={"ping": client.client}))
    return client.push("pub", channel)["pub"]["data"] == {"ping": client.client}


def test_subscribe_and_unsubscribe_a_user(cent, live, name):
    user, channel = f"u{name}", f"room:{name}"
    client = live(user)
    assert cent.subscribe(SubscribeRequest(user=user, channel=channel)).model_dump() == {}
    pushed = client.push("subscribe", channel)
    assert pushed["subscribe"]["recoverable"] is True, pushed
    cent.publish(PublishRequest(channel=channel, data="hello"))
    assert client.push("pub", channel)["pub"]["data"] == "hello"

    assert cent.unsubscribe(UnsubscribeRequest(user=user, channel=channel)).model_dump() == {}
    assert client.push("unsubscribe", channel)["unsubscribe"]["code"] == 2000


def test_subscribe_one_connection_of_a_user(cent, live, name):
    user, channel = f"u{name}", f"room:{name}"
    chosen, other = live(user), live(user)
    cent.subscribe(SubscribeRequest(user=user, channel=channel, client=chosen.client))
    chosen.push("subscribe", channel)
    # Control commands arrive in order: `other`'s first subscribe push is the one for all.
    cent.subscribe(SubscribeRequest(user=user, channel=f"{channel}-all"))
    assert other.push("subscribe")["channel"] == f"{channel}-all"
    assert alive(cent, chosen, channel)


def test_presence_and_presence_stats(cent, live, name):
    channel = f"room:{name}"
    alice, alice_again, bob = live(f"alice{name}"), live(f"alice{name}"), live(f"bob{name}")
    for client in (alice, alice_again, bob):
        client.command({"subscribe": {"channel": channel}})

    def stats():
        s = cent.presence_stats(PresenceStatsRequest(channel=channel))
        return s if s.num_clients == 3 else None
    assert wait_for(stats, 5, "three clients in presence").num_users == 2
    presence = cent.presence(PresenceRequest(channel=channel)).presence
    assert presence == {
        alice.client: ClientInfo(user=f"alice{name}", client=alice.client),
        alice_again.client: ClientInfo(user=f"alice{name}", client=alice_again.client),
        bob.client: ClientInfo(user=f"bob{name}", client=bob.client),
    }

    bob.command({"unsubscribe": {"channel": channel}})
    wait_for(lambda: bob.client not in cent.presence(PresenceRequest(channel=channel)).presence, 5,
             "bob gone from presence")
    assert cent.presence_stats(PresenceStatsRequest(channel=channel)).num_users == 1


def test_disconnect_one_connection_then_all(cent, live, name):
    user, channel = f"u{name}", f"room:{name}"
    first, second = live(user), live(user)
    second.command({"subscribe": {"channel": channel}})
    cent.disconnect(DisconnectRequest(user=user, client=first.client,
                                      disconnect=Disconnect(code=4001, reason="bye")))
    assert first.closed()[0] == 4001
    assert alive(cent, second, channel)

    assert cent.disconnect(DisconnectRequest(user=user)).model_dump() == {}
    assert second.closed() == (3503, "force disconnect")


def test_refresh_moves_expiry_or_expires_now(cent, live, name):
    user, channel = f"u{name}", f"room:{name}"
    first, second = live(user), live(user)
    second.command({"subscribe": {"channel": channel}})
    later = int(time.time()) + 3600
    assert cent.refresh(RefreshRequest(user=user, expire_at=later)).model_dump() == {}
    assert alive(cent, second, channel)

    cent.refresh(RefreshRequest(user=user, client=first.client, expired=True))
    assert first.closed() == (3005, "connection expired")
    assert alive(cent, second, channel)
    cent.refresh(RefreshRequest(user=user, expired=True))
    assert second.closed()[0] == 3005


def test_channels_lists_subscribed_channels(cent, live, name):
    channel = f"room:{name}"
    client = live(f"u{name}")
    client.command({"subscribe": {"channel": channel}})

    def listed():
        return cent.channels(ChannelsRequest(pattern=f"room:{name[:6]}*")).channels.get(channel)
    assert wait_for(listed, 5, f"{channel} listed").num_clients == 1
    assert channel in cent.channels(ChannelsRequest()).channels
    assert cent.channels(ChannelsRequest(pattern=f"feed:{name}*")).channels == {}


def test_info_describes_the_node(cent, live, herald, name):
    live(f"u{name}")

    def counted():
        nodes = cent.info(InfoRequest()).nodes
        return nodes if nodes and nodes[0].num_clients >= 1 else None
    nodes = wait_for(counted, 5, "the node counting a client")
    assert len(nodes) == 1
    node = nodes[0]
    assert node.uid and node.name and node.version
    assert node.num_users >= 1 and node.uptime >= 0
