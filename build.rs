//! Compiles the demo protos in `proto/`, and every proto under `$PROTOGATE_PROTO_DIR` when it is
//! set, into the stock gateway.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PROTOGATE_PROTO_DIR");
    println!("cargo:rerun-if-changed=proto");

    let own = PathBuf::from("proto");
    let mut includes = Vec::new();
    let mut protos = Vec::new();
    if let Some(dir) = std::env::var_os("PROTOGATE_PROTO_DIR").filter(|d| !d.is_empty()) {
        let dir = std::fs::canonicalize(&dir)
            .map_err(|e| format!("PROTOGATE_PROTO_DIR={}: {e}", Path::new(&dir).display()))?;
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &dir, &mut protos)?;
        includes.push(dir);
    }
    // The demo's own protos; protogate's google/api and google/rpc copies are built in.
    collect(&own, &own.join("protogate"), &mut protos)?;
    includes.push(own);

    if let Err(error) = protogate_build::configure().compile(&protos, &includes) {
        // Print the error as it is (file:line: message) rather than as a Debug dump.
        eprintln!("{error}");
        return Err("protogate-build failed; see the message above".into());
    }
    Ok(())
}

/// Every `.proto` under `dir`, sorted, as paths relative to the include root `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_owned();
            if !out.contains(&relative) {
                out.push(relative);
            }
        }
    }
    Ok(())
}
