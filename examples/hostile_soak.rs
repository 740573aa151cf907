//! Hostile clients beside a well-behaved one: the daemon (Unix socket) and the MCP server
//! (streamable HTTP) run in this process with their default bounds, and each attack runs for a
//! while as a well-behaved client keeps executing a small program and timing it. Reported per
//! phase: the well-behaved client's p50 and p99, the most resident memory seen (sampled every
//! 50 ms) and what the server counted.
//!
//! * never-reading: 8 clients each send `return 'x'.repeat(100000)` as fast as they can and
//!   never read (they reconnect when dropped);
//! * schema-bombing: 2 clients register tools with a 200,000-value `enum` and a 5,000-link `$ref`
//!   chain over and over, and tools past the caps (refused);
//! * abandoned loops: 200 clients each start `while (true) {}` under a 60 s deadline and hang up;
//! * session-flooding: 4 threads open MCP HTTP sessions as fast as they can and never close them.
//!
//! `cargo run --release --example hostile_soak -- [SECONDS_PER_PHASE]` (default 10);
//! BENCHMARKS.md records its figures. Exits non-zero if the well-behaved client ever gets a
//! wrong answer or none.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its report")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use codemode::daemon::{Daemon, DaemonConfig};
use codemode::mcp::{McpConfig, McpServer};
use codemode::{Engine, Limits};
use common::{mcp_post, open_session, percentile, rss_kib, sse_data, INITIALIZE};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const WELL_BEHAVED: &str = "const r = await sheets.getRows({ sheetId: 'sales', limit: 50 }); return r.length";

/// A daemon client that runs the well-behaved program one at a time until `stop`, returning
/// each latency in µs; an error if an answer is wrong.
async fn daemon_client(path: PathBuf, stop: Arc<AtomicBool>) -> Result<Vec<u64>, String> {
    let stream = UnixStream::connect(&path).await.map_err(|e| e.to_string())?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut latencies = Vec::new();
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let req =
            json!({"jsonrpc": "2.0", "id": id, "method": "code/execute", "params": {"code": WELL_BEHAVED}});
        let started = Instant::now();
        w.write_all(format!("{req}\n").as_bytes()).await.map_err(|e| e.to_string())?;
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .map_err(|_| "no answer within 30 s".to_string())?
                .map_err(|e| e.to_string())?
                .ok_or("the daemon closed the well-behaved client")?;
            let m: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            if m["id"] == json!(id) {
                if m["result"]["value"] != json!(50) {
                    return Err(format!("wrong answer: {line}"));
                }
                break;
            }
        }
        latencies.push(started.elapsed().as_micros() as u64);
    }
    Ok(latencies)
}

/// The well-behaved MCP client: one execute_code at a time in `session` until `stop`.
fn mcp_client(port: u16, session: String, stop: Arc<AtomicBool>) -> Result<Vec<u64>, String> {
    let mut latencies = Vec::new();
    let mut id = 1;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "execute_code", "arguments": {"code": WELL_BEHAVED}}});
        let started = Instant::now();
        let (status, _, text) =
            mcp_post(port, Some(&session), &body.to_string()).map_err(|e| e.to_string())?;
        let m = sse_data(&text).unwrap_or(Value::Null);
        if status != 200 || m["result"]["structuredContent"]["value"] != json!(50) {
            return Err(format!("wrong MCP answer: {status} {text}"));
        }
        latencies.push(started.elapsed().as_micros() as u64);
    }
    Ok(latencies)
}

/// A client that sends requests for 100 KB results and never reads; reconnects when dropped.
async fn never_reading(path: PathBuf, stop: Arc<AtomicBool>) {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "code/execute", "params": {"code": "return 'x'.repeat(100000)"}});
    let line = format!("{req}\n");
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = UnixStream::connect(&path).await else { return };
        let (_unread, mut w) = stream.into_split();
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(200), w.write_all(line.as_bytes())).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break, // dropped by the daemon: connect again
                Err(_) => continue,  // held by backpressure
            }
        }
    }
}

