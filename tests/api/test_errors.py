"""Errors as the official `cent` client sees them (API errors, 401, 404 for methods Herald does
not have), the API key headers Centrifugo accepts, the asyncio client, and a check that the
suite calls every method of `cent.Client`."""

import asyncio
import inspect
import json
import typing
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cent import (
    AsyncClient,
    BatchRequest,
    Client,
    CentApiResponseError,
    CentTransportError,
    CentUnauthorizedError,
    DisconnectRequest,
    HistoryRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    SubscribeRequest,
)

from conftest import API_KEY

# Centrifugo PRO methods (and `connections`): Herald has none of them, so it answers
# 404 and `cent` raises its transport error.
NOT_IN_HERALD = {
    "connections", "update_user_status", "get_user_status", "delete_user_status", "block_user",
    "unblock_user", "revoke_token", "invalidate_user_tokens", "device_register", "device_update",
    "device_remove", "device_list", "device_topic_list", "device_topic_update", "user_topic_list",
    "user_topic_update", "send_push_notification", "update_push_status", "cancel_push",
}


def api_error(call):
    with pytest.raises(CentApiResponseError) as raised:
        call()
    return raised.value.code


def test_errors_are_api_errors_with_centrifugo_codes(cent, name):
    assert api_error(lambda: cent.publish(PublishRequest(channel=f"nope:{name}", data=1))) == 102
    assert api_error(lambda: cent.history(HistoryRequest(channel=f"nope:{name}", limit=1))) == 102
    assert api_error(lambda: cent.subscribe(SubscribeRequest(user="u", channel=f"nope:{name}"))) == 102
    assert api_error(lambda: cent.publish(PublishRequest(channel=f"bad channel {name}", data=1))) == 107
    assert api_error(lambda: cent.history(HistoryRequest(channel=f"feed:{name}", limit=-2))) == 107
    assert api_error(lambda: cent.disconnect(DisconnectRequest(user=""))) == 107
    # Bare names (namespace `default`) keep neither history nor presence.
    assert api_error(lambda: cent.history(HistoryRequest(channel=f"plain-{name}", limit=1))) == 108
    assert api_error(lambda: cent.presence(PresenceRequest(channel=f"plain-{name}"))) == 108
    assert api_error(lambda: cent.presence_stats(PresenceStatsRequest(channel=f"plain-{name}"))) == 108


def test_a_wrong_or_missing_key_is_unauthorized(herald):
    for key in ("wrong-key", ""):
        with Client(herald.api_url, key) as wrong, pytest.raises(CentUnauthorizedError):
            wrong.publish(PublishRequest(channel="feed:x", data=1))


def request_class(method):
    return typing.get_type_hints(getattr(Client, method))["request"]


@pytest.mark.parametrize("method", sorted(NOT_IN_HERALD))
def test_methods_herald_lacks_are_not_found(cent, method):
    # An empty request: Herald answers 404 whatever the body.
    with pytest.raises(CentTransportError) as raised:
        getattr(cent, method)(request_class(method).model_construct())
    assert raised.value.status_code == 404


def post(herald, method, headers, body=None):
    request = urllib.request.Request(f"{herald.api_url}/{method}", headers=headers,
                                     data=json.dumps(body or {}).encode())
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


@pytest.mark.parametrize("headers", [
    {"X-API-Key": API_KEY},
    {"Authorization": f"apikey {API_KEY}"},
    {"Authorization": f"ApiKey {API_KEY}"},
    {"Authorization": f"APIKEY  {API_KEY}"},
], ids=["x-api-key", "apikey", "ApiKey", "APIKEY"])
def test_the_key_headers_centrifugo_accepts(herald, headers):
    status, body = post(herald, "info", headers)
    assert status == 200 and body["result"]["nodes"], body


@pytest.mark.parametrize("headers", [
    {}, {"X-API-Key": "wrong"}, {"Authorization": API_KEY}, {"Authorization": f"Bearer {API_KEY}"},
    {"Authorization": f"apikey {API_KEY} extra"},
], ids=["none", "wrong", "no-scheme", "bearer", "extra"])
def test_other_key_forms_are_refused(herald, headers):
    assert post(herald, "info", headers)[0] == 401


def test_unknown_methods_are_404_with_error_104(herald):
    request = urllib.request.Request(f"{herald.api_url}/no_such_method", data=b"{}",
                                     headers={"X-API-Key": API_KEY})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 404
    assert json.loads(raised.value.read()) == {"error": {"code": 104, "message": "method not found"}}


def test_the_asyncio_client_too(herald, name):
    async def calls():
        client = AsyncClient(herald.api_url, API_KEY, timeout=5)
        try:
            published = await client.publish(PublishRequest(channel=f"feed:{name}", data={"a": 1}))
            batch = await client.batch(BatchRequest(requests=[
                PublishRequest(channel=f"feed:{name}", data={"a": 2}),
                HistoryRequest(channel=f"feed:{name}", limit=10)], parallel=False))
            return published, batch
        finally:
            await client.close()
    published, batch = asyncio.run(calls())
    assert published.offset == 1
    assert batch.replies[0].offset == 2
    assert [p.data for p in batch.replies[1].publications] == [{"a": 1}, {"a": 2}]


def test_the_suite_calls_every_client_method():
    methods = {m for m, _ in inspect.getmembers(Client, inspect.isfunction)
               if not m.startswith("_") and m != "close"}
    here = Path(__file__).parent
    called = {m for m in methods for test in here.glob("test_*.py")
              if f"cent.{m}(" in test.read_text() or f"client.{m}(" in test.read_text()}
    assert methods - NOT_IN_HERALD <= called, methods - NOT_IN_HERALD - called
    assert NOT_IN_HERALD <= methods, NOT_IN_HERALD - methods
