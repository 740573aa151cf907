//! OpenTelemetry, end to end: the binary's spans reach a real OTLP/HTTP receiver (this test's),
//! decoded with the OpenTelemetry crates' own protobuf messages; a caller's `traceparent`
//! becomes their parent; an HTTP upstream server is sent the trace context of its call.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message;
use serde_json::{json, Value};

use crate::harness::converse;

/// What the receiver was sent: the decoded exports and their raw bytes, and the trace context
/// of each `tools/call` the fake upstream server answered (header, `_meta`).
#[derive(Default)]
struct Received {
    exports: Vec<ExportTraceServiceRequest>,
    raw: Vec<u8>,
    calls: Vec<(Option<String>, Option<String>)>,
}

/// An OTLP/HTTP receiver at `/v1/traces` and, at `/mcp`, an MCP server over streamable HTTP
/// with one tool, `lookup`, answering with one JSON body. Its port and what it received.
async fn receiver() -> (u16, Arc<Mutex<Received>>) {
    use axum::response::IntoResponse;
    let received = Arc::new(Mutex::new(Received::default()));
    let traces = Arc::clone(&received);
    let calls = Arc::clone(&received);
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = Arc::clone(&traces);
                async move {
                    let export = ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf");
                    let mut received = received.lock().unwrap();
                    received.raw.extend_from_slice(&body);
                    received.exports.push(export);
                    [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")]
                }
            }),
        )
        .route(
            "/mcp",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let received = Arc::clone(&calls);
                async move {
                    let request: Value = serde_json::from_str(&body).unwrap();
                    let result = match request["method"].as_str() {
                        Some("initialize") => json!({"protocolVersion": "2025-06-18",
                            "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "1"}}),
                        Some("tools/list") => {
                            json!({"tools": [{"name": "lookup", "inputSchema": {"type": "object",
                            "properties": {"secret": {"type": "string"}}}}]})
                        }
                        Some("tools/call") => {
                            let header = headers.get("traceparent").map(|v| v.to_str().unwrap().to_string());
                            let meta = request["params"]["_meta"]["traceparent"].as_str().map(str::to_string);
                            received.lock().unwrap().calls.push((header, meta));
                            json!({"content": [{"type": "text", "text": "found"}]})
                        }
                        _ => return axum::http::StatusCode::ACCEPTED.into_response(),
                    };
                    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
                    ([(axum::http::header::CONTENT_TYPE, "application/json")], answer.to_string())
                        .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, received)
}

/// Every span received, with its resource's `service.name`.
fn spans(received: &Received) -> Vec<(String, Span)> {
    let mut all = Vec::new();
    for export in &received.exports {
        for resource in &export.resource_spans {
            let attributes = &resource.resource.as_ref().expect("a resource").attributes;
            let service = attributes.iter().find(|a| a.key == "service.name").map(|a| text(a.value.as_ref()));
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    all.push((service.clone().expect("service.name"), span.clone()));
                }
            }
        }
    }
    all
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        other => panic!("an attribute of an unexpected type: {other:?}"),
    }
}

/// The span's attribute `key`, as text.
fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).map(|a| text(a.value.as_ref()))
}

