//! Every package version of googleapis that carries `google.api.http` rules generates: a team that
//! depends on any Google API must never see its build stop on a proto it did not write.
//!
//! Each package (a directory of `.proto` files with at least one http rule) is generated alone,
//! with the corpus as its include root, through the in-memory `generate`. Packages run on every
//! available thread; a refusal or a panic fails the test, naming the package and the error.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/googleapis-all"
);

/// Directories under `root` holding `.proto` files with an http rule, each with its protos
/// (relative to `root`), sorted.
fn annotated_packages(root: &Path) -> Vec<(String, Vec<PathBuf>)> {
    let mut packages = std::collections::BTreeMap::<String, (bool, Vec<PathBuf>)>::new();
    for proto in protogate_build::protos_under(root).expect("corpus readable") {
        let text = std::fs::read_to_string(root.join(&proto)).expect("proto readable");
        let dir = proto
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let entry = packages.entry(dir).or_default();
        entry.0 |= text.contains("(google.api.http)");
        entry.1.push(proto);
    }
    packages
        .into_iter()
        .filter(|(_, (annotated, _))| *annotated)
        .map(|(dir, (_, protos))| (dir, protos))
        .collect()
}

#[test]
fn every_annotated_package_generates() {
    let root = Path::new(CORPUS);
    if !root.is_dir() {
        panic!("the googleapis corpus is missing at {CORPUS}");
    }
    let packages = annotated_packages(root);
    assert!(
        packages.len() > 400,
        "expected the whole of googleapis, found {} annotated packages",
        packages.len()
    );
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((dir, protos)) = packages.get(index) else {
                        break;
                    };
                    let outcome = std::panic::catch_unwind(|| {
                        protogate_build::configure().generate(protos, &[root])
                    });
                    let failure = match outcome {
                        Ok(Ok(files)) if files.is_empty() => Some("generated nothing".to_owned()),
                        Ok(Ok(_)) => None,
                        Ok(Err(error)) => Some(error.to_string()),
                        Err(panic) => Some(format!(
                            "panicked: {}",
                            panic
                                .downcast_ref::<String>()
                                .map(String::as_str)
                                .or_else(|| panic.downcast_ref::<&str>().copied())
                                .unwrap_or("(no message)")
                        )),
                    };
                    if let Some(failure) = failure {
                        failures
                            .lock()
                            .expect("no poisoned lock")
                            .push(format!("{dir}: {failure}"));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("no poisoned lock");
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} packages do not generate:\n{}",
        failures.len(),
        packages.len(),
        failures.join("\n")
    );
}
