//! What the faces cost beside the engine: the demo workflow (`examples/spreadsheet.ts`, 10,000
//! rows) run through the library's `Engine::execute`, the daemon's `code/execute` (Unix
//! socket), MCP over stdio (`execute_code`, in-memory pipe through the same transport code)
//! and MCP over streamable HTTP, interleaved round by round so each face sees the same machine.
//! Prints the p50 and p99 of each and its ratio to the library's p50.
//!
//! `cargo run --release --example faces -- [ROUNDS]` (default 200); BENCHMARKS.md records it.

#![allow(clippy::print_stdout, reason = "an example prints its table")]

use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use codemode::daemon::{Daemon, DaemonConfig};
use codemode::mcp::{McpConfig, McpServer};
use codemode::{Engine, ExecuteOptions, Limits};
use common::{mcp_post, open_session, percentile, sse_data, INITIALIZE, INITIALIZED};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

const PROGRAM: &str = include_str!("spreadsheet.ts");

fn check(value: &Value) {
    assert_eq!(value["active"], json!(3334), "{value}");
}

struct LineClient<R, W> {
    lines: Lines<BufReader<R>>,
    writer: W,
}

impl<R: tokio::io::AsyncRead + Unpin, W: tokio::io::AsyncWrite + Unpin> LineClient<R, W> {
    async fn call(&mut self, request: Value) -> Value {
        let id = request["id"].clone();
        self.writer.write_all(format!("{request}\n").as_bytes()).await.unwrap();
        loop {
            let line = self.lines.next_line().await.unwrap().expect("the server answers");
            let m: Value = serde_json::from_str(&line).unwrap();
            if m["id"] == id && m.get("method").is_none() {
                return m;
            }
        }
    }
}

fn execute_code(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "execute_code", "arguments": {"code": PROGRAM}}})
}

async fn measure(rounds: usize) -> Vec<(&'static str, Vec<Duration>)> {
    let limits = Limits { timeout: Duration::from_secs(30), ..Limits::default() };
    let engine = Engine::builder().registry(codemode::demo::registry()).limits(limits).build().unwrap();

    let daemon = Daemon::new(engine.clone(), DaemonConfig::default());
    let socket = std::env::temp_dir().join(format!("codemode-faces-{}.sock", std::process::id()));
    {
        let (daemon, socket) = (daemon.clone(), socket.clone());
        tokio::spawn(async move { daemon.serve_socket(&socket, std::future::pending()).await });
    }
    let stream = loop {
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let (r, w) = stream.into_split();
    let mut daemon_client = LineClient { lines: BufReader::new(r).lines(), writer: w };

    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(theirs);
    tokio::spawn(McpServer::with_config(engine.clone(), McpConfig::default()).serve_lines(r, w));
    let (r, mut w) = tokio::io::split(ours);
    w.write_all(format!("{INITIALIZE}\n{INITIALIZED}\n").as_bytes()).await.unwrap();
    let mut stdio_client = LineClient { lines: BufReader::new(r).lines(), writer: w };
    let hello = stdio_client.lines.next_line().await.unwrap().unwrap();
    assert!(hello.contains("\"init\""), "{hello}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        McpServer::with_config(engine.clone(), McpConfig::default())
            .serve_http_on(listener, std::future::pending()),
    );
    let session = tokio::task::spawn_blocking(move || open_session(port).unwrap()).await.unwrap();

    let mut times: Vec<(&'static str, Vec<Duration>)> =
        ["library", "daemon", "MCP stdio", "MCP HTTP"].iter().map(|n| (*n, Vec::new())).collect();
    // A tenth of the rounds warm up first, uncounted.
    for round in 0..rounds + rounds / 10 {
        let counted = round >= rounds / 10;
        let id = round as u64 + 1;

        let started = Instant::now();
        let outcome = engine.execute(PROGRAM, ExecuteOptions::default()).await;
        // What a caller of the library does with an outcome: make its report.
        let report = outcome.to_report();
        let library = started.elapsed();
        check(&report["value"]);

        let started = Instant::now();
        let m = daemon_client
            .call(json!({"jsonrpc": "2.0", "id": id, "method": "code/execute", "params": {"code": PROGRAM}}))
            .await;
        let via_daemon = started.elapsed();
        check(&m["result"]["value"]);

        let started = Instant::now();
        let m = stdio_client.call(execute_code(id)).await;
        let via_stdio = started.elapsed();
        check(&m["result"]["structuredContent"]["value"]);

        let started = Instant::now();
        let session = session.clone();
        let body = tokio::task::spawn_blocking(move || {
            mcp_post(port, Some(&session), &execute_code(id).to_string())
        })
        .await
        .unwrap()
        .unwrap()
        .2;
        let via_http = started.elapsed();
        check(&sse_data(&body).unwrap()["result"]["structuredContent"]["value"]);

        if counted {
            for (i, t) in [library, via_daemon, via_stdio, via_http].into_iter().enumerate() {
                times[i].1.push(t);
            }
        }
    }
    times
}

fn main() {
    let rounds = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let mut times = tokio::runtime::Runtime::new().unwrap().block_on(measure(rounds));
    for (_, t) in &mut times {
        t.sort_unstable();
    }
    let base = percentile(&times[0].1, 0.5).as_secs_f64();
    println!("| face | p50 | p99 | p50 ÷ library's |");
    println!("|---|---:|---:|---:|");
    for (name, t) in &times {
        let p50 = percentile(t, 0.5);
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2}× |",
            p50.as_secs_f64() * 1000.0,
            percentile(t, 0.99).as_secs_f64() * 1000.0,
            p50.as_secs_f64() / base
        );
    }
}
