//! The MCP server, driven by clients nobody here wrote: the official Python SDK and
//! `@modelcontextprotocol/inspector-cli`, each over stdio and over streamable HTTP.

use std::io::{Read, Write};
use std::process::Command;

use crate::harness::in_memory_session;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::harness::python;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_client.py");

#[test]
fn the_python_sdk_over_stdio() {
    let mut python = python();
    let out = python.arg(SCRIPT).arg(env!("CARGO_BIN_EXE_codemode")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), EXPECTED);
}

#[test]
fn the_python_sdk_over_streamable_http_and_origin_checks() {
    let mut python = python();
    let (mut server, port) = http_server();
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
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    assert!(server.0.wait().unwrap().success());
}

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `codemode mcp --demo --http` on a free loopback port, once it listens.
fn http_server() -> (Killed, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Command::new(env!("CARGO_BIN_EXE_codemode"))
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
    (Killed(server), port)
}

/// Runs `mcp-inspector-cli --cli TARGET... ARGS...` and parses the JSON it prints.
fn inspector(target: &[&str], args: &[&str]) -> Value {
    let dir = crate::harness::npm_dir();
    // inspector-cli 1.0.3 looks for its package.json relative to the working directory but
    // imports it relative to its own file; its build directory satisfies both.
    let build = dir.join("node_modules/@modelcontextprotocol/inspector-cli/build");
    let out = Command::new("node")
        .arg(build.join("cli.js"))
        .arg("--cli")
        .args(target)
        .args(args)
        .current_dir(&build)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the inspector sees from one server: the tool names, a search, a description and a
/// program's outcome, as one line each.
fn inspect(target: &[&str]) -> String {
    let list = inspector(target, &["--method", "tools/list"]);
    let names: Vec<&str> =
        list["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    let search = inspector(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "search_tools",
            "--tool-arg",
            "query=update a row",
            "detail=name",
        ],
    );
    let paths: Vec<&str> = search["structuredContent"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    let describe = inspector(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "describe_tools",
            "--tool-arg",
            r#"names=["sheets.updateRow"]"#,
        ],
    );
    let declared = describe["content"][0]["text"].as_str().unwrap().contains("function updateRow(");
    let code = "code=const rows = await sheets.getRows({ sheetId: 'sales' });\n\
                console.log('rows', rows.length);\n\
                return rows.filter((r) => r.status === 'churned').length;";
    let run =
        inspector(target, &["--method", "tools/call", "--tool-name", "execute_code", "--tool-arg", code]);
    let outcome = &run["structuredContent"];
    format!(
        "tools: {names:?}\nsearch: {paths:?}\ndescribe: {declared}\nexecute: {} {} {}\nerror flag: {}\n",
        outcome["value"], outcome["logs"], outcome["stats"]["tool_calls"], run["isError"]
    )
}

const INSPECTED: &str = "tools: [\"search_tools\", \"describe_tools\", \"execute_code\"]\n\
    search: [\"sheets.updateRow\", \"sheets.listSheets\", \"sheets.getRows\"]\n\
    describe: true\n\
    execute: 3333 [{\"level\":\"log\",\"message\":\"rows 10000\"}] 1\n\
    error flag: false\n";

#[test]
fn the_inspector_cli_over_stdio() {
    crate::harness::npm_dir();
    assert_eq!(inspect(&[env!("CARGO_BIN_EXE_codemode"), "mcp", "--demo"]), INSPECTED);
}

#[test]
fn the_inspector_cli_over_streamable_http() {
    crate::harness::npm_dir();
    let (mut server, port) = http_server();
    let url = format!("http://127.0.0.1:{port}/mcp");
    assert_eq!(inspect(&[&url, "--transport", "http"]), INSPECTED);
    assert!(Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap().success());
    assert!(server.0.wait().unwrap().success());
}

const EXPECTED: &str = "tools: describe_tools, execute_code, search_tools\n\
         prompt in execute_code: True\n\
         search: ['sheets.getRows', 'sheets.updateRow']\n\
         describe: True\n\
         execute: False {\"churned\": 3333, \"revenue\": 1664973}\n\
         text: [log] rows 10000\n\
         failure: True exception error[exception] at line 2, column 30: TypeError: bad 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_in_a_result_reach_the_client_as_content_blocks() {
    const DOT: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let mut registry = codemode::Registry::new();
    registry
        .register(
            "pics",
            codemode::Tool::new("dot", "A one-pixel image.", json!({"type": "object"}), |_: Value| async {
                Ok::<_, codemode::ToolError>(json!({"type": "image", "data": DOT, "mimeType": "image/png"}))
            }),
        )
        .unwrap();
    let engine = codemode::Engine::builder().registry(registry).workers(1).build().unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execute_code",
        "arguments": {"code": "const img = await pics.dot({}); return { caption: 'a dot', img }"}}});
    let (mut lines, mut w) = in_memory_session(codemode::mcp::McpServer::new(engine), json!({})).await;
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let answer = loop {
        let m: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        if m["id"] == json!(1) {
            break m;
        }
    };
    let note = "[image 1 (image/png, 96 bytes of base64): sent as its own content block]";
    let result = &answer["result"];
    assert_eq!(result["structuredContent"]["value"], json!({"caption": "a dot", "img": note}));
    let content = result["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "{answer}");
    assert!(content[0]["text"]
        .as_str()
        .unwrap()
        .ends_with(&format!("result: {{\"caption\":\"a dot\",\"img\":\"{note}\"}}")));
    assert_eq!(content[1], json!({"type": "image", "data": DOT, "mimeType": "image/png"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_for_progress_sees_each_log_line_before_the_result() {
    let mut registry = codemode::Registry::new();
    let slow = codemode::Tool::new("step", "Works in steps.", json!({"type": "object"}), |_: Value| async {
        // What an upstream server's progress becomes: a line in the calling execution's logs.
        assert!(codemode::tool_log(codemode::LogLevel::Info, "halfway"));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok::<_, codemode::ToolError>(json!("done"))
    });
    registry.register("slow", slow).unwrap();
    assert!(!codemode::tool_log(codemode::LogLevel::Info, "outside any call"));
    let engine = codemode::Engine::builder().registry(registry).workers(1).build().unwrap();
    let (mut lines, mut w) = in_memory_session(codemode::mcp::McpServer::new(engine), json!({})).await;
    let code = "console.log('start'); const r = await slow.step({}); console.warn('end'); return r";
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execute_code",
        "arguments": {"code": code}, "_meta": {"progressToken": "p1"}}});
    let quiet = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute_code",
        "arguments": {"code": code}}});
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let mut progress = Vec::new();
    loop {
        let m: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        if m["id"] == json!(1) {
            assert_eq!(m["result"]["structuredContent"]["value"], json!("done"));
            break;
        }
        assert_eq!(m["method"], "notifications/progress", "{m}");
        progress.push(m["params"].clone());
    }
    assert_eq!(
        progress,
        [
            json!({"progressToken": "p1", "progress": 1.0, "message": "[log] start"}),
            json!({"progressToken": "p1", "progress": 2.0, "message": "[info] slow.step: halfway"}),
            json!({"progressToken": "p1", "progress": 3.0, "message": "[warn] end"}),
        ]
    );
    // Without a progress token, only the result comes.
    w.write_all(format!("{quiet}\n").as_bytes()).await.unwrap();
    let m: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (m["id"].clone(), m["result"]["content"][0]["text"].clone()),
        (json!(2), json!("[log] start\n[info] slow.step: halfway\n[warn] end\nresult: \"done\""))
    );
}
