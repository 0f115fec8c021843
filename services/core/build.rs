//! Build steps of `herald-core`: generates the Protobuf client protocol's
//! types from `proto/client.proto` (prost, with the protoc that the
//! `protoc-bin-vendored` crate ships), and names the commit Herald is built
//! from in `HERALD_COMMIT` (for `herald_build_info`): the environment's
//! `HERALD_COMMIT` when set, else `git rev-parse --short HEAD`, else `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn protobuf() {
    println!("cargo:rerun-if-changed=proto/client.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()
        .expect("protoc-bin-vendored has no protoc for this platform");
    prost_build::Config::new()
        .protoc_executable(protoc)
        .bytes(["."])
        .compile_protos(&["proto/client.proto"], &["proto"])
        .expect("proto/client.proto compiles");
}

fn main() {
    protobuf();
    println!("cargo:rerun-if-env-changed=HERALD_COMMIT");
    // HEAD moves on checkout, the branch's ref on commit (worktrees keep HEAD apart).
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch =
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r]));
    for path in [head, branch].into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("HERALD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HERALD_COMMIT={commit}");
}
