//! openapi-spec-validator and schemathesis, from PyPI, installed by
//! `tests/support/python-tools.sh`. Shared by the workspace's test crates (`#[path]`-included
//! where it is not under `tests/support`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The install script, found from the crate being tested up to the workspace root.
fn script() -> Result<PathBuf, String> {
    let mut dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(here) = dir {
        let candidate = here.join("tests/support/python-tools.sh");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = here.parent();
    }
    Err("tests/support/python-tools.sh not found above the crate".into())
}

/// The `bin` directory of the tools' virtualenv, installing them the first time.
pub fn tools() -> Result<PathBuf, String> {
    let installed = Command::new("bash")
        .arg(script()?)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("the install script does not run: {e}"))?;
    if !installed.status.success() {
        return Err("the Python tools could not be installed".into());
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&installed.stdout).trim(),
    ))
}

/// Runs `openapi-spec-validator` on a document; its output when it refuses it.
pub fn validate_openapi(document: &str) -> Result<(), String> {
    let bin = tools()?;
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
