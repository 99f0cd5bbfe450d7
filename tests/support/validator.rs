//! openapi-spec-validator, from PyPI, installed by `tests/support/python-tools.sh`. Shared by the
//! workspace's test crates (`#[path]`-included where it is not under `tests/support`).

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

/// Runs `openapi-spec-validator` (installed by `tests/support/python-tools.sh`) on a document;
/// its output when it refuses it.
pub fn validate_openapi(document: &str) -> Result<(), String> {
    let tools = Command::new("bash")
        .arg(script()?)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("the install script does not run: {e}"))?;
    if !tools.status.success() {
        return Err("the Python tools could not be installed".into());
    }
    let bin = String::from_utf8_lossy(&tools.stdout).trim().to_owned();
    let file = std::env::temp_dir().join(format!(
        "protogate-openapi-{}-{}.json",
        std::process::id(),
        document.len()
    ));
    std::fs::write(&file, document).map_err(|e| e.to_string())?;
    let checked = Command::new(format!("{bin}/openapi-spec-validator"))
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
