//! How long regeneration takes: protogate-build loading, validating and generating for the demo
//! protos (`proto/protogate`) and for the googleapis corpus (`../shared/corpus/googleapis`, or
//! `$PROTOGATE_CORPUS`), each step timed apart, and a whole build-script run beside them.
//!
//! ```text
//! cargo bench -p protogate-build --bench regen            # 7 rounds, the median and the best
//! cargo bench -p protogate-build --bench regen -- 15      # 15 rounds
//! ```
//!
//! Steps:
//! - load: protox compiles the protos to a descriptor set (what `Builder::validate` starts with);
//! - load + validate: `Builder::validate`, the model with every rule checked (`protogate-build
//!   check`'s first half, and all `routes`, `openapi` and `surface` need beyond their output);
//! - generate: protogate's own files from the validated model (handlers, JSON mappers, route
//!   table, OpenAPI document), in memory;
//! - generator total: the three above, the generator's own part of a build;
//! - build script: `Builder::compile` into a directory, prost's messages and tonic's clients and
//!   servers (tonic-prost-build) included: what a `build.rs` spends before rustc starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A set of protos as a build compiles them.
struct Inputs {
    name: &'static str,
    protos: Vec<PathBuf>,
    includes: Vec<PathBuf>,
}

fn demo(workspace: &Path) -> Inputs {
    let proto = workspace.join("proto");
    let protos = protogate_build::protos_under(proto.join("protogate"))
        .expect("demo protos")
        .into_iter()
        .map(|p| Path::new("protogate").join(p))
        .collect();
    Inputs {
        name: "demo (proto/protogate)",
        protos,
        includes: vec![proto],
    }
}

fn corpus(workspace: &Path) -> Option<Inputs> {
    let dir = std::env::var_os("PROTOGATE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("../shared/corpus/googleapis"));
    if !dir.is_dir() {
        eprintln!(
            "no googleapis corpus at {} (set PROTOGATE_CORPUS): skipped",
            dir.display()
        );
        return None;
    }
    Some(Inputs {
        name: "googleapis corpus (9 packages, 89 files)",
        protos: protogate_build::protos_under(&dir).expect("corpus protos"),
        includes: vec![dir],
    })
}

/// The median and the best of `rounds` runs of `f`.
fn time(rounds: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0])
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn bench(inputs: &Inputs, rounds: usize) {
    let builder = || protogate_build::configure().emit_rerun_if_changed(false);
    let load = time(rounds, || {
        let mut compiler = protox::Compiler::new(&inputs.includes).expect("includes");
        compiler.include_imports(true).include_source_info(true);
        // The demo's google/api imports are found among its includes; the corpus has its own.
        compiler.open_files(&inputs.protos).expect("protos compile");
        std::hint::black_box(compiler.encode_file_descriptor_set());
    });
    let validate = time(rounds, || {
        std::hint::black_box(
            builder()
                .validate(&inputs.protos, &inputs.includes)
                .expect("validates"),
        );
    });
    let validated = builder()
        .validate(&inputs.protos, &inputs.includes)
        .expect("validates");
    let generate = time(rounds, || {
        std::hint::black_box(validated.generate().expect("generates"));
    });
    let total = time(rounds, || {
        let validated = builder()
            .validate(&inputs.protos, &inputs.includes)
            .expect("validates");
        std::hint::black_box(validated.generate().expect("generates"));
    });
    let out = tempfile::tempdir().expect("temp dir");
    let script = time(rounds, || {
        builder()
            .out_dir(out.path())
            .compile(&inputs.protos, &inputs.includes)
            .expect("compiles");
    });
    let routes = validated.routes().len();
    println!(
        "\n{}: {} protos, {routes} routes; {rounds} rounds, median (best) in ms\n",
        inputs.name,
        inputs.protos.len()
    );
    println!("| step | median | best |");
    println!("|---|---:|---:|");
    for (step, (median, best)) in [
        ("load (protox)", load),
        ("load + validate", validate),
        ("generate (protogate's files, in memory)", generate),
        ("generator total: load + validate + generate", total),
        ("build script: `compile`, prost and tonic included", script),
    ] {
        println!("| {step} | {} | {} |", ms(median), ms(best));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments is the rounds.
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(7);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    println!("# protogate-build regeneration times");
    bench(&demo(&workspace), rounds);
    if let Some(corpus) = corpus(&workspace) {
        bench(&corpus, rounds);
    }
}
