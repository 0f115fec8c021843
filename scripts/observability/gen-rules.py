#!/usr/bin/env python3
"""Writes charts/herald/rules/herald.rules.yaml, Herald's alert rules as a plain Prometheus rules
file (`rule_files`), from the one definition in charts/herald/templates/prometheusrule.yaml:
the chart is rendered with selector job="herald" and the PrometheusRule's groups are written out.
`--check` exits 1 when the committed file differs. Needs the chart renderer (scripts/chart/test.sh
builds it at target/chart/render; CHART_RENDER overrides) and PyYAML."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "herald"
OUT = CHART / "rules" / "herald.rules.yaml"
SELECTOR = 'job="herald"'
HEADER = """\
# Herald's alert rules for Prometheus without the Prometheus Operator: list this file under
# rule_files. The series are selected by job="herald": name Herald's scrape job so, or replace the
# selector. HeraldNoReadyGateways needs a role="gateway"|"publisher" target label;
# HeraldNotReady needs kube-state-metrics and stays quiet without it. Runbooks: docs/runbook.md.
# Generated from charts/herald/templates/prometheusrule.yaml by scripts/observability/gen-rules.py;
# edit the template and run `make rules`.
"""


def render_rules():
    """The plain rules file's text, rendered from the chart."""
    render = os.environ.get("CHART_RENDER", str(ROOT / "target" / "chart" / "render"))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
        yaml.safe_dump({"metrics": {"prometheusRule": {"enabled": True, "selector": SELECTOR}}}, values)
        values.flush()
        out = subprocess.run([render, "--chart", str(CHART), "--release", "herald", "--namespace", "herald",
                              "--kube-version", "1.30.0", "-f", values.name],
                             capture_output=True, text=True, check=True).stdout
    rules = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "PrometheusRule"]
    assert len(rules) == 1, f"{len(rules)} PrometheusRule objects rendered"
    body = yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False, width=10000,
                          allow_unicode=True)
    return HEADER + body


def main():
    text = render_rules()
    if sys.argv[1:] == ["--check"]:
        if OUT.read_text() != text:
            sys.exit(f"{OUT.relative_to(ROOT)} differs from the chart's rules: run make rules")
        print(f"{OUT.relative_to(ROOT)} matches the chart's rules")
        return
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
