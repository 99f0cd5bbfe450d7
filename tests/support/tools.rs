//! The tools the tests install for themselves with the scripts in `tests/support` (Chromium,
//! openapi-spec-validator and schemathesis), and the OpenAPI validation they run.
//! Shared by the workspace's test crates (`#[path]`-included where it is not under
//! `tests/support`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs the install script `tests/support/{name}` (found from the crate being tested up to the
/// workspace root) and returns what it prints: the path of what it installed.
pub fn install(name: &str) -> Result<String, String> {
    let mut dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    let script = loop {
        let Some(here) = dir else {
            return Err(format!("tests/support/{name} not found above the crate"));
        };
        let candidate = here.join("tests/support").join(name);
        if candidate.is_file() {
            break candidate;
        }
        dir = here.parent();
    };
    let installed = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{} does not run: {e}", script.display()))?;
    if !installed.status.success() {
        return Err(format!("{} failed", script.display()));
    }
    Ok(String::from_utf8_lossy(&installed.stdout).trim().to_owned())
}

/// The `bin` directory of the Python tools' virtualenv, installing them the first time.
pub fn python_tools() -> Result<PathBuf, String> {
    install("python-tools.sh").map(PathBuf::from)
}

/// Runs `openapi-spec-validator` on a document; its output when it refuses it.
pub fn validate_openapi(document: &str) -> Result<(), String> {
    let bin = python_tools()?;
    static CHECKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CHECKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file =
        std::env::temp_dir().join(format!("protogate-openapi-{}-{n}.json", std::process::id()));
    std::fs::write(&file, document).map_err(|e| e.to_string())?;
    let checked = Command::new(bin.join("openapi-spec-validator"))
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&file);
    if checked.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ))
    }
}
