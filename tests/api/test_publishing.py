"""Publishing through Centrifugo's official `cent` client: publish, broadcast, history,
history_remove and batch (in order and in parallel), each checked by what it leaves behind."""

import json
import urllib.request

from cent import (
    BatchRequest,
    BroadcastRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    HistoryResult,
    InfoRequest,
    InfoResult,
    PublishRequest,
    PublishResult,
    StreamPosition,
)

from conftest import API_KEY


def history(cent, channel, **kw):
    return cent.history(HistoryRequest(channel=channel, limit=kw.pop("limit", 100), **kw))


def test_publish_then_history_shows_it(cent, name):
    channel = f"feed:{name}"
    first = cent.publish(PublishRequest(channel=channel, data={"text": "one"}, tags={"kind": "note"}))
    assert (first.offset, bool(first.epoch)) == (1, True)
    second = cent.publish(PublishRequest(channel=channel, data=["two"]))
    assert (second.offset, second.epoch) == (2, first.epoch)

    h = history(cent, channel)
    assert (h.offset, h.epoch) == (2, first.epoch)
    assert [(p.offset, p.data, p.tags) for p in h.publications] == [
        (1, {"text": "one"}, {"kind": "note"}), (2, ["two"], None)]

    newest = history(cent, channel, limit=1, reverse=True)
    assert [p.data for p in newest.publications] == [["two"]]
    since = history(cent, channel, since=StreamPosition(offset=1, epoch=first.epoch))
    assert [p.offset for p in since.publications] == [2]
    position = cent.history(HistoryRequest(channel=channel))
    assert (position.publications, position.offset) == ([], 2)


def test_publish_without_history_answers_no_position(cent, name):
    result = cent.publish(PublishRequest(channel=f"plain-{name}", data={"n": 1}))
    assert (result.offset, result.epoch) == (0, "")


def test_idempotent_publish_answers_the_first_position(cent, name):
    channel = f"feed:{name}"
    once = cent.publish(PublishRequest(channel=channel, data=1, idempotency_key=f"k-{name}"))
    again = cent.publish(PublishRequest(channel=channel, data=2, idempotency_key=f"k-{name}"))
    assert again.offset == once.offset == 1
    assert [p.data for p in history(cent, channel).publications] == [1]


def test_broadcast_reaches_three_channels(cent, live, name):
    channels = [f"feed:{name}-{i}" for i in range(3)]
    watcher = live(f"w{name}")
    for channel in channels:
        watcher.command({"subscribe": {"channel": channel}})
    result = cent.broadcast(BroadcastRequest(channels=channels, data={"all": name}, tags={"t": "b"}))
    assert [(r.error, r.result.offset) for r in result.responses] == [(None, 1)] * 3
    for channel in channels:
        assert watcher.push("pub", channel)["pub"]["data"] == {"all": name}
        assert [p.data for p in history(cent, channel).publications] == [{"all": name}]


def test_broadcast_answers_each_channel_on_its_own(cent, name):
    result = cent.broadcast(BroadcastRequest(channels=[f"feed:{name}", f"nope:{name}"], data=1))
    ok, refused = result.responses
    assert (ok.error, ok.result.offset) == (None, 1)
    assert (refused.error.code, refused.result) == (102, None)


def test_history_remove_keeps_the_position(cent, name):
    channel = f"room:{name}"
    for n in range(3):
        cent.publish(PublishRequest(channel=channel, data=n))
    assert cent.history_remove(HistoryRemoveRequest(channel=channel)).model_dump() == {}
    h = history(cent, channel)
    assert (h.publications, h.offset) == ([], 3)
    assert cent.publish(PublishRequest(channel=channel, data=3)).offset == 4


def test_batch_in_order(cent, name):
    channel = f"feed:{name}"
    result = cent.batch(BatchRequest(requests=[
        PublishRequest(channel=channel, data="a"),
        PublishRequest(channel=channel, data="b"),
        HistoryRequest(channel=channel, limit=10),
        HistoryRemoveRequest(channel=channel),
        HistoryRequest(channel=channel, limit=10),
    ], parallel=False))
    first, second, before, _, after = result.replies
    assert isinstance(first, PublishResult) and (first.offset, second.offset) == (1, 2)
    # In order: each command sees what the ones before it did.
    assert isinstance(before, HistoryResult) and [p.data for p in before.publications] == ["a", "b"]
    assert (after.publications, after.offset) == ([], 2)


def test_batch_in_parallel(cent, name):
    channels = [f"feed:{name}-{i}" for i in range(8)]
    result = cent.batch(BatchRequest(
        requests=[PublishRequest(channel=c, data=i) for i, c in enumerate(channels)] + [InfoRequest()],
        parallel=True))
    assert len(result.replies) == 9
    assert [r.offset for r in result.replies[:8]] == [1] * 8
    assert isinstance(result.replies[8], InfoResult) and result.replies[8].nodes
    for i, channel in enumerate(channels):
        assert [p.data for p in history(cent, channel).publications] == [i]


def post(herald, method, body, headers=None):
    request = urllib.request.Request(f"{herald.api_url}/{method}", data=json.dumps(body).encode(),
                                     headers={"X-API-Key": API_KEY, **(headers or {})})
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, json.loads(r.read())


def test_batch_replies_are_top_level_one_per_command(herald, name):
    """The wire shape (cent cannot read error replies inside a batch, so plain HTTP here)."""
    status, body = post(herald, "batch", {"commands": [
        {"publish": {"channel": f"feed:{name}", "data": 1}},
        {"publish": {"channel": f"nope:{name}", "data": 1}},
        {"no_such_method": {}},
        {"batch": {"commands": []}},
        {},
        None,
        {"info": {}, "channels": {}},
        {"history_remove": {"channel": f"feed:{name}"}},
    ], "parallel": True})
    assert status == 200
    assert body == {"replies": [
        {"publish": {"offset": 1, "epoch": body["replies"][0]["publish"]["epoch"]}},
        {"error": {"code": 102, "message": "unknown channel"}},
        {"error": {"code": 104, "message": "method not found"}},
        {"error": {"code": 104, "message": "method not found"}},
        {"error": {"code": 104, "message": "method not found"}},
        {"error": {"code": 107, "message": "bad request"}},
        {"error": {"code": 107, "message": "bad request"}},
        {"history_remove": {}},
    ]}
    assert post(herald, "batch", {"commands": []}) == (200, {"replies": []})
    assert post(herald, "batch", {}) == (200, {"replies": []})
