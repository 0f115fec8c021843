"""The Dockerfile and .dockerignore, checked without a Docker engine: a multi-stage build
whose runtime image runs as a non-root user the manifests expect, with the entry point and
ports the manifests use, a build context without target/, and a dry run of the builder stage
proving that the dependency step and the final step load the workspace as `cargo build -p
herald --locked` would."""

import re
import tomllib

import pytest

import dockerfile
from manifests import ROOT, container, herald_deployments

ENTRYPOINT = "/usr/local/bin/herald"


@pytest.fixture(scope="module")
def stages():
    _, stages = dockerfile.parse(ROOT / "Dockerfile")
    return stages


@pytest.fixture(scope="module")
def patterns():
    return dockerfile.ignore_patterns(ROOT / ".dockerignore")


def test_builds_in_a_rust_stage_and_runs_on_debian_slim(stages):
    assert len(stages) == 2
    builder, runtime = stages
    assert re.fullmatch(r"rust:(\$\{RUST_VERSION\}|1[.\d]*)-bookworm", builder.image)
    assert builder.name == "builder"
    assert runtime.image == "debian:bookworm-slim"
    builds = [i.args for i in builder.all("RUN") if "cargo build" in i.args]
    assert len(builds) == 2, "a dependency step, then the sources"
    assert all("cargo build --release -p herald --locked" in b for b in builds)


def test_runtime_is_non_root_with_the_binary_at_the_manifests_path(stages, rendered):
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    assert user.args == "10001:10001"
    setup = " ".join(i.args for i in runtime.all("RUN"))
    assert "--uid 10001" in setup and "--gid 10001" in setup
    assert re.search(r"install -y --no-install-recommends ca-certificates\s+&&", setup)
    (copy,) = runtime.all("COPY")
    assert copy.args.startswith("--from=builder ") and copy.args.endswith(" " + ENTRYPOINT)
    (entry,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert entry.json_args() == [ENTRYPOINT]
    assert cmd.json_args() == ["run"]
    assert not runtime.all("VOLUME"), "nothing to write: the root filesystem is read-only"
    for name in ("dev", "prod"):
        for d in herald_deployments(rendered[name]):
            assert container(d)["command"] == entry.json_args()
            assert container(d)["args"][0] == cmd.json_args()[0]


def test_exposes_the_ports_the_manifests_use(stages, rendered):
    (expose,) = stages[-1].all("EXPOSE")
    exposed = {int(p) for p in expose.args.split()}
    used = {
        p["containerPort"]
        for d in herald_deployments(rendered["base"])
        for p in container(d)["ports"]
    }
    assert exposed == used == {8000, 8001}


def test_carries_oci_labels(stages):
    labels = " ".join(i.args for i in stages[-1].all("LABEL"))
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_context_leaves_out_build_output_and_node_packages(patterns):
    for path in (
        "target/release/herald",
        ".git/HEAD",
        "tests/js/node_modules/ws/index.js",
        "loadtest/peers/node_modules/x.js",
        "loadtest/results/run.json",
    ):
        assert dockerfile.is_ignored(path, patterns), path
    for path in ("Cargo.toml", "Cargo.lock", "services/gateway/assets/index.html", "loadtest/src/main.rs"):
        assert not dockerfile.is_ignored(path, patterns), path


def test_dependency_step_copies_every_workspace_manifest(stages):
    builder = stages[0]
    first_build = next(
        n for n, i in enumerate(builder.instructions) if "cargo build" in i.args
    )
    copied = set()
    for ins in builder.instructions[:first_build]:
        if ins.keyword == "COPY":
            *sources, _ = ins.args.split()
            copied.update(sources)
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    assert {"Cargo.toml", "Cargo.lock"} <= copied
    for member in members:
        assert f"{member}/Cargo.toml" in copied, member


def test_builder_stage_dry_run(stages, patterns, tmp_path):
    context = dockerfile.build_context(ROOT, patterns)
    assert not [f for f in context if f.startswith("target/")]
    work = dockerfile.dry_run(stages[0], ROOT, context, tmp_path)
    assert (work / "target/release/herald").exists()
    # Files the binary's crates embed at compile time made it into the tree.
    for src in (work / "services").rglob("*.rs"):
        for included in re.findall(r'include_(?:str|bytes)!\("([^"]+)"\)', src.read_text()):
            assert (src.parent / included).exists(), f"{src}: {included}"
    # The placeholder sources of the dependency step are gone from the binary's crates.
    assert not (work / "services/herald/src/lib.rs").exists()
    assert (work / "services/herald/src/main.rs").read_text() != "fn main() {}\n"
