//! Clients generated from the demo's `/openapi.json` by the tools client teams use, run against
//! the live demo: TypeScript types from openapi-typescript with openapi-fetch, compiled by `tsc`
//! in strict mode and run by node (`tests/clients/demo.ts`); a package from openapi-python-client
//! driven by a Python script (`tests/clients/demo.py`). Each lists, creates with a body, gets with
//! path and query parameters, gets a typed error and reads a server stream as NDJSON.
//!
//! A generator's warning about the document fails the test: it is fixed in the document's
//! generator, never silenced. The tools are installed by `tests/support/client-tools.sh`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where the client tools are, installing them the first time.
fn tools() -> PathBuf {
    support::tools::install("client-tools.sh")
        .map(PathBuf::from)
        .unwrap_or_else(|error| panic!("the client tools: {error}"))
}

/// The programs of `tests/clients`.
fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// A fresh directory for one client, holding the live demo's document as `openapi.json`.
fn workspace(name: &str, base: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("protogate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a work directory");
    let document = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async {
            reqwest::get(format!("{base}/openapi.json"))
                .await
                .expect("served")
                .text()
                .await
                .expect("text")
        });
    std::fs::write(dir.join("openapi.json"), document).expect("written");
    dir
}

/// Runs `command`; what it printed (stdout, then stderr), or a panic naming `what` with it.
fn run(what: &str, command: &mut Command) -> (String, String) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what} does not start: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// Checks the line a client program printed: what it saw of the demo.
fn check_report(printed: &str, shelf: &str, title: &str) {
    let line = printed.lines().last().unwrap_or_default();
    let report: Value =
        serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {printed}"));
    let shelves: Vec<&str> = report["shelves"]
        .as_array()
        .expect("shelves")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(shelves.contains(&"shelves/fiction"), "{report}");
    assert_eq!(report["created"], format!("shelves/{shelf}"), "{report}");
    assert_eq!(report["found"], serde_json::json!([title]), "{report}");
    assert_eq!(report["error"], 5, "NOT_FOUND: {report}");
    assert_eq!(report["streamed"], serde_json::json!([title]), "{report}");
}

/// Lines of a generator's output that complain.
fn complaints(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|line| {
            let lower = line.to_lowercase();
            ["warn", "error", "unsupported", "skipping", "⚠"]
                .iter()
                .any(|word| lower.contains(word))
        })
        .collect()
}

#[test]
fn a_typescript_client_generated_from_the_document_works_against_the_demo() {
    let tools = tools();
    let gateway = support::start(&[]);
    let dir = workspace("ts-client", &gateway.base);
    for file in ["demo.ts", "tsconfig.json"] {
        std::fs::copy(programs().join(file), dir.join(file)).expect("copied");
    }
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).expect("written");
    std::os::unix::fs::symlink(tools.join("node_modules"), dir.join("node_modules"))
        .expect("linked");
    let bin = tools.join("node_modules/.bin");

    let (out, err) = run(
        "openapi-typescript",
        Command::new(bin.join("openapi-typescript"))
            .current_dir(&dir)
            .args(["openapi.json", "-o", "schema.d.ts"]),
    );
    let printed = format!("{out}{err}");
    assert!(complaints(&printed).is_empty(), "{printed}");

    let (out, err) = run(
        "tsc --strict",
        Command::new(bin.join("tsc"))
            .current_dir(&dir)
            .args(["-p", "."]),
    );
    assert_eq!(format!("{out}{err}"), "", "tsc is silent on a clean build");

    let (out, _) = run(
        "the TypeScript client",
        Command::new("node")
            .current_dir(&dir)
            .args(["demo.js", &gateway.base, "ts-client"]),
    );
    check_report(&out, "ts-client", "Strict Mode");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_python_client_generated_from_the_document_works_against_the_demo() {
    let tools = tools();
    let gateway = support::start(&[]);
    let dir = workspace("py-client", &gateway.base);
    let bin = tools.join("py/bin");
    // The generator formats what it writes with ruff, which it finds on PATH.
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let (out, err) = run(
        "openapi-python-client",
        Command::new(bin.join("openapi-python-client"))
            .current_dir(&dir)
            .env("PATH", &path)
            .args([
                "generate",
                "--path",
                "openapi.json",
                "--output-path",
                "client",
            ]),
    );
    let printed = format!("{out}{err}");
    assert!(complaints(&printed).is_empty(), "{printed}");

    let (out, _) = run(
        "the Python client",
        Command::new(bin.join("python"))
            .current_dir(&dir)
            .env("PYTHONPATH", dir.join("client"))
            .arg(programs().join("demo.py"))
            .args([&gateway.base, "py-client"]),
    );
    check_report(&out, "py-client", "Duck Typing");
    let _ = std::fs::remove_dir_all(&dir);
}
