#!/usr/bin/env bash
# RFC 6455 conformance of Herald's WebSocket framing: the Autobahn TestSuite cases, driven by
# kosoku (PyPI, in a venv under target/autobahn), against the gateway's test-only echo endpoint
# (feature `autobahn-echo`: Herald's handshake, frame decoder and close rules, echoing messages
# back). Builds herald with the feature into target/autobahn (the main debug build keeps its
# binary), writes the report to target/autobahn/report/ (index.html, index.json, a JSON and an
# HTML file per case), prints the verdicts per behaviour, and fails unless every case is OK,
# NON-STRICT or an accepted INFORMATIONAL (see run.py for the excluded and accepted cases).
# Extra arguments go to kosoku (e.g. `-i '1.*'` for a subset).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '\n== %s\n' "$*"; }

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
scripts/apt-install.sh "${missing[@]}"

out=target/autobahn
venv=$out/venv
scripts/venv.sh "$venv" scripts/autobahn/requirements.txt

say "build herald with the echo endpoint"
# A target directory of its own: with the feature in target/debug, the next plain build would
# rebuild the gateway, the node and herald again (and tests would race for target/debug/herald).
# Seeded once from target/debug, so only the crates the feature changes are compiled.
# The compiled libraries are hard links (rustc replaces an output file rather than writing
# into it); fingerprints, build script outputs and dep-info files, which cargo and rustc
# rewrite in place, are copies.
if [ ! -d "$out/debug/deps" ] && [ -d target/debug/deps ]; then
  say "seeding $out/debug from target/debug"
  mkdir -p "$out/debug/deps"
  cp -r target/debug/build target/debug/.fingerprint "$out/debug/"
  find target/debug/deps -maxdepth 1 -name '*.d' -exec cp -t "$out/debug/deps/" {} +
  find target/debug/deps -maxdepth 1 -name 'lib*' ! -name '*.d' -exec cp -l -t "$out/debug/deps/" {} +
fi
CARGO_TARGET_DIR=$out cargo build -p herald --features autobahn-echo

say "Autobahn cases against /autobahn/echo"
"$venv/bin/python" scripts/autobahn/run.py "$out/debug/herald" "$out/report" "$@"
