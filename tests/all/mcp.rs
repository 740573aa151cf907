//! The MCP server, driven by a client nobody here wrote: the official Python SDK, over stdio
//! and over streamable HTTP.

use std::io::{Read, Write};
use std::process::Command;

use crate::harness::python;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_client.py");

#[test]
fn the_python_sdk_over_stdio() {
    let Some(mut python) = python() else {
        eprintln!("SKIPPED the_python_sdk_over_stdio: python3 with pip not found");
        return;
    };
    let out = python.arg(SCRIPT).arg(env!("CARGO_BIN_EXE_codemode")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), EXPECTED);
}

#[test]
fn the_python_sdk_over_streamable_http_and_origin_checks() {
    let Some(mut python) = python() else {
        eprintln!(
            "SKIPPED the_python_sdk_over_streamable_http_and_origin_checks: python3 with pip not found"
        );
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_codemode"))
        .args(["mcp", "--demo", "--http", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut tries = 0;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tries += 1;
        assert!(tries < 500, "the MCP HTTP server never listened");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = python.arg(SCRIPT).arg(format!("http://127.0.0.1:{port}/mcp")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), EXPECTED);

    // A web page's request (foreign Origin) and a rebinding attempt (foreign Host) are refused.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}}"#;
    for (host, origin) in
        [(format!("127.0.0.1:{port}"), "http://evil.example"), ("evil.example".to_string(), "")]
    {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let origin = if origin.is_empty() { String::new() } else { format!("Origin: {origin}\r\n") };
        write!(
            s,
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    }
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    assert!(server.wait().unwrap().success());
}

const EXPECTED: &str = "tools: describe_tools, execute_code, search_tools\n\
         prompt in execute_code: True\n\
         search: ['sheets.getRows', 'sheets.updateRow']\n\
         describe: True\n\
         execute: False {\"churned\": 3333, \"revenue\": 1664973}\n\
         text: [log] rows 10000\n\
         failure: True exception error (exception) at line 2, column 30: TypeError: bad 1\n";
