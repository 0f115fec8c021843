"""values.schema.json: every shipped values file passes; misspelled keys, wrong types and
contradictory settings are rejected with an error naming the key."""

import json

import jsonschema
import pytest
import yaml

from conftest import CHART, VALUES_FILES, render_text

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def merged(overlay):
    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out
    return merge(DEFAULTS, overlay)


def errors(values):
    return [e for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(values)]


def test_schema_is_draft7():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"].startswith("http://json-schema.org/draft-07/")


@pytest.mark.parametrize("name", VALUES_FILES)
def test_values_file_passes(name):
    values = yaml.safe_load((CHART / name).read_text())
    assert not errors(values), [e.message for e in errors(values)]
    assert not errors(merged(values)), [e.message for e in errors(merged(values))]


@pytest.mark.parametrize("overlay, key", [
    ({"gateway": {"replicaCont": 3}}, "replicaCont"),
    ({"ingress": {"enabeld": True}}, "enabeld"),
    ({"replicaCount": 2}, "replicaCount"),
    ({"metrics": {"serviceMonitor": {"intervall": "15s"}}}, "intervall"),
    ({"gateway": {"drain": {"spreadSecs": 5}}}, "spreadSecs"),
])
def test_misspelled_key_is_rejected(overlay, key):
    found = errors(merged(overlay))
    assert found, f"{overlay} was accepted"
    assert any(key in e.message for e in found), [e.message for e in found]


@pytest.mark.parametrize("overlay, path", [
    ({"gateway": {"replicaCount": "three"}}, ["gateway", "replicaCount"]),
    ({"gateway": {"drain": {"timeoutSeconds": "30s"}}}, ["gateway", "drain", "timeoutSeconds"]),
    ({"ingress": {"enabled": "yes"}}, ["ingress", "enabled"]),
    ({"redis": {"cluster": "redis://a:7000"}}, ["redis", "cluster"]),
    ({"redis": {"url": "10.0.0.1:6379"}}, ["redis", "url"]),
    ({"image": {"pullPolicy": "Sometimes"}}, ["image", "pullPolicy"]),
])
def test_wrong_type_is_rejected(overlay, path):
    found = errors(merged(overlay))
    assert found, f"{overlay} was accepted"
    assert any(list(e.absolute_path) == path for e in found), [(list(e.absolute_path), e.message) for e in found]


def test_url_and_cluster_together_are_rejected():
    found = errors(merged({"redis": {"url": "redis://r:6379", "cluster": ["redis://a:7000"]}}))
    assert found and list(found[0].absolute_path) == ["redis"], [e.message for e in found]
    out = render_text(sets=["redis.url=redis://r:6379", "redis.cluster={redis://a:7000}"], check=False)
    assert out.returncode != 0 and "redis.url and redis.cluster" in out.stderr


def test_config_keys_must_be_herald_settings():
    assert not errors(merged({"config": {"HERALD_CLIENT__QUEUE_SIZE": "512"}}))
    found = errors(merged({"config": {"client.queue_size": "512"}}))
    assert any("client.queue_size" in e.message for e in found), [e.message for e in found]


def test_drain_spread_longer_than_timeout_fails_the_render():
    # draft-07 cannot compare two values: the chart's template check refuses it at install time.
    out = render_text(sets=["gateway.drain.spreadSeconds=40", "gateway.drain.timeoutSeconds=30"], check=False)
    assert out.returncode != 0
    assert "gateway.drain.spreadSeconds must not exceed gateway.drain.timeoutSeconds" in out.stderr


def test_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()

    def leaves(d, prefix=""):
        for k, v in d.items():
            path = f"{prefix}{k}"
            if isinstance(v, dict) and v and k not in ("resources", "behavior", "labels"):
                yield from leaves(v, path + ".")
            else:
                yield path

    missing = [p for p in leaves(DEFAULTS) if f"| `{p}` |" not in readme]
    assert not missing, f"chart README.md lacks {missing}"
