#!/usr/bin/env bash
# Installs the Debian packages named (each once) with apt-get; does nothing
# when none are named. The test scripts call it with what they found missing.
set -euo pipefail
(($#)) || exit 0
printf '\n== installing %s\n' "$*"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -q
# shellcheck disable=SC2046 # one package per line, deduplicated
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $(printf '%s\n' "$@" | sort -u)
