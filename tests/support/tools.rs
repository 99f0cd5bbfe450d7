//! The tools the tests install for themselves with the scripts in `tests/support` (Chromium,
//! openapi-spec-validator, schemathesis and prometheus-client), the OpenAPI validation and the
//! metrics parsing they run.
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

/// One sample of a metrics text: its name, labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's name (`protogate_http_requests_total`, `…_bucket`, …).
    pub name: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses an OpenMetrics text with prometheus_client's own parser (which refuses a malformed
/// one); every sample.
pub fn parse_metrics(text: &str) -> Result<Vec<Sample>, String> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps(samples))
"#;
    let bin = python_tools()?;
    let mut child = Command::new(bin.join("python"))
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    std::io::Write::write_all(&mut stdin, text.as_bytes()).map_err(|e| e.to_string())?;
    drop(stdin);
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let parsed: Vec<(String, std::collections::BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    Ok(parsed
        .into_iter()
        .map(|(name, labels, value)| Sample {
            name,
            labels,
            value,
        })
        .collect())
}
