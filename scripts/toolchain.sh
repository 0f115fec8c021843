#!/usr/bin/env bash
# Makes the toolchain pinned in rust-toolchain.toml available without a download where the
# machine's installed stable toolchain is that very version (rustup would otherwise try to fetch
# it). Elsewhere rustup installs the pinned version as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
command -v rustup >/dev/null || exit 0
if rustup toolchain list | grep -Eq "^$want(-| |$)"; then exit 0; fi
have=$(rustc +stable --version 2>/dev/null | awk '{print $2}')
if [ "$have" = "$want" ]; then
  rustup toolchain link "$want" "$(rustc +stable --print sysroot)"
  echo "toolchain $want: linked to the installed stable toolchain"
fi
