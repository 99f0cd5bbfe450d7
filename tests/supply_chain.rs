//! The supply chain, checked by cargo-deny (installed from crates.io by
//! `tests/support/install-cargo-deny.sh`) against the policy in `deny.toml`: licences, banned
//! crates, duplicate versions and sources, for the workspace and for the benchmark harness (a
//! workspace of its own). A probe crate that breaks each rule shows that the policy bites.
//!
//! The advisory check needs the RustSec database, which this machine cannot fetch: SECURITY.md
//! gives the command for machines that can.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cargo_deny() -> PathBuf {
    support::tools::install("install-cargo-deny.sh")
        .map(PathBuf::from)
        .expect("cargo-deny installs")
}

/// `cargo deny check licenses bans sources` on `manifest`, with the project's `deny.toml`.
fn check(deny: &Path, manifest: &Path, extra: &[&str]) -> Output {
    Command::new(deny)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--config")
        .arg(root().join("deny.toml"))
        .args(["--workspace", "--color", "never", "check"])
        .args(extra)
        .args(["licenses", "bans", "sources"])
        .output()
        .expect("cargo-deny runs")
}

fn report(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_workspace_and_the_bench_meet_the_policy() {
    let deny = cargo_deny();
    let workspace = check(&deny, &root().join("Cargo.toml"), &[]);
    assert!(workspace.status.success(), "{}", report(&workspace));
    // The bench's graph is smaller: a duplicate skipped for the workspace may not occur in it.
    let bench = check(
        &deny,
        &root().join("bench/Cargo.toml"),
        &["-A", "unmatched-skip"],
    );
    assert!(bench.status.success(), "{}", report(&bench));
}

/// Writes a crate of path dependencies only (no registry needed) at `dir/name`.
fn probe_crate(dir: &Path, name: &str, version: &str, license: &str, dependencies: &str) {
    let crate_dir = dir.join(name);
    std::fs::create_dir_all(crate_dir.join("src")).expect("probe dir");
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2024\"\n\
             license = \"{license}\"\npublish = false\n\n[dependencies]\n{dependencies}"
        ),
    )
    .expect("probe manifest");
    std::fs::write(crate_dir.join("src/lib.rs"), "").expect("probe source");
}

#[test]
fn the_policy_refuses_a_copyleft_licence_a_banned_crate_and_a_duplicate() {
    let deny = cargo_deny();
    let dir = std::env::temp_dir().join(format!("protogate-deny-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = dir.as_path();
    // `openssl` here is a local stand-in: the ban is by name, and no registry is needed.
    probe_crate(base, "openssl", "0.10.0", "Apache-2.0", "");
    probe_crate(base, "twice-a", "1.0.0", "MIT", "");
    std::fs::create_dir_all(base.join("v2")).expect("dir");
    probe_crate(&base.join("v2"), "twice-a", "2.0.0", "MIT", "");
    probe_crate(
        base,
        "probe",
        "0.1.0",
        "GPL-3.0-only",
        "openssl = { path = \"../openssl\" }\n\
         old = { package = \"twice-a\", path = \"../twice-a\" }\n\
         new = { package = \"twice-a\", path = \"../v2/twice-a\" }\n",
    );
    std::fs::write(
        base.join("probe/Cargo.toml"),
        std::fs::read_to_string(base.join("probe/Cargo.toml")).expect("manifest")
            + "\n[workspace]\n",
    )
    .expect("workspace of its own");

    let refused = check(&deny, &base.join("probe/Cargo.toml"), &[]);
    let text = report(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("GPL-3.0-only") && text.contains("rejected"),
        "the licence: {text}"
    );
    assert!(
        text.contains("openssl") && text.contains("banned"),
        "the ban: {text}"
    );
    assert!(
        text.contains("duplicate entries for crate 'twice-a'"),
        "the duplicate: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
