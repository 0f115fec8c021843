# Herald task runner. `make run` starts Herald (dev mode, embedded engine);
# `make test` installs what the tests need and runs the whole suite.

.PHONY: run test test-rust test-js api sdk-python autobahn fuzz chart k8s observability rules dashboards lint bench loadtest fmt

run:
	cargo run --release -p herald

test:
	scripts/test.sh

test-rust:
	cargo test --workspace

test-js:
	scripts/test.sh js

# Every server API method through Centrifugo's official Python client, memory and Redis engines.
api:
	scripts/api/test.sh

# Centrifugo's official Python client SDK, centrifuge-python, on the JSON and Protobuf wires.
sdk-python:
	scripts/sdk-python/test.sh

# RFC 6455 conformance: the Autobahn cases against a test-only echo endpoint;
# report in target/autobahn/report/.
autobahn:
	scripts/autobahn/test.sh

# The parsers' fuzz properties, 200,000 cases each (FUZZ_CASES=n to change).
fuzz:
	scripts/test.sh fuzz

chart:
	scripts/chart/test.sh

k8s:
	scripts/k8s/test.sh

# Alert rule unit tests, and dashboards and alerts against a live Prometheus.
observability:
	scripts/observability/test.sh

# Regenerate charts/herald/rules/herald.rules.yaml from the chart's PrometheusRule template.
rules:
	target/chart/venv/bin/python scripts/observability/gen-rules.py

# Regenerate charts/herald/dashboards/*.json.
dashboards:
	python3 scripts/observability/gen-dashboards.py

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p herald-gateway --features autobahn-echo --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench:
	cargo bench -p herald-core -p herald-gateway

loadtest:
	loadtest/run-all.sh