/// Registers huge and over-the-cap schemas in a loop.
async fn schema_bomber(path: PathBuf, stop: Arc<AtomicBool>, refused: Arc<AtomicU64>) {
    let enum_values: Vec<Value> = (0..200_000).map(|i| json!(format!("v{i}"))).collect();
    let mut defs = serde_json::Map::new();
    for i in 0..5_000 {
        defs.insert(
            format!("d{i}"),
            json!({"type": "object", "properties": {"next": {"$ref": format!("#/$defs/d{}", i + 1)}}}),
        );
    }
    defs.insert("d5000".into(), json!({"type": "string"}));
    let mut over = serde_json::Map::new();
    for i in 0..10_001 {
        over.insert(format!("p{i}"), json!({"$ref": "#/$defs/s"}));
    }
    let bombs = [
        json!({"type": "object", "properties": {"x": {"enum": enum_values}}}),
        json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs}),
        json!({"type": "object", "properties": over, "$defs": {"s": {"type": "string"}}}),
    ];
    let lines: Vec<String> = bombs
        .iter()
        .enumerate()
        .map(|(i, schema)| {
            let req = json!({"jsonrpc": "2.0", "id": i, "method": "tools/register",
                             "params": {"namespace": "bomb", "tools": [{"name": format!("t{i}"), "inputSchema": schema}]}});
            format!("{req}\n")
        })
        .collect();
    let Ok(stream) = UnixStream::connect(&path).await else { return };
    let (r, mut w) = stream.into_split();
    let mut answers = BufReader::new(r).lines();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        if w.write_all(lines[i % lines.len()].as_bytes()).await.is_err() {
            return;
        }
        let Ok(Some(answer)) = answers.next_line().await else { return };
        if answer.contains("\"error\"") {
            refused.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
}

/// 200 clients start an endless loop each and hang up.
async fn abandon_loops(path: &Path) {
    for _ in 0..200 {
        let Ok(mut s) = UnixStream::connect(path).await else { return };
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": "code/execute",
                         "params": {"code": "while (true) {}", "limits": {"timeout_ms": 60000}}});
        let _ = s.write_all(format!("{req}\n").as_bytes()).await;
        drop(s);
    }
}

