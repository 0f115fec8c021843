"""Reading the Dockerfile and .dockerignore without a Docker engine: instructions by stage,
the build context as Docker would send it, and a dry run of a build stage's COPY and RUN
steps in a scratch directory (with `cargo build` replaced by a check of what it would load)."""

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str

    def json_args(self) -> list[str]:
        return json.loads(self.args)


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> tuple[list[Instruction], list[Stage]]:
    """Global instructions (before the first FROM) and the stages."""
    lines, pending = [], ""
    for raw in path.read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    assert not pending, "a continuation at the end of the file"
    head, stages = [], []
    for line in lines:
        keyword, _, args = line.strip().partition(" ")
        ins = Instruction(keyword.upper(), args.strip())
        if ins.keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", ins.args, re.IGNORECASE)
            stages.append(Stage(m.group(1), m.group(2)))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            head.append(ins)
    return head, stages


def ignore_patterns(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert not line.startswith("!"), "exceptions are not supported here"
            out.append(line.strip("/"))
    return out


def is_ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: a pattern matching a path or one of its parent directories excludes it;
    `*` stays within one path segment, `**` spans any number."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(_match(p, prefix) for p in patterns for prefix in prefixes)


def _match(pattern: str, path: str) -> bool:
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.fullmatch(regex, path) is not None


def build_context(root: Path, patterns: list[str]) -> list[str]:
    """Relative paths of the files Docker would send, walking around ignored directories."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel = (lambda n: n) if rel_dir == "." else (lambda n: f"{rel_dir}/{n}")
        dirnames[:] = [d for d in dirnames if not is_ignored(rel(d), patterns)]
        files += [rel(f) for f in filenames if not is_ignored(rel(f), patterns)]
    return sorted(files)


CARGO_SHIM = """#!/bin/sh
# `cargo build` of the dry run: load the workspace as cargo would (every member's manifest and
# target, Cargo.lock unchanged under --locked) without compiling, and leave the binary's place.
set -eu
[ "$1" = build ] || { echo "unexpected cargo $*" >&2; exit 1; }
"$REAL_CARGO" metadata --locked --format-version 1 >/dev/null
mkdir -p target/release
: > target/release/herald
"""

INSTALL_SHIM = """#!/bin/sh
# `install` of the dry run: what it copies out of target/ must exist; nothing is written.
for arg; do case "$arg" in target/*) test -f "$arg" ;; esac; done
"""


def dry_run(stage: Stage, root: Path, context: list[str], scratch: Path) -> Path:
    """Runs the stage's COPY (from the context) and RUN steps in scratch/src; returns it."""
    shims = scratch / "shims"
    shims.mkdir()
    for name, text in (("cargo", CARGO_SHIM), ("install", INSTALL_SHIM)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shims}:{os.environ['PATH']}",
        "REAL_CARGO": shutil.which("cargo") or "cargo",
    }
    work = scratch / "src"
    work.mkdir()
    for ins in stage.instructions:
        if ins.keyword == "WORKDIR":
            assert ins.args == "/src", "the dry run maps WORKDIR /src to its scratch tree"
        elif ins.keyword == "COPY":
            *sources, dest = shlex.split(ins.args)
            assert not any(s.startswith("--") for s in sources), ins.args
            for src in sources:
                hits = [f for f in context if f == src or f.startswith(src + "/")]
                assert hits, f"COPY {src}: not in the build context"
                for f in hits:
                    target = work / dest / (Path(f).name if f == src else f[len(src) + 1 :])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(root / f, target)
        elif ins.keyword == "RUN":
            subprocess.run(["sh", "-c", ins.args], cwd=work, env=env, check=True)
    return work

