//! What the tests of the stock gateway share: the real binary, started on 127.0.0.1, and the
//! OpenAPI validator. Each test binary uses part of it.

#![allow(dead_code)]

pub mod tools;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running gateway, stopped when dropped.
pub struct Running {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `protogate serve` on a free port with `args`.
pub fn start(args: &[&str]) -> Running {
    start_binary(Path::new(env!("CARGO_BIN_EXE_protogate")), args)
}

/// Starts `binary serve` (a build of the stock gateway) on a free port with `args`.
pub fn start_binary(binary: &Path, args: &[&str]) -> Running {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout);
    let mut first = String::new();
    lines
        .read_line(&mut first)
        .expect("the gateway prints its address");
    // Keep reading so the gateway never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    let base = first.trim().rsplit(' ').next().expect("address").to_owned();
    Running { child, base }
}
