//! Helpers the measuring examples share (`soak`, `hostile_soak`, `faces`); each includes this
//! file with `#[path = "common/mod.rs"] mod common;`. Not every example uses every helper.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::Duration;

/// This process's resident memory in KiB (0 where /proc is not there).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The `p` quantile (0..=1) of sorted values, nearest rank; the default of none.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

/// An MCP `initialize` request and the notification that follows it.
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"codemode-example","version":"0"}}}"#;
pub const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// One HTTP/1.0 POST to the MCP endpoint at `port` (the connection closes after the
/// response); returns the status, the `Mcp-Session-Id` header and the body.
pub fn mcp_post(
    port: u16,
    session: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, Option<String>, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let session_line = session.map(|id| format!("Mcp-Session-Id: {id}\r\n")).unwrap_or_default();
    write!(
        s,
        "POST /mcp HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n{session_line}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let session = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("mcp-session-id")))
        .map(|(_, v)| v.trim().to_string());
    Ok((status, session, body.to_string()))
}

/// Opens an MCP session at `port`; returns its id.
pub fn open_session(port: u16) -> Result<String, String> {
    let (status, session, body) = mcp_post(port, None, INITIALIZE).map_err(|e| e.to_string())?;
    let session = session.filter(|_| status == 200).ok_or(format!("initialize: {status} {body}"))?;
    mcp_post(port, Some(&session), INITIALIZED).map_err(|e| e.to_string())?;
    Ok(session)
}

/// The JSON-RPC message in an SSE response body (its first non-empty `data:` line).
pub fn sse_data(body: &str) -> Option<serde_json::Value> {
    let data = body.lines().find_map(|l| l.strip_prefix("data: ").filter(|d| !d.is_empty()))?;
    serde_json::from_str(data).ok()
}
