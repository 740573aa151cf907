//! A bounded soak of the daemon over its Unix socket: many clients at once, each registering a
//! tool and running a mix of normal, failing and hostile programs, several in flight per client.
//! Every response is checked against the program that asked for it (lost, duplicated or
//! mismatched responses fail the run), and resident memory is sampled after warm-up, halfway and
//! at the end.
//!
//! `cargo run --release --example soak -- [EXECUTIONS] [CLIENTS]` (defaults 20,000 and 16);
//! BENCHMARKS.md records its last figures. Exits non-zero when the run fails.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its report")]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use codemode::daemon::{Daemon, DaemonConfig};
use codemode::{Engine, Limits};
use common::{percentile, rss_kib};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The programs, each with the outcome it must have: `Ok(value)` or `Err(error kind)`.
fn programs() -> Vec<(&'static str, Result<Value, &'static str>)> {
    vec![
        ("return 1 + 1", Ok(json!(2))),
        ("const r = await sheets.getRows({ sheetId: 'sales', limit: 50 }); return r.length", Ok(json!(50))),
        ("return await mine.double({ n: 21 })", Ok(json!(42))),
        (
            "const xs = await Promise.all([1, 2, 3].map((n) => mine.double({ n }))); return xs",
            Ok(json!([2, 4, 6])),
        ),
        ("console.log('hello'); return [1, 2, 3].map((x) => x * 2)", Ok(json!([2, 4, 6]))),
        ("throw new Error('planned failure')", Err("exception")),
        ("await sheets.getRows({ sheetId: 'nope' })", Err("exception")),
        ("return (", Err("syntax")),
        ("while (true) {}", Err("timeout")),
        ("const a: any[] = []; for (;;) a.push(new Array(1e5).fill(1));", Err("memory_limit")),
        ("function f(): number { return f() + 1 } return f()", Err("exception")),
        ("await new Promise(() => {})", Err("deadlock")),
        ("const line = 'x'.repeat(1 << 20); for (;;) console.log(line)", Err("output_limit")),
    ]
}

#[derive(Default)]
struct Report {
    latencies_us: Vec<u64>,
    kinds: BTreeMap<String, usize>,
    mismatches: Vec<String>,
}

