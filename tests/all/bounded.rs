//! The faces' bounds against clients that misbehave: MCP over stdio with a client that never
//! reads, MCP over HTTP with session floods, idle sessions and abandoned requests, and daemon
//! clients that hang up with programs running. (The daemon's unread-output bounds are in
//! `daemon`.)

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use codemode::daemon::{Daemon, DaemonConfig};
use codemode::mcp::{McpConfig, McpServer};
use codemode::{Engine, Limits};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::eventually;

fn engine(workers: usize, timeout: Duration) -> Engine {
    let limits = Limits { timeout, ..Limits::default() };
    crate::harness::builder()
        .registry(codemode::demo::registry())
        .limits(limits)
        .workers(workers)
        .build()
        .unwrap()
}

fn mcp_lines(id: u64, code: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "execute_code", "arguments": {"code": code}}})
    .to_string()
}

const MCP_HELLO: &str = concat!(
    r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    "\n"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_stdio_client_that_never_reads_is_held_then_gets_every_answer() {
    let config = McpConfig { max_unsent_bytes: 1 << 20, max_in_flight: 4, ..Default::default() };
    let server = McpServer::with_config(engine(2, Duration::from_secs(10)), config);
    // A small pipe: what the server does not read backs up into the client's writes.
    let (ours, theirs) = tokio::io::duplex(4 << 10);
    let (r, w) = tokio::io::split(theirs);
    let served = tokio::spawn(server.serve_lines(r, w));
    let (unread, mut writer) = tokio::io::split(ours);
    const REQUESTS: u64 = 300;
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            writer.write_all(MCP_HELLO.as_bytes()).await.unwrap();
            for id in 0..REQUESTS {
                let line = format!("{}\n", mcp_lines(id, "return 'x'.repeat(20000)"));
                writer.write_all(line.as_bytes()).await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            }
            writer
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 1 MiB holds about 50 answers of 20 KB; with 4 running and a 4 KiB pipe the client cannot
    // have sent all 300 requests while nobody reads.
    let held = sent.load(Ordering::Relaxed);
    assert!(held < REQUESTS, "the server kept reading: {held} of {REQUESTS} requests sent");
    assert!(!served.is_finished(), "the connection is held, not closed");
    // Once the client reads, every request is answered, none lost.
    let mut lines = BufReader::new(unread).lines();
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < REQUESTS as usize {
        let line =
            tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
        let m: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = m["id"].as_u64() {
            let value = &m["result"]["structuredContent"]["value"];
            assert_eq!(value.as_str().map(str::len), Some(20000), "{}", &line[..200.min(line.len())]);
            assert!(answered.insert(id), "answered twice: {id}");
        }
    }
    // Both halves gone: the client hung up.
    drop((sender.await.unwrap(), lines));
    tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("ends when the client hangs up")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_stdio_client_left_with_twice_the_bound_unread_is_disconnected() {
    let config = McpConfig { max_unsent_bytes: 1 << 20, ..Default::default() };
    let server = McpServer::with_config(engine(2, Duration::from_secs(10)), config);
    let (ours, theirs) = tokio::io::duplex(64 << 10);
    let (r, w) = tokio::io::split(theirs);
    let served = tokio::spawn(server.serve_lines(r, w));
    let (_unread, mut writer) = tokio::io::split(ours);
    tokio::spawn(async move {
        writer.write_all(MCP_HELLO.as_bytes()).await.unwrap();
        // Every request is read before any answer is ready, so their answers (20 MB) pass
        // twice the bound.
        let code = "await new Promise((r) => setTimeout(r, 300)); return 'x'.repeat(100000)";
        for id in 0..200 {
            let line = format!("{}\n", mcp_lines(id, code));
            if writer.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("the server closes the connection")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_stdio_answers_malformed_lines_and_keeps_serving() {
    let config = McpConfig { max_line_bytes: 1000, ..Default::default() };
    let server = McpServer::with_config(engine(1, Duration::from_secs(10)), config);
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(theirs);
    tokio::spawn(server.serve_lines(r, w));
    let (read, mut writer) = tokio::io::split(ours);
    let mut lines = BufReader::new(read).lines();
    writer.write_all(MCP_HELLO.as_bytes()).await.unwrap();
    let hello: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(hello["id"], "init");
    let long = format!("{}\n", mcp_lines(1, &"1;".repeat(1000)));
    writer.write_all(long.as_bytes()).await.unwrap();
    writer.write_all(b"{not json\n[1,2]\n").await.unwrap();
    writer.write_all(format!("{}\n", mcp_lines(2, "return 6 * 7")).as_bytes()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let m: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        got.push((
            m["id"].clone(),
            m["error"]["code"].clone(),
            m["result"]["structuredContent"]["value"].clone(),
        ));
    }
    assert_eq!(
        got,
        vec![
            (Value::Null, json!(-32600), Value::Null),
            (Value::Null, json!(-32700), Value::Null),
            (Value::Null, json!(-32600), Value::Null),
            (json!(2), Value::Null, json!(42)),
        ]
    );
}

/// One HTTP/1.0 exchange with the server at `port` (the connection closes after the response);
/// returns the status, the headers (lower-case names) and the body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    session: Option<&str>,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    http_with(port, method, path, session, "", body)
}

/// [`http`] with more header lines (each ending in `\r\n`).
pub(crate) fn http_with(
    port: u16,
    method: &str,
    path: &str,
    session: Option<&str>,
    more: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let session = session.map(|id| format!("Mcp-Session-Id: {id}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n{session}{more}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut head = head.lines();
    let status = head.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = head
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}"#;

/// Opens a session; returns its id.
pub(crate) fn open_session(port: u16) -> String {
    let (status, headers, body) = http(port, "POST", "/mcp", None, INITIALIZE);
    assert_eq!(status, 200, "{body}");
    let id = header(&headers, "mcp-session-id").expect("a session id").to_string();
    let (status, _, body) =
        http(port, "POST", "/mcp", Some(&id), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(status, 202, "{body}");
    id
}

fn sessions(port: u16) -> Value {
    let (status, _, body) = http(port, "GET", "/", None, "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&v["server"], &v["endpoint"]), (&json!("codemode"), &json!("/mcp")), "{v}");
    v["sessions"].clone()
}

async fn http_server(engine: Engine, config: McpConfig) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = McpServer::with_config(engine, config);
    tokio::spawn(server.serve_http_on(listener, std::future::pending()));
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_http_sessions_are_capped_and_expire_when_idle() {
    let config =
        McpConfig { max_sessions: 2, session_idle: Duration::from_millis(400), ..Default::default() };
    let port = http_server(engine(1, Duration::from_secs(10)), config).await;
    let (first, second, refused) = tokio::task::spawn_blocking(move || {
        let first = open_session(port);
        let second = open_session(port);
        let refused = http(port, "POST", "/mcp", None, INITIALIZE);
        (first, second, refused)
    })
    .await
    .unwrap();
    assert_ne!(first, second);
    let (status, _, body) = refused;
    assert_eq!(status, 503, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        error["error"]["message"],
        "2 MCP sessions are open, the most this server allows ([mcp] max_sessions); close one (DELETE /mcp) or wait for an idle one to expire"
    );
    let stats = tokio::task::spawn_blocking(move || sessions(port)).await.unwrap();
    assert_eq!(
        (&stats["live"], &stats["max"], &stats["created"], &stats["refused"], &stats["idleTimeoutMs"]),
        (&json!(2), &json!(2), &json!(2), &json!(1), &json!(400)),
        "{stats}"
    );
    // Left idle, both expire; the expired id is unknown from then on, and new sessions open.
    let mut expired = Value::Null;
    eventually(Duration::from_secs(10), "both sessions expire", || {
        expired = sessions_now(port);
        expired["live"] == json!(0)
    })
    .await;
    assert_eq!(expired["expired"], json!(2), "{expired}");
    let (gone, again) = tokio::task::spawn_blocking(move || {
        let body = mcp_call(1, "return 1");
        (http(port, "POST", "/mcp", Some(&first), &body).0, open_session(port))
    })
    .await
    .unwrap();
    assert_eq!(gone, 404);
    assert!(!again.is_empty());
}

/// `sessions`, from async code (a blocking call on a runtime thread is fine for one short GET).
fn sessions_now(port: u16) -> Value {
    tokio::task::block_in_place(|| sessions(port))
}

fn mcp_call(id: u64, code: &str) -> String {
    mcp_lines(id, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_mcp_http_request_is_cancelled() {
    // One sandbox thread and a 60 s deadline: if the abandoned loop were not cancelled, the
    // next program would wait for it far longer than this test waits.
    let port = http_server(engine(1, Duration::from_secs(60)), McpConfig::default()).await;
    let session = tokio::task::spawn_blocking(move || open_session(port)).await.unwrap();
    {
        let session = session.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let body = mcp_call(7, "while (true) {}");
            let request = format!(
                "POST /mcp HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
                 Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n\
                 Mcp-Session-Id: {session}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(request.as_bytes()).unwrap();
            // The response has started (the program runs); then the client goes away.
            let mut first = [0u8; 12];
            s.read_exact(&mut first).unwrap();
            assert_eq!(&first, b"HTTP/1.0 200");
        })
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(20), "the abandoned request is counted", || {
        sessions_now(port)["abandoned"] == json!(1)
    })
    .await;
    let answer = tokio::task::spawn_blocking(move || {
        let (status, _, body) = http(port, "POST", "/mcp", Some(&session), &mcp_call(8, "return 6 * 7"));
        assert_eq!(status, 200, "{body}");
        body
    })
    .await
    .unwrap();
    let data = answer
        .lines()
        .find_map(|l| l.strip_prefix("data: ").filter(|d| !d.is_empty()))
        .unwrap_or_else(|| panic!("{answer}"));
    let m: Value = serde_json::from_str(data).unwrap();
    assert_eq!(m["result"]["structuredContent"]["value"], json!(42), "{m}");
}

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("codemode-bounded-{}-{name}", std::process::id()))
}

/// Serves `d` on a fresh socket at `path`; returns once it accepts connections.
async fn serve_socket(d: &Daemon, path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let (d, p) = (d.clone(), path.to_path_buf());
    tokio::spawn(async move { d.serve_socket(&p, std::future::pending()).await.unwrap() });
    eventually(Duration::from_secs(10), "the socket listens", || {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    })
    .await;
}

async fn daemon_stats(path: &std::path::Path) -> Value {
    let stream = tokio::net::UnixStream::connect(path).await.unwrap();
    let (r, mut w) = stream.into_split();
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stats\"}\n").await.unwrap();
    let line = BufReader::new(r).lines().next_line().await.unwrap().unwrap();
    serde_json::from_str::<Value>(&line).unwrap()["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_client_that_hangs_up_has_its_programs_cancelled() {
    let d = Daemon::new(engine(2, Duration::from_secs(60)), DaemonConfig::default());
    let path = socket_path("hangup.sock");
    serve_socket(&d, &path).await;
    {
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        for id in 0..2 {
            let line = json!({"jsonrpc": "2.0", "id": id, "method": "code/execute", "params": {"code": "while (true) {}"}});
            s.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        }
        let mut running = Value::Null;
        eventually(Duration::from_secs(10), "both loops run", || {
            running = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(daemon_stats(&path))
            })["running"]
                .clone();
            running == json!(2)
        })
        .await;
    } // the client hangs up: both directions closed
    let mut stats = Value::Null;
    eventually(Duration::from_secs(20), "the loops are cancelled", || {
        stats =
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(daemon_stats(&path)));
        stats["running"] == json!(0)
    })
    .await;
    assert_eq!((&stats["cancelledGone"], &stats["failures"]["cancelled"]), (&json!(1), &json!(2)), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_client_that_only_stops_sending_still_gets_its_result() {
    let d = Daemon::new(engine(2, Duration::from_secs(60)), DaemonConfig::default());
    let path = socket_path("halfclose.sock");
    serve_socket(&d, &path).await;
    let s = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (r, mut w) = s.into_split();
    let line = json!({"jsonrpc": "2.0", "id": 1, "method": "code/execute",
                      "params": {"code": "await new Promise((r) => setTimeout(r, 500)); return 42"}});
    w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    w.shutdown().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), BufReader::new(r).lines().next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let m: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(m["result"]["value"], json!(42), "{m}");
    let stats = daemon_stats(&path).await;
    assert_eq!(stats["cancelledGone"], json!(0), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_socket_refuses_anything_but_a_stale_socket_and_deletes_nothing() {
    let d = Daemon::new(engine(1, Duration::from_secs(10)), DaemonConfig::default());
    // An ordinary file stays as it was.
    let file = socket_path("precious.txt");
    std::fs::write(&file, "data\n").unwrap();
    let e = d.serve_socket(&file, std::future::pending()).await.unwrap_err();
    assert_eq!(e.to_string(), format!("{} exists and is not a socket; choose another path", file.display()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data\n");
    std::fs::remove_file(&file).unwrap();
    // So does a directory, and a link (which is not followed).
    let dir = socket_path("dir");
    std::fs::create_dir_all(&dir).unwrap();
    let e = d.serve_socket(&dir, std::future::pending()).await.unwrap_err();
    assert!(e.to_string().ends_with("exists and is not a socket; choose another path"), "{e}");
    assert!(dir.is_dir());
    let link = socket_path("link");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    assert!(d.serve_socket(&link, std::future::pending()).await.is_err());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    // A stale socket (nobody listening) is replaced.
    let stale = socket_path("stale.sock");
    let _ = std::fs::remove_file(&stale);
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (d2, p) = (d.clone(), stale.clone());
    tokio::spawn(async move { d2.serve_socket(&p, std::future::pending()).await.unwrap() });
    eventually(Duration::from_secs(10), "the stale socket is replaced", || {
        std::os::unix::net::UnixStream::connect(&stale).is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_http_session_has_at_most_max_in_flight_requests_open() {
    let config = McpConfig { max_in_flight: 2, ..Default::default() };
    let port = http_server(engine(2, Duration::from_secs(30)), config).await;
    let session = tokio::task::spawn_blocking(move || open_session(port)).await.unwrap();
    let slow = (0..2)
        .map(|i| {
            let session = session.clone();
            tokio::task::spawn_blocking(move || {
                http(
                    port,
                    "POST",
                    "/mcp",
                    Some(&session),
                    &mcp_call(10 + i, "await new Promise((r) => setTimeout(r, 1500)); return 1"),
                )
            })
        })
        .collect::<Vec<_>>();
    eventually(Duration::from_secs(10), "both requests are open", || {
        sessions_now(port)["openRequests"] == json!(2)
    })
    .await;
    let (status, _, body) = {
        let session = session.clone();
        tokio::task::spawn_blocking(move || {
            http(port, "POST", "/mcp", Some(&session), &mcp_call(12, "return 1"))
        })
        .await
        .unwrap()
    };
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("this MCP session has 2 requests open, the most it may ([mcp] max_in_flight); wait for one to finish"),
        "{body}"
    );
    for request in slow {
        let (status, _, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Once they are answered, the session takes requests again.
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        http(port, "POST", "/mcp", Some(&session), &mcp_call(13, "return 1"))
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_flooding_the_log_fills_it_and_the_program_goes_on() {
    let mut registry = codemode::Registry::new();
    let flood = codemode::Tool::new("flood", "Logs a lot.", json!({"type": "object"}), |_: Value| async {
        for i in 0..20_000 {
            codemode::tool_log(codemode::LogLevel::Info, &format!("progress {i}"));
        }
        Ok::<_, codemode::ToolError>(json!("done"))
    });
    registry.register("noisy", flood).unwrap();
    let limits = Limits { max_log_lines: 100, ..Limits::default() };
    let engine = crate::harness::builder().registry(registry).limits(limits).workers(1).build().unwrap();
    let o = engine.execute("return await noisy.flood({})", Default::default()).await;
    assert_eq!((o.error, o.value), (None, json!("done")));
    assert_eq!(o.logs.len(), 101);
    assert_eq!(o.logs[99].message, "noisy.flood: progress 99");
    let dropped = &o.logs[100].message;
    assert!(dropped.starts_with("[codemode] 19900 more log line(s) dropped"), "{dropped}");
}
