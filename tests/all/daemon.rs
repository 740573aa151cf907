//! The JSON-RPC daemon, driven over an in-memory pipe (and, in `cli`, over a real socket).

use std::time::Duration;

use codemode::daemon::{Daemon, DaemonConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};

/// A client on one end of a pipe whose other end the daemon serves.
pub(crate) struct Client {
    lines: Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
    writer: tokio::io::WriteHalf<DuplexStream>,
}

impl Client {
    pub(crate) async fn send(&mut self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }
    async fn send_raw(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }
    pub(crate) async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("the daemon answers within 10 s")
            .unwrap()
            .expect("the daemon keeps the connection open");
        serde_json::from_str(&line).unwrap()
    }
    /// Sends a request and returns its response, answering `tools/call` with `answer`.
    pub(crate) async fn call(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
        answer: impl Fn(&Value) -> Value,
    ) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        loop {
            let m = self.recv().await;
            if m["method"] == "tools/call" {
                let reply = answer(&m["params"]);
                self.send(json!({"jsonrpc": "2.0", "id": m["id"], "result": reply})).await;
            } else if m["id"] == json!(id) && m.get("method").is_none() {
                return m;
            }
        }
    }
}

/// Waits until the daemon counts `n` running executions (their requests were read and their
/// runs registered), instead of sleeping and hoping.
pub(crate) async fn running(c: &mut Client, n: u64) {
    for attempt in 0u64.. {
        let s = c.call(1_000_000 + attempt, "stats", json!({}), no_answer).await;
        if s["result"]["running"] == json!(n) {
            return;
        }
        assert!(attempt < 1000, "never {n} running: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn connect(daemon: &Daemon) -> Client {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(theirs);
    let d = daemon.clone();
    tokio::spawn(async move { d.serve_connection(r, w).await });
    let (r, w) = tokio::io::split(ours);
    Client { lines: BufReader::new(r).lines(), writer: w }
}

pub(crate) fn daemon() -> Daemon {
    let engine = crate::harness::builder().registry(codemode::demo::registry()).workers(2).build().unwrap();
    Daemon::new(engine, DaemonConfig { tool_call_timeout: Duration::from_millis(500), ..Default::default() })
}

pub(crate) fn no_answer(_: &Value) -> Value {
    panic!("no tool call expected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_registers_a_tool_and_a_program_calls_it_concurrently() {
    let d = daemon();
    let mut c = connect(&d);
    let r = c
        .call(1, "tools/register", json!({"namespace": "shop", "tools": [{"name": "stock-level", "inputSchema": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]}}]}), no_answer)
        .await;
    assert_eq!(r["result"], json!({"namespace": "shop", "tools": ["stockLevel"]}));
    let code = "const xs = await Promise.all(['a', 'bb', 'ccc'].map((item) => shop.stockLevel({ item }))); return xs";
    let r = c
        .call(2, "code/execute", json!({"code": code}), |p| {
            json!(p["arguments"]["item"].as_str().unwrap().len())
        })
        .await;
    assert_eq!(r["result"]["value"], json!([1, 2, 3]), "{r}");
    assert_eq!(r["result"]["stats"]["tool_calls"], json!(3));
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_json_rpc_errors_and_the_connection_keeps_serving() {
    let engine = crate::harness::builder().registry(codemode::demo::registry()).workers(1).build().unwrap();
    let d = Daemon::new(engine, DaemonConfig { max_line_bytes: 1024, ..Default::default() });
    let mut c = connect(&d);
    let error = |m: &Value| {
        (
            m["id"].clone(),
            m["error"]["code"].as_i64().unwrap_or_else(|| panic!("{m}")),
            m["error"]["message"].as_str().unwrap().to_string(),
        )
    };

    c.send_raw("{not json").await;
    let (id, code, message) = error(&c.recv().await);
    assert_eq!((id, code), (Value::Null, -32700));
    assert!(message.starts_with("parse error: "), "{message}");

    c.send_raw(&format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":\"{}\"}}",
        "a".repeat(5000)
    ))
    .await;
    assert_eq!(
        error(&c.recv().await),
        (Value::Null, -32600, "message of 5049 bytes is longer than the limit of 1024 bytes".into())
    );

    c.send_raw("[1, 2]").await;
    assert_eq!(
        error(&c.recv().await),
        (Value::Null, -32600, "batches are not supported; send one message per line".into())
    );
    c.send(json!({"id": 2, "method": "stats"})).await;
    assert_eq!(error(&c.recv().await), (json!(2), -32600, "jsonrpc must be \"2.0\"".into()));
    c.send(request(3, "tools/nope", json!({}))).await;
    assert_eq!(error(&c.recv().await), (json!(3), -32601, "unknown method \"tools/nope\"".into()));
    c.send(request(4, "code/execute", json!({"code": 5}))).await;
    assert_eq!(error(&c.recv().await), (json!(4), -32602, "code must be a string".into()));
    c.send(request(5, "code/execute", json!({"code": "1", "limits": {"memory_gb": 1}}))).await;
    assert_eq!(
        error(&c.recv().await),
        (
            json!(5),
            -32602,
            "limits.memory_gb: unknown field `memory_gb`, expected one of `timeout_ms`, `memory_mb`, \
             `max_tool_calls`, `max_concurrent_tool_calls`, `max_log_bytes`, `max_result_bytes`, `typecheck`"
                .into()
        )
    );
    // Params are serde types: a field of the wrong type says what it must be, or where it is.
    c.send(request(5, "code/execute", json!({"code": "1", "tokens": "yes"}))).await;
    assert_eq!(error(&c.recv().await), (json!(5), -32602, "tokens must be a boolean".into()));
    c.send(request(5, "code/execute", json!({"code": "1", "limits": {"timeout_ms": "soon"}}))).await;
    assert_eq!(
        error(&c.recv().await),
        (json!(5), -32602, "limits.timeout_ms: invalid type: string \"soon\", expected u64".into())
    );
    c.send(request(5, "code/execute", json!(["return 1"]))).await;
    assert_eq!(error(&c.recv().await), (json!(5), -32602, "params must be an object".into()));
    c.send(request(5, "tools/describe", json!({"names": [1]}))).await;
    assert_eq!(
        error(&c.recv().await),
        (json!(5), -32602, "names must be a string or an array of strings".into())
    );
    c.send(request(6, "tools/search", json!({"query": "rows", "limit": 0}))).await;
    assert_eq!(error(&c.recv().await), (json!(6), -32602, "limit must be an integer from 1 to 100".into()));
    c.send(request(7, "tools/register", json!({"namespace": "n", "tools": []}))).await;
    assert_eq!(error(&c.recv().await), (json!(7), -32602, "tools must list at least one tool".into()));
    c.send(request(
        7,
        "tools/register",
        json!({"namespace": "n", "tools": [{"name": "a", "inputSchema": {}}, {"name": 1}]}),
    ))
    .await;
    assert_eq!(
        error(&c.recv().await),
        (json!(7), -32602, "tools: at /1/name: must be a non-empty string".into())
    );
    c.send(request(
        8,
        "tools/register",
        json!({"namespace": "console", "tools": [{"name": "x", "inputSchema": {}}]}),
    ))
    .await;
    assert_eq!(error(&c.recv().await), (json!(8), -32001, "namespace \"console\" is reserved".into()));
    c.send(request(
        9,
        "tools/register",
        json!({"namespace": "n", "tools": [{"name": "x", "inputSchema": {"type": 7}}]}),
    ))
    .await;
    let (_, code, message) = error(&c.recv().await);
    assert_eq!(code, -32001);
    assert!(message.starts_with("invalid input schema for tool n.x: at /type: "), "{message}");
    // A name the engine's tools already use is refused.
    c.send(request(
        9,
        "tools/register",
        json!({"namespace": "sheets", "tools": [{"name": "get-rows", "inputSchema": {}}]}),
    ))
    .await;
    assert_eq!(
        error(&c.recv().await),
        (
            json!(9),
            -32001,
            "tool \"get-rows\" in namespace \"sheets\" collides with \"getRows\": both are `sheets.getRows` in the sandbox".into()
        )
    );
    c.send(request(10, "code/cancel", json!({"id": 99}))).await;
    assert_eq!(error(&c.recv().await), (json!(10), -32002, "no running execution with id 99".into()));
    c.send(request(11, "tools/describe", json!({"names": ["sheets.nope"]}))).await;
    assert_eq!(error(&c.recv().await), (json!(11), -32003, "no such tool or namespace: sheets.nope".into()));
    // A notification (no id) gets no answer, even for an unknown method.
    c.send(json!({"jsonrpc": "2.0", "method": "nothing"})).await;

    // Still serving.
    let r = c.call(12, "code/execute", json!({"code": "return 6 * 7"}), no_answer).await;
    assert_eq!(r["result"]["value"], json!(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_as_notifications_before_the_result() {
    let d = daemon();
    let mut c = connect(&d);
    c.send(request(1, "code/execute", json!({"code": "console.log('one'); await new Promise(r => setTimeout(r, 20)); console.warn('two'); return 3"}))).await;
    let a = c.recv().await;
    let b = c.recv().await;
    let r = c.recv().await;
    assert_eq!(
        a,
        json!({"jsonrpc": "2.0", "method": "code/log", "params": {"id": 1, "level": "log", "message": "one"}})
    );
    assert_eq!(b["params"], json!({"id": 1, "level": "warn", "message": "two"}));
    assert_eq!((r["id"].clone(), r["result"]["value"].clone()), (json!(1), json!(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_errors_timeouts_and_cancellation() {
    let d = daemon();
    let mut c = connect(&d);
    c.call(
        1,
        "tools/register",
        json!({"namespace": "x", "tools": [
            {"name": "fail", "inputSchema": {"type": "object"}},
            {"name": "silent", "inputSchema": {"type": "object"}}
        ]}),
        no_answer,
    )
    .await;
    // The client answers `fail` with an error, and never answers `silent`.
    c.send(request(
        2,
        "code/execute",
        json!({"code": r#"
        const out = [];
        try { await x.fail({}); } catch (e) { out.push(`${e.name} ${e.code} ${e.message}`); }
        try { await x.silent({}); } catch (e) { out.push(`${e.name} ${e.code} ${e.message}`); }
        return out;
    "#}),
    ))
    .await;
    let result = loop {
        let m = c.recv().await;
        if m["method"] == "tools/call" && m["params"]["name"] == "fail" {
            c.send(json!({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32000, "message": "no stock", "data": {"code": "empty"}}})).await;
        } else if m["id"] == json!(2) && m.get("method").is_none() {
            break m;
        }
    };
    assert_eq!(
        result["result"]["value"],
        json!([
            "ToolError empty x.fail: no stock",
            "ToolError timeout x.silent: the client did not answer tools/call within 500 ms"
        ]),
        "{result}"
    );

    // code/cancel ends a running program; client limits can only tighten.
    c.send(request(3, "code/execute", json!({"code": "while (true) {}"}))).await;
    running(&mut c, 1).await;
    let r = c.call(4, "code/cancel", json!({"id": 3}), no_answer).await;
    assert_eq!(r["result"], json!({"cancelled": true}));
    let r = c.recv().await;
    assert_eq!((r["id"].clone(), r["result"]["error"]["kind"].clone()), (json!(3), json!("cancelled")));
    let r = c
        .call(5, "code/execute", json!({"code": "while (true) {}", "limits": {"timeout_ms": 50}}), no_answer)
        .await;
    assert_eq!(r["result"]["error"]["message"], "the program ran past its 50 ms deadline");
    let r = c.call(6, "stats", json!({}), no_answer).await;
    assert_eq!(r["result"]["executions"], json!(3));
    assert_eq!(r["result"]["failures"], json!({"cancelled": 1, "timeout": 1}));
    assert_eq!(r["result"]["toolCallbacks"], json!(2));
    assert_eq!(r["result"]["running"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_tools_are_its_own_and_vanish_with_it() {
    let d = daemon();
    let mut a = connect(&d);
    let mut b = connect(&d);
    a.call(1, "tools/register", json!({"namespace": "mine", "description": "A's tools.", "tools": [{"name": "hang", "inputSchema": {}}]}), no_answer).await;
    let list = |r: &Value| {
        r["result"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(list(&a.call(2, "tools/list", json!({}), no_answer).await), ["mine", "sheets"]);
    assert_eq!(list(&b.call(2, "tools/list", json!({}), no_answer).await), ["sheets"]);
    let r = b.call(3, "code/execute", json!({"code": "return typeof mine"}), no_answer).await;
    assert_eq!(r["result"]["value"], "undefined");
    let r = a.call(4, "tools/search", json!({"query": "hang", "detail": "name"}), no_answer).await;
    assert_eq!(r["result"]["hits"][0]["path"], "mine.hang");

    // A starts a program that waits on its own tool, then disconnects: the call fails at once.
    a.send(request(5, "code/execute", json!({"code": "return await mine.hang({})"}))).await;
    let call = a.recv().await;
    assert_eq!(call["method"], "tools/call");
    drop(a);
    let stats = loop {
        let s = b.call(9, "stats", json!({}), no_answer).await;
        if s["result"]["running"] == json!(0) && s["result"]["connections"] == json!(1) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats["result"]["failures"], json!({"exception": 1}));
    // B is unaffected.
    let r = b
        .call(10, "code/execute", json!({"code": "return (await sheets.listSheets())[0].id"}), no_answer)
        .await;
    assert_eq!(r["result"]["value"], "sales");
}

/// A client's tools answer to the deployment's approval patterns as the engine's do, and a
/// client may ask for approval of its own tools when it registers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_tools_need_approval_by_the_engines_patterns_or_their_own() {
    let mut registry = codemode::demo::registry();
    registry.require_approval("shop.refund");
    let engine = crate::harness::builder().registry(registry).workers(1).build().unwrap();
    let d = Daemon::new(engine, DaemonConfig::default());
    let mut c = connect(&d);
    let tool = |name: &str| json!({"name": name, "inputSchema": {"type": "object"}});
    c.call(
        1,
        "tools/register",
        json!({"namespace": "shop", "tools": [tool("refund"), tool("stock")]}),
        no_answer,
    )
    .await;
    c.call(
        2,
        "tools/register",
        json!({"namespace": "till", "approve": ["open*"], "tools": [tool("openDrawer"), tool("total")]}),
        no_answer,
    )
    .await;
    let answered = |p: &Value| {
        json!(format!("{}.{} ran", p["namespace"].as_str().unwrap(), p["name"].as_str().unwrap()))
    };
    for (id, call) in [(3, "shop.refund"), (4, "till.openDrawer")] {
        let r = c
            .call(id, "code/execute", json!({"code": format!("return await {call}({{}})")}), no_answer)
            .await;
        assert_eq!(r["result"]["paused"]["tool"], call, "{r}");
        let approval = r["result"]["paused"]["approval"].clone();
        let r =
            c.call(id + 10, "code/resume", json!({"approval": approval, "approve": true}), answered).await;
        assert_eq!(r["result"]["value"], format!("{call} ran"), "{r}");
    }
    for (id, call) in [(5, "shop.stock"), (6, "till.total")] {
        let r =
            c.call(id, "code/execute", json!({"code": format!("return await {call}({{}})")}), answered).await;
        assert_eq!(r["result"]["value"], format!("{call} ran"), "{r}");
    }
    let r = c
        .call(
            7,
            "tools/register",
            json!({"namespace": "x", "approve": "all", "tools": [tool("y")]}),
            no_answer,
        )
        .await;
    assert_eq!(
        r["error"]["message"],
        "approve must be an array of tool name patterns (`*` matches any run of characters)"
    );
}

/// `prompt` is the engine's prompt over the client's own view of the tools, so an adapter
/// can give its model the instructions with the client's tools in the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_lists_the_clients_own_namespaces_and_says_whether_state_persists() {
    let engine = crate::harness::builder().registry(codemode::demo::registry()).workers(1).build().unwrap();
    let d = Daemon::new(engine.clone(), DaemonConfig::default());
    let mut a = connect(&d);
    let mut b = connect(&d);
    a.call(1, "tools/register", json!({"namespace": "shop", "description": "The shop's stock.", "tools": [{"name": "stock", "inputSchema": {}}]}), no_answer).await;
    let text = |r: Value| r["result"]["prompt"].as_str().expect("a prompt string").to_string();
    let a_alone = text(a.call(2, "prompt", json!({}), no_answer).await);
    let a_session = text(a.call(3, "prompt", json!({"session": true}), no_answer).await);
    let b_alone = text(b.call(2, "prompt", Value::Null, no_answer).await);
    assert!(a_alone.contains("\n- shop (1 tool): The shop's stock. — stock\n"), "{a_alone}");
    assert_eq!(b_alone, engine.prompt(false));
    assert_eq!(a_alone.replace("- shop (1 tool): The shop's stock. — stock\n", ""), b_alone);
    assert!(a_alone.contains("Each program starts from nothing"), "{a_alone}");
    assert!(a_session.contains("State persists between your programs"), "{a_session}");
    let r = a.call(4, "prompt", json!({"session": "yes"}), no_answer).await;
    assert_eq!(r["error"]["code"], -32602);
    assert_eq!(r["error"]["message"], "session must be true (programs run in a session) or false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_work_and_cancels_what_outlives_the_grace_period() {
    let engine = crate::harness::builder().workers(2).build().unwrap();
    let d = Daemon::new(
        engine,
        // The second program's 500 ms fit in the grace period; the loop never ends.
        DaemonConfig { shutdown_grace: Duration::from_secs(2), ..Default::default() },
    );
    let mut c = connect(&d);
    c.send(request(1, "code/execute", json!({"code": "while (true) {}"}))).await;
    c.send(request(
        2,
        "code/execute",
        json!({"code": "await new Promise(r => setTimeout(r, 500)); return 'done'"}),
    ))
    .await;
    running(&mut c, 2).await;
    let started = std::time::Instant::now();
    d.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown waits for the grace period only");
    let mut results = [c.recv().await, c.recv().await];
    results.sort_by_key(|r| r["id"].as_u64());
    assert_eq!(results[0]["result"]["error"]["kind"], "cancelled");
    assert_eq!(results[1]["result"]["value"], "done");
    let r = c.call(3, "code/execute", json!({"code": "return 1"}), no_answer).await;
    assert_eq!(r["error"], json!({"code": -32004, "message": "the daemon is shutting down"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_or_stringly_answer_to_tools_call_settles_that_call_at_once() {
    // Long time-outs: a call that waited for them would end the test with `timeout`.
    let engine = crate::harness::builder().registry(codemode::demo::registry()).workers(1).build().unwrap();
    let d = Daemon::new(
        engine,
        DaemonConfig { tool_call_timeout: Duration::from_secs(30), ..Default::default() },
    );
    let mut c = connect(&d);
    c.call(
        1,
        "tools/register",
        json!({"namespace": "x", "tools": [{"name": "a", "inputSchema": {"type": "object"}}]}),
        no_answer,
    )
    .await;
    c.send(request(
        2,
        "code/execute",
        json!({"code": "const out = [];\ntry { await x.a({}); } catch (e) { out.push(`${e.code}: ${e.message}`); }\nout.push(await x.a({}));\nreturn out;"}),
    ))
    .await;
    let mut calls = 0;
    let result = loop {
        let m = c.recv().await;
        if m["method"] == "tools/call" {
            calls += 1;
            let id = m["id"].as_u64().unwrap();
            if calls == 1 {
                // Not JSON, but it names its call.
                c.send_raw(&format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{oops")).await;
            } else {
                // The id echoed as a string.
                c.send(json!({"jsonrpc": "2.0", "id": id.to_string(), "result": "second"})).await;
            }
        } else if m["id"] == json!(2) && m.get("method").is_none() {
            break m;
        }
    };
    let first = result["result"]["value"][0].as_str().unwrap_or_else(|| panic!("{result}"));
    assert!(first.starts_with("invalid_response: x.a: the client's answer is not JSON: "), "{first}");
    assert_eq!(result["result"]["value"][1], json!("second"), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_bomb_is_refused_at_registration_and_others_are_served() {
    let d = daemon();
    let mut c = connect(&d);
    let mut defs = serde_json::Map::new();
    for i in 0..100_000 {
        defs.insert(format!("d{i}"), json!({"$ref": format!("#/$defs/d{}", i + 1)}));
    }
    defs.insert("d100000".into(), json!({"type": "string"}));
    let schema = json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs});
    let r = c
        .call(
            1,
            "tools/register",
            json!({"namespace": "bomb", "tools": [{"name": "t", "inputSchema": schema}]}),
            no_answer,
        )
        .await;
    let message = r["error"]["message"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(message.contains("the schema holds more than 10000 `$ref`s (passed at /"), "{message}");
    let r = c.call(2, "code/execute", json!({"code": "return 6 * 7"}), no_answer).await;
    assert_eq!(r["result"]["value"], json!(42));
}

/// The reading half a never-reading client holds (and never reads).
type Unread = tokio::io::ReadHalf<DuplexStream>;

/// Starts a connection whose client sends `count` copies of `code` and never reads; returns the
/// connection's task, the sender's (which ends once everything was sent) and the unread half.
fn never_reading_client(
    d: &Daemon,
    count: u64,
    code: &'static str,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>, Unread) {
    let (ours, theirs) = tokio::io::duplex(64 << 10);
    let (r, w) = tokio::io::split(theirs);
    let served = {
        let d = d.clone();
        tokio::spawn(async move { d.serve_connection(r, w).await })
    };
    let (unread, mut writer) = tokio::io::split(ours);
    let sender = tokio::spawn(async move {
        for id in 0..count {
            let line = format!("{}\n", request(id, "code/execute", json!({ "code": code })));
            if writer.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
        // Keep the sending half open: the client is still there, only not reading.
        std::future::pending::<()>().await;
    });
    (served, sender, unread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_not_read_from_until_it_reads() {
    let engine = crate::harness::builder().registry(codemode::demo::registry()).workers(2).build().unwrap();
    let config = DaemonConfig { max_unsent_bytes: 1 << 20, max_in_flight: 4, ..Default::default() };
    let d = Daemon::new(engine, config);
    // 2,000 requests for 100 KB results, at most 4 running: once 1 MiB is unread the daemon
    // stops reading, the request pipe fills, and the connection holds at the bound.
    let (served, sender, _unread) = never_reading_client(&d, 2000, "return 'x'.repeat(100000)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!served.is_finished(), "the connection is held, not closed");
    drop(sender);
    let mut c = connect(&d);
    let r = c.call(1, "code/execute", json!({"code": "return 6 * 7"}), no_answer).await;
    assert_eq!(r["result"]["value"], json!(42));
    let stats = c.call(2, "stats", json!({}), no_answer).await;
    assert_eq!(
        (&stats["result"]["running"], &stats["result"]["closedUnread"]),
        (&json!(0), &json!(0)),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_left_with_twice_the_bound_unread_is_disconnected() {
    let engine = crate::harness::builder().registry(codemode::demo::registry()).workers(2).build().unwrap();
    let d = Daemon::new(engine, DaemonConfig { max_unsent_bytes: 1 << 20, ..Default::default() });
    // Every request is read before any answer is ready, so their answers (20 MB) pass twice
    // the bound: the daemon closes the connection by itself and logs why.
    let code = "await new Promise((r) => setTimeout(r, 300)); return 'x'.repeat(100000)";
    let (served, _sender, _unread) = never_reading_client(&d, 200, code);
    tokio::time::timeout(Duration::from_secs(20), served).await.expect("the connection is closed").unwrap();
    let mut c = connect(&d);
    let stats = c.call(1, "stats", json!({}), no_answer).await;
    assert_eq!(stats["result"]["closedUnread"], json!(1), "{stats}");
    let r = c.call(2, "code/execute", json!({"code": "return 6 * 7"}), no_answer).await;
    assert_eq!(r["result"]["value"], json!(42));
}

#[tokio::test]
async fn execute_estimates_tokens_unless_asked_for_the_exact_count() {
    let engine = crate::harness::builder().registry(codemode::demo::registry()).workers(1).build().unwrap();
    let d = Daemon::new(engine, DaemonConfig::default());
    let mut c = connect(&d);
    let code = "return 'hello world'";
    let r = c.call(1, "code/execute", json!({"code": code}), no_answer).await;
    assert_eq!(r["result"]["stats"]["tokens"], json!({"tool_results": 0, "returned": 4, "estimated": true}));
    let r = c.call(2, "code/execute", json!({"code": code, "tokens": true}), no_answer).await;
    assert_eq!(r["result"]["stats"]["tokens"], json!({"tool_results": 0, "returned": 4, "estimated": false}));
}
