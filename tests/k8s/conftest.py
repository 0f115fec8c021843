"""pytest fixtures of the manifest tests: every kustomization rendered once per run."""

import pytest

from manifests import KUSTOMIZATIONS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: render(name) for name in KUSTOMIZATIONS}
