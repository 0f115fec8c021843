"""Shared paths of the observability tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "herald"
RULES = CHART / "rules" / "herald.rules.yaml"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
