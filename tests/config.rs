//! The stock gateway's config file, through the real binary: the annotated example stays valid,
//! mistakes stop it with their file, line, column and key, `config show` prints what takes
//! effect, and `serve --config` serves with the file's settings, the environment's over them and
//! the flags' over both.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_protogate");

fn protogate(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the gateway runs")
}

/// Writes `text` to a file of this test's own.
fn file(name: &str, text: &str) -> PathBuf {
    support::test_file("config-tests", name, text)
}

/// `protogate serve` with `args` and `env`; killed when dropped.
struct Serving {
    _child: support::Process,
    base: String,
}

fn serve(args: &[&str], env: &[(&str, &str)]) -> Serving {
    let mut child = Command::new(BINARY)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("a banner");
    let base = first.trim().rsplit(' ').next().expect("address").to_owned();
    Serving {
        _child: support::Process(child),
        base,
    }
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/protogate.example.toml")
}

#[test]
fn the_annotated_example_is_valid() {
    let example = example();
    let output = protogate(&["config", "check", example.to_str().unwrap()], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).ends_with(": valid\n"));
}

#[test]
fn mistakes_stop_it_with_their_place_and_key() {
    let cases = [
        (
            "unknown.toml",
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[gateway]\nmax_body_size = 10\n",
            ":5:1: `gateway.max_body_size`: unknown field",
        ),
        (
            "type.toml",
            "[server]\nworkers = \"two\"\n",
            ":2:11: `server.workers`: invalid type",
        ),
        (
            "unbound.toml",
            "[gateway]\nunbound_methods = \"yes\"\n",
            ":2:19: `gateway.unbound_methods`: invalid type",
        ),
        (
            "service.toml",
            "[defaults]\nupstream = \"main\"\n[upstreams.main]\nendpoints = [\"http://127.0.0.1:1\"]\n\n[services.\"acme.NoSuch\"]\nupstream = \"main\"\n",
            "`services.acme.NoSuch`: no service `acme.NoSuch` in this build",
        ),
        (
            "address.yaml",
            "defaults:\n  upstream: main\nupstreams:\n  main:\n    endpoints: [\"tcp://127.0.0.1:1\"]\n",
            "address.yaml:5:5: `upstreams.main.endpoints`",
        ),
        (
            "orphan.json",
            "{\n  \"upstreams\": {\n    \"spare\": {\"endpoints\": [\"http://127.0.0.1:1\"]}\n  }\n}\n",
            "orphan.json:3:5: `upstreams.spare`: no service refers to upstream `spare`",
        ),
    ];
    for (name, text, expected) in cases {
        let path = file(name, text);
        for args in [
            vec!["config", "check", path.to_str().unwrap()],
            vec!["serve", "--config", path.to_str().unwrap()],
        ] {
            let output = protogate(&args, &[]);
            assert!(!output.status.success(), "{name}: {args:?} accepted it");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(expected), "{name}: {stderr}");
        }
    }
}

#[test]
fn config_show_prints_the_merged_config() {
    let path = file(
        "show.toml",
        "[defaults]\nupstream = \"main\"\n[defaults.upstream_settings]\ntimeout = \"5s\"\nmax_in_flight = 10\n[upstreams.main]\nendpoints = [\"http://127.0.0.1:1\"]\nmax_in_flight = 20\n",
    );
    let output = protogate(
        &[
            "config",
            "show",
            "--config",
            path.to_str().unwrap(),
            "--workers",
            "3",
        ],
        &[("PROTOGATE_SERVER__HEADER_READ_TIMEOUT", "7s")],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: toml::Table = toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    let main = &shown["upstreams"]["main"];
    assert_eq!(main["timeout"].as_str(), Some("5s"), "from the defaults");
    assert_eq!(main["max_in_flight"].as_integer(), Some(20), "its own wins");
    assert_eq!(shown["server"]["workers"].as_integer(), Some(3), "the flag");
    assert_eq!(
        shown["server"]["header_read_timeout"].as_str(),
        Some("7s"),
        "the environment"
    );
}

#[tokio::test]
async fn serve_takes_the_files_settings_the_environments_over_them_and_the_flags_over_both() {
    // No upstream: the demo runs in-process, with the file's JSON options.
    let path = file(
        "serve.toml",
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[gateway]\nemit_defaults = true\nproto_names = false\n",
    );
    // The flag wins over the file's unusable address.
    let gateway = serve(
        &[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[("PROTOGATE_GATEWAY__PROTO_NAMES", "true")],
    );
    let url = format!("{}/demo/v1/shelves/fiction/books", gateway.base);
    let body: serde_json::Value = reqwest::get(url)
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    // proto_names from the environment: `next_page_token`; emit_defaults from the file: present
    // even when empty.
    assert!(body.get("next_page_token").is_some(), "{body}");
    assert!(body.get("nextPageToken").is_none(), "{body}");
}

#[tokio::test]
async fn docs_and_demo_are_switched_by_the_config() {
    let start = |name: &str, text: &str| {
        let path = file(name, text);
        serve(
            &[
                "--listen",
                "127.0.0.1:0",
                "--config",
                path.to_str().unwrap(),
            ],
            &[],
        )
    };
    let status =
        |url: String| async move { reqwest::get(url).await.expect("answered").status().as_u16() };

    let gateway = start("nodocs.toml", "[server]\ndocs = false\n");
    let base = &gateway.base;
    assert_eq!(status(format!("{base}/docs")).await, 404);
    assert_eq!(status(format!("{base}/openapi.json")).await, 404);
    assert_eq!(status(format!("{base}/demo/")).await, 200, "the demo is on");

    // A file that names upstreams serves no demo page, and its docs by default.
    let gateway = start(
        "production.toml",
        "[defaults]\nupstream = \"main\"\n[upstreams.main]\nendpoints = [\"http://127.0.0.1:1\"]\n",
    );
    let base = &gateway.base;
    assert_eq!(status(format!("{base}/demo/")).await, 404);
    assert_eq!(status(format!("{base}/openapi.json")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_deadline_applies_where_nothing_else_sets_one() {
    let backend = support::library::serve().await;
    let path = file("deadline.toml", "[gateway]\ntimeout = \"300ms\"\n");
    let gateway = serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
            "--upstream",
            &format!("protogate.demo.v1.LibraryService=http://{backend}"),
        ],
        &[],
    );
    let status = |millis: u64| {
        let url = format!("{}/demo/v1/shelves/{millis}", gateway.base);
        async move { reqwest::get(url).await.expect("answered").status().as_u16() }
    };
    assert_eq!(status(10).await, 200);
    assert_eq!(status(2000).await, 504);
}
