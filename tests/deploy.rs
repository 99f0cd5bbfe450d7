//! The deployment files: the Kubernetes manifests pass a real validator offline
//! (`kubernetes-validate`, which carries the schemas), the ConfigMap's config passes
//! `protogate config check` against this build, and the Dockerfile, the Deployment and the
//! config agree on ports, paths and the user.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_protogate");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn manifest(name: &str) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(deploy().join(name)).expect(name);
    serde_yaml_ng::from_str(&text).expect(name)
}

/// The manifests Kubernetes takes (the kustomization is kustomize's, not the API server's).
const MANIFESTS: [&str; 5] = [
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "pdb.yaml",
    "hpa.yaml",
];

#[test]
fn the_manifests_are_valid_kubernetes_objects() {
    let tools = support::tools::python_tools().expect("the Python tools install");
    for name in MANIFESTS {
        let output = Command::new(tools.join("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", "1.33.0"])
            .arg(deploy().join(name))
            .output()
            .expect("kubernetes-validate runs");
        assert!(
            output.status.success(),
            "{name}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Every manifest is in the kustomization, and nothing else is.
    let listed: Vec<String> = manifest("kustomization.yaml")["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file").to_owned())
        .collect();
    assert_eq!(listed, MANIFESTS);
}

#[test]
fn the_config_map_holds_a_config_this_build_accepts() {
    let text = manifest("configmap.yaml")["data"]["protogate.toml"]
        .as_str()
        .expect("the config")
        .to_owned();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-tests");
    std::fs::create_dir_all(&dir).expect("directory");
    let file = dir.join("protogate.toml");
    std::fs::write(&file, &text).expect("written");
    let output = Command::new(BINARY)
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("the gateway runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config: toml::Table = toml::from_str(&text).expect("TOML");
    assert_eq!(config["server"]["listen"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(config["admin"]["listen"].as_str(), Some("0.0.0.0:9901"));
}

#[test]
fn the_dockerfile_and_the_deployment_agree() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile");
    let deployment = manifest("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];

    // The config is mounted where the image's entrypoint reads it.
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("a mount");
    assert!(
        dockerfile.contains(&format!("\"--config\", \"{mount}/protogate.toml\"")),
        "the entrypoint reads the config from {mount}"
    );
    // The ports the image exposes are the container's, and the probes use the admin one.
    let ports: Vec<u64> = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| p["containerPort"].as_u64().expect("a port"))
        .collect();
    let exposed = ports
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        dockerfile.contains(&format!("EXPOSE {exposed}")),
        "EXPOSE {exposed}"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    // The image's user is the one the pod runs as.
    assert!(dockerfile.contains("USER nonroot:nonroot"));
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(65532));
}