/// Opens MCP sessions as fast as it can, never closing one; counts the 503s.
fn session_flooder(port: u16, stop: Arc<AtomicBool>, refused: Arc<AtomicU64>, opened: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        match mcp_post(port, None, INITIALIZE) {
            Ok((503, _, _)) => refused.fetch_add(1, Ordering::Relaxed),
            Ok((200, _, _)) => opened.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

struct Phase {
    name: &'static str,
    latencies: Vec<u64>,
    peak_rss_kib: u64,
    note: String,
}

/// Runs the well-behaved client(s) for `seconds` while sampling memory.
async fn measure(
    name: &'static str,
    seconds: u64,
    socket: &Path,
    mcp: Option<(u16, String)>,
) -> Result<(Vec<u64>, u64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let client = match mcp {
        Some((port, session)) => {
            let stop = Arc::clone(&stop);
            tokio::task::spawn_blocking(move || mcp_client(port, session, stop))
        }
        None => {
            let (path, stop) = (socket.to_path_buf(), Arc::clone(&stop));
            tokio::spawn(daemon_client(path, stop))
        }
    };
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        peak = peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let latencies = client.await.map_err(|e| e.to_string())?.map_err(|e| format!("{name}: {e}"))?;
    Ok((latencies, peak.max(rss_kib())))
}

async fn daemon_stats(path: &Path) -> Value {
    let Ok(stream) = UnixStream::connect(path).await else { return Value::Null };
    let (r, mut w) = stream.into_split();
    let _ = w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stats\"}\n").await;
    let line = BufReader::new(r).lines().next_line().await.ok().flatten().unwrap_or_default();
    serde_json::from_str::<Value>(&line).map(|v| v["result"].clone()).unwrap_or(Value::Null)
}

async fn soak(seconds: u64) -> Result<Vec<Phase>, String> {
    let limits = Limits { timeout: Duration::from_secs(10), ..Limits::default() };
    let engine = Engine::builder()
        .registry(codemode::demo::registry())
        .limits(limits)
        .build()
        .map_err(|e| e.to_string())?;
    let daemon = Daemon::new(engine.clone(), DaemonConfig::default());
    let socket = std::env::temp_dir().join(format!("codemode-hostile-{}.sock", std::process::id()));
    {
        let (daemon, socket) = (daemon.clone(), socket.clone());
        tokio::spawn(async move { daemon.serve_socket(&socket, std::future::pending()).await });
    }
    while UnixStream::connect(&socket).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(
        McpServer::with_config(engine, McpConfig::default()).serve_http_on(listener, std::future::pending()),
    );

    let mut phases = Vec::new();
    let (latencies, peak) = measure("quiet", seconds, &socket, None).await?;
    phases.push(Phase { name: "none (daemon client)", latencies, peak_rss_kib: peak, note: String::new() });

    let attack = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> =
        (0..8).map(|_| tokio::spawn(never_reading(socket.clone(), Arc::clone(&attack)))).collect();
    let (latencies, peak) = measure("never-reading", seconds, &socket, None).await?;
    attack.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.await;
    }
    let stats = daemon_stats(&socket).await;
    phases.push(Phase {
        name: "8 never-reading clients",
        latencies,
        peak_rss_kib: peak,
        note: format!("{} connections closed for unread output", stats["closedUnread"]),
    });

    let attack = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let bombers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(schema_bomber(socket.clone(), Arc::clone(&attack), Arc::clone(&refused))))
        .collect();
    let (latencies, peak) = measure("schema-bombing", seconds, &socket, None).await?;
    attack.store(true, Ordering::Relaxed);
    for b in bombers {
        let _ = b.await;
    }
    phases.push(Phase {
        name: "2 schema-bombing clients",
        latencies,
        peak_rss_kib: peak,
        note: format!("{} over-the-cap registrations refused", refused.load(Ordering::Relaxed)),
    });

    abandon_loops(&socket).await;
    let (latencies, peak) = measure("abandoned loops", seconds, &socket, None).await?;
    let stats = daemon_stats(&socket).await;
    phases.push(Phase {
        name: "200 abandoned endless loops",
        note: format!(
            "first well-behaved answer after {:.0} ms; {} connections' programs cancelled",
            latencies.first().copied().unwrap_or(0) as f64 / 1000.0,
            stats["cancelledGone"]
        ),
        latencies,
        peak_rss_kib: peak,
    });

    // The well-behaved MCP client's session is open before the flood takes every free slot.
    let session =
        tokio::task::spawn_blocking(move || open_session(port)).await.map_err(|e| e.to_string())??;
    let (latencies, peak) = measure("quiet MCP", seconds, &socket, Some((port, session.clone()))).await?;
    phases.push(Phase { name: "none (MCP HTTP client)", latencies, peak_rss_kib: peak, note: String::new() });

    let attack = Arc::new(AtomicBool::new(false));
    let (refused, opened) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (attack, refused, opened) = (Arc::clone(&attack), Arc::clone(&refused), Arc::clone(&opened));
            tokio::task::spawn_blocking(move || session_flooder(port, attack, refused, opened))
        })
        .collect();
    let (latencies, peak) = measure("session flood", seconds, &socket, Some((port, session))).await?;
    attack.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    phases.push(Phase {
        name: "4 session-flooding threads",
        latencies,
        peak_rss_kib: peak,
        note: format!(
            "{} sessions opened, {} refused with 503",
            opened.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed)
        ),
    });
    Ok(phases)
}

fn main() -> std::process::ExitCode {
    let seconds = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    match runtime.block_on(soak(seconds)) {
        Ok(phases) => {
            println!(
                "| attack | well-behaved executions | p50 | p99 | peak resident memory | server's counts |"
            );
            println!("|---|---:|---:|---:|---:|---|");
            for mut p in phases {
                p.latencies.sort_unstable();
                println!(
                    "| {} | {} | {:.2} ms | {:.2} ms | {} MiB | {} |",
                    p.name,
                    p.latencies.len(),
                    percentile(&p.latencies, 0.5) as f64 / 1000.0,
                    percentile(&p.latencies, 0.99) as f64 / 1000.0,
                    p.peak_rss_kib / 1024,
                    p.note
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}\nFAIL");
            std::process::ExitCode::FAILURE
        }
    }
}
