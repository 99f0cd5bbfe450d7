//! Compiles the protos of the stock gateway: every proto under `$PROTOGATE_PROTO_DIR` when it is
//! set, and the demo's in `proto/protogate` when the demo is part of the build.
//!
//! The demo is built in when there is no `PROTOGATE_PROTO_DIR` (it is then all there is to
//! serve), or when `PROTOGATE_DEMO=1` asks for it beside the user's protos. A build with the
//! demo gets `--cfg protogate_demo`, which compiles the binary's `demo` module.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PROTOGATE_PROTO_DIR");
    println!("cargo:rerun-if-env-changed=PROTOGATE_DEMO");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo::rustc-check-cfg=cfg(protogate_demo)");

    let mut includes = Vec::new();
    let mut protos = Vec::new();
    let user_dir = std::env::var_os("PROTOGATE_PROTO_DIR").filter(|d| !d.is_empty());
    let demo = demo_wanted(user_dir.is_some())?;
    if let Some(dir) = user_dir {
        let dir = std::fs::canonicalize(&dir)
            .map_err(|e| format!("PROTOGATE_PROTO_DIR={}: {e}", Path::new(&dir).display()))?;
        println!("cargo:rerun-if-changed={}", dir.display());
        protos.extend(protogate_build::protos_under(&dir)?);
        includes.push(dir);
    }
    if demo {
        println!("cargo::rustc-cfg=protogate_demo");
        // The user's directory comes first among the includes, so its google/api files (if it
        // has them) win over protogate's built-in copies.
        for demo in protogate_build::protos_under("proto/protogate")? {
            let demo = Path::new("protogate").join(demo);
            if !protos.contains(&demo) {
                protos.push(demo);
            }
        }
    }
    includes.push(PathBuf::from("proto"));
    // For the build info the gateway reports (`protogate_build_info`).
    println!("cargo:rustc-env=PROTOGATE_PROTOS_COMPILED={}", protos.len());

    // RPCs without http rules get unbound routes, which the gateway serves only when its config
    // says so (`[gateway] unbound_methods`).
    if let Err(error) = protogate_build::configure()
        .unbound_methods(true)
        .compile(&protos, &includes)
    {
        // Print the error as it is (file:line: message) rather than as a Debug dump.
        eprintln!("{error}");
        return Err("protogate-build failed; see the message above".into());
    }
    Ok(())
}

/// Whether the demo is built in: `PROTOGATE_DEMO=1` or `0` when given, otherwise only when there
/// are no protos of the user's.
fn demo_wanted(user_protos: bool) -> Result<bool, String> {
    let value = std::env::var("PROTOGATE_DEMO").unwrap_or_default();
    match value.as_str() {
        "" => Ok(!user_protos),
        "1" => Ok(true),
        "0" if user_protos => Ok(false),
        "0" => Err(
            "PROTOGATE_DEMO=0 without PROTOGATE_PROTO_DIR leaves the gateway nothing to serve"
                .to_owned(),
        ),
        other => Err(format!(
            "PROTOGATE_DEMO={other}: expected 1 (build the demo in) or 0 (leave it out)"
        )),
    }
}