/// The one span named `name`.
fn one<'a>(spans: &'a [(String, Span)], name: &str) -> &'a Span {
    let found: Vec<_> = spans.iter().filter(|(_, s)| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "spans named {name}: {:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    &found[0].1
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn codemode(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_codemode"));
    command
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_SDK_DISABLED");
    command
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("codemode-telemetry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const PROGRAM: &str = "const books = await sheets.listSheets({});\n\
    const found = await fake.lookup({ secret: \"hunter2\" });\n\
    return [books.length, found];";

/// `codemode run` with `[telemetry]` in its configuration: an execution span, a span per tool
/// call under it, an upstream request span under the upstream tool's call, flushed before the
/// process exits; the HTTP upstream is sent that span's `traceparent` as a header and in
/// `_meta`; no argument or result is in anything exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_exports_its_spans_and_passes_its_trace_to_an_http_upstream() {
    let (port, received) = receiver().await;
    let dir = scratch("run");
    let config = dir.join("codemode.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}/\"\n\n\
             [[servers]]\nnamespace = \"fake\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("program.ts"), PROGRAM).unwrap();
    let mut command = codemode(&dir);
    command
        .args(["run", "--demo", "--typecheck", "off", "--json", "--config"])
        .arg(&config)
        .arg(dir.join("program.ts"));
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["value"], json!([1, "found"]), "{}", String::from_utf8_lossy(&out.stderr));

    let received = received.lock().unwrap();
    let spans = spans(&received);
    assert!(spans.iter().all(|(service, _)| service == "codemode"));
    let execute = one(&spans, "execute");
    assert_eq!(
        ["outcome", "tool_calls", "code_bytes", "session"].map(|k| attr(execute, k)),
        [Some("ok".into()), Some("2".into()), Some(PROGRAM.len().to_string()), Some("false".into())]
    );
    assert!(execute.parent_span_id.is_empty(), "a run starts its own trace");
    let mut calls: Vec<&Span> = spans.iter().map(|(_, s)| s).filter(|s| s.name == "tool_call").collect();
    calls.sort_by_key(|s| attr(s, "tool"));
    let summary: Vec<_> = calls
        .iter()
        .map(|s| {
            ["tool", "namespace", "args_bytes", "outcome", "result_bytes"]
                .map(|k| attr(s, k).unwrap_or_default())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ["fake.lookup", "fake", "20", "ok", "7"].map(String::from),
            ["sheets.listSheets", "sheets", "2", "ok", &attr(calls[1], "result_bytes").unwrap()]
                .map(String::from),
        ]
    );
    for call in &calls {
        assert_eq!((&call.trace_id, &call.parent_span_id), (&execute.trace_id, &execute.span_id));
    }
    let upstream = one(&spans, "upstream_request");
    assert_eq!(upstream.parent_span_id, calls[0].span_id, "under the call of fake.lookup");
    assert_eq!(upstream.kind, SpanKind::Client as i32);
    assert_eq!(
        ["upstream", "tool", "transport", "outcome"].map(|k| attr(upstream, k)),
        [Some("fake".into()), Some("lookup".into()), Some("http".into()), Some("ok".into())]
    );
    let traceparent = format!("00-{}-{}-01", hex(&upstream.trace_id), hex(&upstream.span_id));
    assert_eq!(received.calls, [(Some(traceparent.clone()), Some(traceparent))]);
    let raw = String::from_utf8_lossy(&received.raw);
    assert!(!raw.contains("hunter2") && !raw.contains("found"), "an argument or a result was exported");
    std::fs::remove_dir_all(&dir).unwrap();
}

const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The daemon, told where by `OTEL_EXPORTER_OTLP_ENDPOINT`: a request's `traceparent` is the
/// parent of its span, and a failing execution's span says so; a `traceparent` that is not one
/// is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_continues_the_callers_trace() {
    let (port, received) = receiver().await;
    let dir = scratch("daemon");
    let mut command = codemode(&dir);
    command
        .args(["serve", "--stdio", "--demo", "--typecheck", "off"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("OTEL_SERVICE_NAME", "daemon-test");
    let execute = |id: u64, code: &str, traceparent: Value| {
        json!({"jsonrpc": "2.0", "id": id,
        "method": "code/execute", "params": {"code": code, "traceparent": traceparent}})
    };
    let lines = [
        execute(1, "return (await sheets.listSheets({})).length", json!(CALLER)),
        execute(2, "throw new Error('no')", json!(CALLER)),
        execute(3, "return 1", json!("00-abc")),
        execute(4, "return 1", json!(5)),
    ];
    let out = tokio::task::spawn_blocking(move || converse(command, &lines)).await.unwrap();
    let responses: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(responses[0]["result"]["value"], json!(1), "{out}");
    assert_eq!(responses[1]["result"]["error"]["kind"], json!("exception"), "{out}");
    assert_eq!(
        [&responses[2]["error"], &responses[3]["error"]],
        [
            &json!({"code": -32602, "message": "traceparent is not a W3C trace context header \
                (version-traceid-parentid-flags, such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01): \"00-abc\""}),
            &json!({"code": -32602, "message": "traceparent must be a string"}),
        ]
    );

    let received = received.lock().unwrap();
    let spans = spans(&received);
    assert!(spans.iter().all(|(service, _)| service == "daemon-test"));
    let caller: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "code/execute" && hex(&s.trace_id) == "0af7651916cd43dd8448eb211c80319c")
        .collect();
    assert_eq!(caller.len(), 2);
    for request in &caller {
        assert_eq!(hex(&request.parent_span_id), "b7ad6b7169203331");
        assert_eq!(request.kind, SpanKind::Server as i32);
        assert_eq!(attr(request, "rpc.method").as_deref(), Some("code/execute"));
    }
    let executions: Vec<&Span> = spans.iter().map(|(_, s)| s).filter(|s| s.name == "execute").collect();
    assert_eq!(executions.len(), 4 - 2, "refused requests run nothing");
    let outcomes = executions
        .iter()
        .map(|e| {
            let request = caller.iter().find(|r| r.span_id == e.parent_span_id).expect("under its request");
            assert_eq!(e.trace_id, request.trace_id);
            (attr(e, "outcome").unwrap(), e.status.as_ref().map_or(0, |s| s.code))
        })
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        outcomes,
        [("ok".to_string(), StatusCode::Unset as i32), ("exception".to_string(), StatusCode::Error as i32)]
            .into()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `codemode mcp`: an `execute_code` call's `_meta.traceparent` (SEP-414) is the parent of its
/// span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_server_continues_the_callers_trace() {
    let (port, received) = receiver().await;
    let dir = scratch("mcp");
    let config = dir.join("codemode.toml");
    std::fs::write(
        &config,
        format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nservice_name = \"mcp-test\"\n"),
    )
    .unwrap();
    let mut command = codemode(&dir);
    command.args(["mcp", "--demo", "--typecheck", "off", "--config"]).arg(&config);
    let lines = [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execute_code",
            "arguments": {"code": "return (await sheets.listSheets({})).length"}, "_meta": {"traceparent": CALLER}}}),
    ];
    let out = tokio::task::spawn_blocking(move || converse(command, &lines)).await.unwrap();
    assert!(out.lines().last().unwrap().contains(r#""isError":false"#), "{out}");

    let received = received.lock().unwrap();
    let spans = spans(&received);
    assert!(spans.iter().all(|(service, _)| service == "mcp-test"));
    let call = one(&spans, "tools/call");
    assert_eq!(
        (hex(&call.trace_id).as_str(), hex(&call.parent_span_id).as_str(), attr(call, "tool")),
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", Some("execute_code".into()))
    );
    let execute = one(&spans, "execute");
    assert_eq!((&execute.trace_id, &execute.parent_span_id), (&call.trace_id, &call.span_id));
    let tool = one(&spans, "tool_call");
    assert_eq!(tool.parent_span_id, execute.span_id);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `codemode mcp --http`: the `traceparent` header of an `execute_code` request is the parent of
/// its span; the spans are flushed when SIGTERM ends the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_http_server_follows_the_traceparent_header() {
    use crate::bounded::{http_with, open_session};
    let (port, received) = receiver().await;
    let dir = scratch("mcp-http");
    let config = dir.join("codemode.toml");
    std::fs::write(&config, format!("[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n")).unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = codemode(&dir)
        .args(["mcp", "--demo", "--typecheck", "off", "--http", &format!("127.0.0.1:{http}"), "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::harness::eventually(std::time::Duration::from_secs(10), "the MCP HTTP server listens", || {
        std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
    })
    .await;
    let body = tokio::task::spawn_blocking(move || {
        let session = open_session(http);
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute_code",
            "arguments": {"code": "return 1 + 1"}}});
        let (status, _, body) = http_with(
            http,
            "POST",
            "/mcp",
            Some(&session),
            &format!("traceparent: {CALLER}\r\n"),
            &call.to_string(),
        );
        assert_eq!(status, 200, "{body}");
        body
    })
    .await
    .unwrap();
    assert!(body.contains(r#""isError":false"#), "{body}");
    let term = std::process::Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(tokio::task::spawn_blocking(move || server.wait().unwrap()).await.unwrap().success());

    let received = received.lock().unwrap();
    let spans = spans(&received);
    let call = one(&spans, "tools/call");
    assert_eq!(
        (hex(&call.trace_id).as_str(), hex(&call.parent_span_id).as_str()),
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    );
    assert_eq!(one(&spans, "execute").parent_span_id, call.span_id);
    std::fs::remove_dir_all(&dir).unwrap();
}
