//! Every fuzz target, the way CI can afford: over its committed seed corpus
//! (`fuzz/corpus/<target>`), then over inputs mutated from those seeds by a generator with a
//! fixed seed, bounded in number and in time (a few seconds per target). Any panic is a broken
//! invariant, and so is one input that takes more than a couple of seconds: nothing may loop
//! forever. libFuzzer runs the same functions for longer (`fuzz/run`, FUZZING.md).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use protogate_fuzz::{TARGETS, Target};

/// Mutated inputs per target: the same ones on any machine fast enough to run them within the
/// time bound.
const MUTATIONS: usize = 10_000;
/// Time per target for mutated inputs, at most.
const BUDGET: Duration = Duration::from_secs(3);
/// The longest one input may take (in a debug build).
const SLOWEST: Duration = Duration::from_secs(2);

/// Bytes the mutator inserts: pieces of the syntaxes the targets read.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"/",
    b"*",
    b"**",
    b"=",
    b"%",
    b"%2F",
    b"%zz",
    b"&",
    b"[k]",
    b".",
    b"\\u0000",
    b"\\",
    b"1e999",
    b"-0",
    b"null",
    b"true",
    b"\n",
    b"\r\n",
    b"{\"a\":",
    b"\"@type\":\"type.googleapis.com/",
    b"NaN",
    b"18446744073709551616",
];

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// One input mutated from the seeds: a few byte flips, insertions of bytes or tokens,
/// deletions, duplications, and splices with another seed.
fn mutate(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut input = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let at = at.min(input.len() - 1);
                input[at] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, (rng.next() & 0xff) as u8),
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.below(8)).min(input.len());
                input.drain(at..end);
            }
            4 => {
                let end = (at + rng.below(16)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ if !input.is_empty() => {
                let at = at.min(input.len() - 1);
                input[at] = (rng.next() & 0xff) as u8;
            }
            _ => input.push(b'{'),
        }
    }
    input
}

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("the seed corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths
        .iter()
        .map(|path| std::fs::read(path).expect("a seed"))
        .collect();
    assert!(!seeds.is_empty(), "{} holds no seed", dir.display());
    seeds
}

/// Runs `target` on `input`, failing when it takes too long.
fn timed(name: &str, target: Target, input: &[u8]) {
    let start = Instant::now();
    target(input);
    let took = start.elapsed();
    assert!(
        took < SLOWEST,
        "{name} took {took:?} on the input {:?}",
        String::from_utf8_lossy(input)
    );
}

fn run(name: &str) {
    let target = TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .map(|(_, target)| *target)
        .unwrap_or_else(|| panic!("no target {name}"));
    let seeds = seeds(name);
    for seed in &seeds {
        timed(name, target, seed);
    }
    let mut rng = Rng(name.bytes().fold(0x5EED, |h: u64, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    }));
    let start = Instant::now();
    for _ in 0..MUTATIONS {
        if start.elapsed() > BUDGET {
            break;
        }
        let input = mutate(&seeds, &mut rng);
        timed(name, target, &input);
    }
}

#[test]
fn every_target_has_a_test_and_a_libfuzzer_binary() {
    let tests = include_str!("targets.rs");
    let manifest = include_str!("../libfuzzer/Cargo.toml");
    for (name, _) in TARGETS {
        assert!(
            tests.contains(&format!("fn {name}() {{")),
            "no test runs {name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/libfuzzer has no binary {name}"
        );
    }
}

#[test]
fn the_mutator_is_deterministic() {
    let seeds = vec![b"{\"a\":1}".to_vec(), b"/v1/{name}".to_vec()];
    let first: Vec<Vec<u8>> = {
        let mut rng = Rng(7);
        (0..50).map(|_| mutate(&seeds, &mut rng)).collect()
    };
    let mut rng = Rng(7);
    let second: Vec<Vec<u8>> = (0..50).map(|_| mutate(&seeds, &mut rng)).collect();
    assert_eq!(first, second);
    assert!(first.iter().any(|input| !seeds.contains(input)));
}

#[test]
fn template() {
    run("template");
}

#[test]
fn router() {
    run("router");
}

#[test]
fn query() {
    run("query");
}

#[test]
fn json() {
    run("json");
}

#[test]
fn json_value() {
    run("json_value");
}

#[test]
fn json_mutate() {
    run("json_mutate");
}

#[test]
fn split() {
    run("split");
}

#[test]
fn websocket() {
    run("websocket");
}

#[test]
fn config() {
    run("config");
}

#[test]
fn jwt() {
    run("jwt");
}

#[test]
fn jwks() {
    run("jwks");
}
