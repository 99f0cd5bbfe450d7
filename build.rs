//! Compiles the demo protos in `proto/`, and every proto under `$PROTOGATE_PROTO_DIR` when it is
//! set, into the stock gateway.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PROTOGATE_PROTO_DIR");
    println!("cargo:rerun-if-changed=proto");

    let mut includes = Vec::new();
    let mut protos = Vec::new();
    if let Some(dir) = std::env::var_os("PROTOGATE_PROTO_DIR").filter(|d| !d.is_empty()) {
        let dir = std::fs::canonicalize(&dir)
            .map_err(|e| format!("PROTOGATE_PROTO_DIR={}: {e}", Path::new(&dir).display()))?;
        println!("cargo:rerun-if-changed={}", dir.display());
        protos.extend(protogate_build::protos_under(&dir)?);
        includes.push(dir);
    }
    // The demo's own protos. The user's directory comes first, so its google/api files (if it
    // has them) win over protogate's built-in copies.
    for demo in protogate_build::protos_under("proto/protogate")? {
        let demo = Path::new("protogate").join(demo);
        if !protos.contains(&demo) {
            protos.push(demo);
        }
    }
    includes.push(PathBuf::from("proto"));

    if let Err(error) = protogate_build::configure().compile(&protos, &includes) {
        // Print the error as it is (file:line: message) rather than as a Debug dump.
        eprintln!("{error}");
        return Err("protogate-build failed; see the message above".into());
    }
    Ok(())
}
