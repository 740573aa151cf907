//! `codemode run` of `return 1 + 1` as a whole process, beside `deno run` and `node -e` of the
//! same one-liner: wall time (spawn to exit) and peak resident memory (the child's own
//! `ru_maxrss`), interleaved round by round, medians printed.
//!
//! codemode is measured without a type checker (as `deno run`, which does not type-check) and
//! with TypeScript 7 installed (the default `strict` check starts the compiler), beside
//! `deno run --check`. Deno comes from examples/compare's npm lock (installed here with
//! `npm ci` if missing), TypeScript 7 from tests/npm's. One more codemode run exports its spans
//! to a stand-in OTLP collector on loopback: what tracing costs a one-shot command; and the demo
//! workflow (`examples/spreadsheet.ts`, many tool calls) with and without exporting.
//!
//! `cargo build --release && cargo run --release --example oneshot -- [ROUNDS]` (default 15);
//! BENCHMARKS.md records it.

#![allow(clippy::print_stdout, reason = "an example prints its table")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/npm.rs"]
mod support;
use support::npm_ci;

/// Runs `command` to its end; wall time and the child's peak resident memory in KiB.
fn measure(command: &mut Command) -> (Duration, u64) {
    let started = Instant::now();
    let child =
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; the pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{command:?} failed");
    drop(child);
    (elapsed, usage.ru_maxrss as u64)
}

/// A stand-in OTLP/HTTP collector on a loopback port: reads each request and answers 200, so
/// the run that exports its spans pays for sending them and nothing else. Its base URL.
fn collector() -> String {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn median<T: Ord + Copy>(mut xs: Vec<T>) -> T {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // target/release/examples/oneshot → target/release/codemode
    let exe = std::env::current_exe().unwrap();
    let codemode = exe.parent().and_then(Path::parent).unwrap().join("codemode");
    assert!(codemode.is_file(), "{} is missing: run `cargo build --release` first", codemode.display());
    let deno = npm_ci(&root.join("examples/compare"), "node_modules/.bin/deno");
    let typescript = root.join("tests/npm");
    npm_ci(&typescript, "node_modules/.bin/tsc");
    let dir = std::env::temp_dir().join(format!("codemode-oneshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("one.ts");
    std::fs::write(&program, "return 1 + 1\n").unwrap();
    let script = dir.join("one.mjs");
    std::fs::write(&script, "console.log(1 + 1);\n").unwrap();
    let script_ts = dir.join("one.ts.mts");
    std::fs::write(&script_ts, "const x: number = 1 + 1;\nconsole.log(x);\n").unwrap();
    let otlp = collector();
    let demo = root.join("examples/spreadsheet.ts");
    // An empty cache: no checker unless pointed at one.
    let no_cache = dir.join("empty-cache");

    type Make<'a> = Box<dyn Fn() -> Command + 'a>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "codemode run (no checker installed)",
            Box::new(|| {
                let mut c = Command::new(&codemode);
                c.arg("run")
                    .arg(&program)
                    .env("XDG_CACHE_HOME", &no_cache)
                    .env_remove("CODEMODE_TYPESCRIPT_DIR");
                c
            }),
        ),
        (
            "codemode run --typecheck off",
            Box::new(|| {
                let mut c = Command::new(&codemode);
                c.args(["run", "--typecheck", "off"])
                    .arg(&program)
                    .env("CODEMODE_TYPESCRIPT_DIR", &typescript);
                c
            }),
        ),
        (
            "codemode run --typecheck off, spans exported over OTLP",
            Box::new(|| {
                let mut c = Command::new(&codemode);
                c.args(["run", "--typecheck", "off"])
                    .arg(&program)
                    .env("CODEMODE_TYPESCRIPT_DIR", &typescript)
                    .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp);
                c
            }),
        ),
        (
            "codemode run --typecheck off --demo examples/spreadsheet.ts",
            Box::new(|| {
                let mut c = Command::new(&codemode);
                c.args(["run", "--typecheck", "off", "--demo"]).arg(&demo);
                c
            }),
        ),
        (
            "the same, spans exported over OTLP",
            Box::new(|| {
                let mut c = Command::new(&codemode);
                c.args(["run", "--typecheck", "off", "--demo"])
                    .arg(&demo)
                    .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp);
                c
            }),
        ),
        (
            "codemode run (TypeScript 7 checks it)",
            Box::new(|| {
                let mut c = Command::new(&codemode);
                c.arg("run")
                    .arg(&program)
                    .env("CODEMODE_TYPESCRIPT_DIR", &typescript)
                    .env("XDG_CACHE_HOME", &dir);
                c
            }),
        ),
        (
            "deno run",
            Box::new(|| {
                let mut c = Command::new(&deno);
                c.args(["run", "--quiet"]).arg(&script).env("DENO_DIR", dir.join("deno"));
                c
            }),
        ),
        (
            "deno run --check",
            Box::new(|| {
                let mut c = Command::new(&deno);
                c.args(["run", "--quiet", "--check"]).arg(&script_ts).env("DENO_DIR", dir.join("deno"));
                c
            }),
        ),
        (
            "node -e",
            Box::new(|| {
                let mut c = Command::new("node");
                c.args(["-e", "console.log(1 + 1)"]);
                c
            }),
        ),
    ];
    // One untimed round fills the caches (Deno's type-check cache among them).
    for (_, make) in &cases {
        measure(&mut make());
    }
    let mut wall: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, make)) in cases.iter().enumerate() {
            let (t, m) = measure(&mut make());
            wall[i].push(t);
            rss[i].push(m);
        }
    }
    let deno_case = cases.iter().position(|(name, _)| *name == "deno run").unwrap();
    let deno_wall = median(wall[deno_case].clone()).as_secs_f64();
    println!("| command | wall time, median of {rounds} | ÷ deno run | peak resident memory, median |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _)) in cases.iter().enumerate() {
        let t = median(wall[i].clone()).as_secs_f64();
        println!(
            "| {name} | {:.1} ms | {:.2}× | {:.1} MiB |",
            t * 1000.0,
            t / deno_wall,
            median(rss[i].clone()) as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
