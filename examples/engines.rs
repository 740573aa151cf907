//! Per-execution latency of the three engines, interleaved so they share the host's noise:
//! QuickJS in process, QuickJS in sealed worker processes, and V8 (the pinned Node.js, installed
//! into `target/tmp` as `codemode setup v8` installs it). For each: `return 1 + 1` back to back,
//! `return 1 + 1` paced (10 ms apart: the pool, or the worker, has refilled, as between an
//! agent's steps), and one tool round trip (a program of 1,000 sequential calls, divided).
//! It prints p10 / p50 / p90 of each execution (criterion's figures are means of samples, which
//! a tail pulls up; the targets of issue #15 are medians).
//!
//! Run: `cargo run --release --features __internals --example engines -- [ROUNDS]` (default 10).

#![allow(clippy::print_stdout, reason = "an example prints its table")]

use std::time::{Duration, Instant};

#[path = "support/npm.rs"]
mod support;

use codemode::{Engine, EngineKind, ExecuteOptions, Isolation, Tool, ToolError};
use serde_json::{json, Value};

fn builder() -> codemode::EngineBuilder {
    let mut registry = codemode::Registry::new();
    registry
        .register(
            "bench",
            Tool::new("noop", "Returns its input.", json!({"type": "object"}), |v: Value| async move {
                Ok::<_, ToolError>(v)
            }),
        )
        .expect("a valid tool");
    Engine::builder().registry(registry)
}

const SAMPLES: usize = 50;

async fn once(engine: &Engine, code: &str) -> Duration {
    let started = Instant::now();
    let o = engine.execute(code, ExecuteOptions::default()).await;
    let took = started.elapsed();
    assert!(o.is_ok(), "{:?}", o.error);
    took
}

fn main() {
    codemode::sealed::serve_if_worker();
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let engines = [
        ("quickjs", builder().build().expect("engine")),
        ("sealed", builder().isolation(Isolation::Process).build().expect("sealed engine")),
        ("v8", builder().engine(EngineKind::V8).node_program(support::v8_node()).build().expect("V8 engine")),
    ];
    // [engine][workload] -> per-execution times
    let mut times = vec![vec![Vec::new(); 3]; engines.len()];
    rt.block_on(async {
        for (_, engine) in &engines {
            for _ in 0..20 {
                once(engine, "return 1 + 1").await;
            }
        }
        for _ in 0..rounds {
            for (e, (_, engine)) in engines.iter().enumerate() {
                for _ in 0..SAMPLES {
                    times[e][0].push(once(engine, "return 1 + 1").await);
                }
                for _ in 0..SAMPLES / 5 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    times[e][1].push(once(engine, "return 1 + 1").await);
                }
                let calls = "for (let i = 0; i < 1000; i++) await bench.noop({}); return 1";
                times[e][2].push(once(engine, calls).await / 1000);
            }
        }
    });
    println!(
        "| engine | `return 1 + 1` back to back | `return 1 + 1` paced (10 ms apart) | tool round trip |"
    );
    println!("|---|---|---|---|");
    for (e, (name, _)) in engines.iter().enumerate() {
        let cells: Vec<String> = times[e].iter_mut().map(|t| percentiles(t)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
}

/// p10 / **p50** / p90.
fn percentiles(times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    format!("{} / **{}** / {}", show(at(10)), show(at(50)), show(at(90)))
}

fn show(d: Duration) -> String {
    if d >= Duration::from_millis(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}