async fn client(
    path: std::path::PathBuf,
    id: usize,
    todo: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    report: Arc<Mutex<Report>>,
) {
    let programs = programs();
    let stream = UnixStream::connect(&path).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let register = json!({"jsonrpc": "2.0", "id": "reg", "method": "tools/register", "params": {
        "namespace": "mine",
        "tools": [{"name": "double", "inputSchema": {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}}]
    }});
    write.write_all(format!("{register}\n").as_bytes()).await.unwrap();
    let mut in_flight: HashMap<u64, (usize, Instant)> = HashMap::new();
    let mut next_id = 0u64;
    let mut registered = false;
    loop {
        // Keep four executions in flight while there is work.
        while registered && in_flight.len() < 4 {
            if todo.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
                break;
            }
            next_id += 1;
            let which = (next_id as usize * 7 + id) % programs.len();
            // The deadline counts from arrival, queueing included: well-behaved programs get
            // room for a busy machine, runaway ones a short leash.
            let timeout_ms = if programs[which].1 == Err("timeout") { 150 } else { 10_000 };
            let limits = json!({ "timeout_ms": timeout_ms, "memory_mb": 16 });
            let req = json!({"jsonrpc": "2.0", "id": next_id, "method": "code/execute",
                             "params": { "code": programs[which].0, "limits": limits }});
            write.write_all(format!("{req}\n").as_bytes()).await.unwrap();
            in_flight.insert(next_id, (which, Instant::now()));
        }
        if registered && in_flight.is_empty() {
            return;
        }
        let line = lines.next_line().await.expect("read").expect("the daemon closed the connection");
        let msg: Value = serde_json::from_str(&line).expect("JSON from the daemon");
        match msg.get("method").and_then(Value::as_str) {
            Some("tools/call") => {
                let n = msg["params"]["arguments"]["n"].as_f64().unwrap_or(0.0);
                let reply = json!({"jsonrpc": "2.0", "id": msg["id"], "result": n * 2.0});
                write.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
            }
            Some(_) => {} // code/log notifications
            None if msg["id"] == "reg" => registered = true,
            None => {
                let rid = msg["id"].as_u64().unwrap_or(0);
                let Some((which, started)) = in_flight.remove(&rid) else {
                    report
                        .lock()
                        .unwrap()
                        .mismatches
                        .push(format!("client {id}: unexpected response {line}"));
                    continue;
                };
                let elapsed = started.elapsed().as_micros() as u64;
                let result = &msg["result"];
                let kind = result["error"]["kind"].as_str().unwrap_or("ok").to_string();
                let wrong = match &programs[which].1 {
                    Ok(v) => result["value"] != *v || kind != "ok",
                    Err(k) => kind != *k,
                };
                let mut r = report.lock().unwrap();
                if wrong {
                    let mut got = result.to_string();
                    got.truncate(300);
                    r.mismatches.push(format!("client {id}: {:?} gave {got}", programs[which].0));
                }
                r.latencies_us.push(elapsed);
                *r.kinds.entry(kind).or_default() += 1;
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

async fn soak(executions: usize, clients: usize) -> Result<String, String> {
    let engine = Engine::builder()
        .registry(codemode::demo::registry())
        .limits(Limits { timeout: Duration::from_secs(10), ..Limits::default() })
        .build()
        .map_err(|e| e.to_string())?;
    let daemon = Daemon::new(engine, DaemonConfig::default());
    let path = std::env::temp_dir().join(format!("codemode-soak-{}.sock", std::process::id()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let daemon = daemon.clone();
        let path = path.clone();
        tokio::spawn(async move { daemon.serve_socket(&path, async { drop(stopped.await) }).await })
    };
    while UnixStream::connect(&path).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = |n: usize| {
        let path = path.clone();
        async move {
            let todo = Arc::new(AtomicUsize::new(n));
            let done = Arc::new(AtomicUsize::new(0));
            let report = Arc::new(Mutex::new(Report::default()));
            let tasks: Vec<_> = (0..clients)
                .map(|i| tokio::spawn(client(path.clone(), i, todo.clone(), done.clone(), report.clone())))
                .collect();
            (tasks, done, report)
        }
    };
    // Warm-up: a tenth of the run, not counted.
    let (tasks, _, _) = run(executions / 10).await;
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let rss_start = rss_kib();
    let started = Instant::now();
    let (tasks, done, report) = run(executions).await;
    let mut rss_middle = 0;
    while done.load(Ordering::SeqCst) < executions && !tasks.iter().all(|t| t.is_finished()) {
        if rss_middle == 0 && done.load(Ordering::SeqCst) >= executions / 2 {
            rss_middle = rss_kib();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib();
    let _ = stop.send(());
    let _ = server.await;

    let mut r = std::mem::take(&mut *report.lock().unwrap());
    r.latencies_us.sort_unstable();
    let growth = 100.0 * (rss_end as f64 - rss_start as f64) / rss_start.max(1) as f64;
    let text = format!(
        "executions: {} by {clients} clients in {:.1} s → {:.0} / s\n\
         latency: p50 {:.2} ms, p99 {:.2} ms\n\
         outcomes: {:?}\n\
         resident memory: {} MiB after warm-up, {} MiB halfway, {} MiB at the end ({growth:+.1} %)\n\
         lost or mismatched responses: {}",
        r.latencies_us.len(),
        elapsed.as_secs_f64(),
        r.latencies_us.len() as f64 / elapsed.as_secs_f64(),
        percentile(&r.latencies_us, 0.5) as f64 / 1000.0,
        percentile(&r.latencies_us, 0.99) as f64 / 1000.0,
        r.kinds,
        rss_start / 1024,
        rss_middle / 1024,
        rss_end / 1024,
        r.mismatches.len() + executions.saturating_sub(r.latencies_us.len()),
    );
    if !r.mismatches.is_empty() || r.latencies_us.len() != executions {
        return Err(format!("{text}\nfirst problems: {:?}", &r.mismatches[..r.mismatches.len().min(5)]));
    }
    if growth >= 10.0 {
        return Err(format!("{text}\nmemory grew by 10 % or more after warm-up"));
    }
    Ok(text)
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let executions = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let clients = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    match runtime.block_on(soak(executions, clients)) {
        Ok(text) => {
            println!("{text}\nPASS");
            std::process::ExitCode::SUCCESS
        }
        Err(text) => {
            eprintln!("{text}\nFAIL");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A short soak in the test run: no lost or mismatched response (memory growth is judged by the
/// full run only; a short one is mostly warm-up).
#[test]
fn a_short_soak_loses_nothing() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    match runtime.block_on(soak(600, 8)) {
        Ok(_) => {}
        Err(text) if text.ends_with("memory grew by 10 % or more after warm-up") => {}
        Err(text) => panic!("{text}"),
    }
}
