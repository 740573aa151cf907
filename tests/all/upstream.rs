//! Real MCP servers from the npm registry as tool sources.

use std::time::Duration;

use codemode::mcp::{Transport, Upstream, UpstreamConfig};
use codemode::{Engine, ExecuteOptions, Registry};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::harness::{eventually, in_memory_session, npm_script, type_checker};

fn config(namespace: &str, package: &str, args: &[&str]) -> UpstreamConfig {
    let script = npm_script(package);
    let mut all = vec![script.to_string_lossy().into_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    node(namespace, all)
}

/// A stdio server run by node. It inherits nothing of this process's environment, so it gets
/// PATH to find node by.
fn node(namespace: &str, args: Vec<String>) -> UpstreamConfig {
    let mut config = UpstreamConfig::new(namespace, "node", args);
    if let Transport::Stdio { env, .. } = &mut config.transport {
        env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_server_tools_become_a_typed_namespace() {
    let mut cfg = config("memory", "@modelcontextprotocol/server-memory", &[]);
    let file = std::env::temp_dir().join(format!("codemode-memory-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let Transport::Stdio { env, .. } = &mut cfg.transport else { unreachable!() };
    env.insert("MEMORY_FILE_PATH".into(), file.to_string_lossy().into_owned());
    let mut registry = Registry::new();
    let _upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    assert_eq!(registry.list()[0].tools, 9);
    assert_eq!(registry.list()[0].description, "memory-server (MCP server)");
    let decls = registry.describe(&["memory.create_entities"]).unwrap();
    assert!(
        decls.contains("function create_entities(args: CreateEntitiesInput): Promise<CreateEntitiesOutput>;"),
        "{decls}"
    );

    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    let o = engine
        .execute(
            r#"
            await memory.create_entities({ entities: [
              { name: "Ada", entityType: "person", observations: ["wrote the first program"] },
              { name: "Engine", entityType: "machine", observations: [] },
            ] });
            await memory.create_relations({ relations: [{ from: "Ada", to: "Engine", relationType: "programmed" }] });
            const graph = await memory.read_graph({});
            const found = await memory.search_nodes({ query: "program" });
            return { entities: graph.entities.map((e) => e.name), relations: graph.relations.length,
                     found: found.entities.map((e) => e.name) };
            "#,
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(o.error, None);
    assert_eq!(o.value, json!({ "entities": ["Ada", "Engine"], "relations": 1, "found": ["Ada"] }));
    assert_eq!(o.stats.tool_calls, 4);
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_server_errors_crash_and_recovery() {
    let mut cfg = config("everything", "@modelcontextprotocol/server-everything", &["stdio"]);
    cfg.tool_timeouts.insert("trigger-long-running-operation".into(), Duration::from_millis(1000));
    let mut registry = Registry::new();
    let upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    // The server's whole instructions reach the agent through `describe`; the prompt's index
    // shows their first line of prose, not the markdown title.
    let declared = registry.describe(&["everything"]).unwrap();
    assert!(declared.contains(" * ## Operational Patterns\n"), "{declared}");
    let summary = registry.list()[0].description.lines().next().unwrap().to_string();
    assert_eq!(
        summary,
        "Everything Reference Server (MCP server): Audience: These instructions are written for an LLM or \
         autonomous agent integrating with the Everything MCP Server."
    );
    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    let run = |code: &'static str| {
        let engine = engine.clone();
        async move { engine.execute(code, ExecuteOptions::default()).await }
    };
    let o =
        run(r#"return [await everything.echo({ message: "hi" }), await everything.getSum({ a: 2, b: 3 })]"#)
            .await;
    assert_eq!(o.error, None);
    assert_eq!(o.value, json!(["Echo: hi", "The sum of 2 and 3 is 5."]));
    // Schema violations never reach the server.
    let o = run(r#"try { await everything.getSum({ a: "2", b: 3 }); } catch (e) { return e.message }"#).await;
    assert_eq!(
        o.value,
        json!("everything.getSum: invalid arguments at args.a: \"2\" is not of type \"number\"")
    );

    // A per-tool timeout ends a slow call; the server keeps serving.
    let o = run(r#"try { await everything.triggerLongRunningOperation({ duration: 3, steps: 3 }); } catch (e) { return `${e.code}: ${e.message}` }"#).await;
    assert_eq!(o.value, json!("timeout: everything.triggerLongRunningOperation: the upstream server did not answer within 1000 ms"));

    // Kill the server during a call: that call fails (it may have been acted on), and the next
    // execution works again.
    let calls = upstream.status().await.calls;
    let slow = tokio::spawn(run(
        r#"try { await everything.triggerLongRunningOperation({ duration: 0.9, steps: 3 }); return "no error" } catch (e) { return `${e.code}: ${e.message}` }"#,
    ));
    let mut started = false;
    for _ in 0..500 {
        if upstream.status().await.calls > calls {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started, "the slow call never started");
    let pid = upstream.pid().await.expect("running");
    assert!(std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    let o = slow.await.unwrap();
    let seen = o.value.as_str().unwrap().to_string();
    assert!(seen.starts_with("upstream_disconnected: everything.triggerLongRunningOperation: "), "{seen}");
    let o = run(r#"return await everything.echo({ message: "back" })"#).await;
    assert_eq!(o.value, json!("Echo: back"), "{:?}", o.error);
    assert_ne!(upstream.pid().await, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tools_list_changed_notification_updates_the_namespace() {
    let dir = crate::harness::npm_dir();
    let script = dir.join("dynamic-server.mjs").to_string_lossy().into_owned();
    let mut registry = Registry::new();
    let upstream = Upstream::register(node("dynamic", vec![script]), &mut registry).await.unwrap();
    assert_eq!(registry.list()[0].description, "dynamic (MCP server): Tools that appear while it runs.");
    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    upstream.follow(&engine);
    let o = engine
        .execute(r#"return await dynamic.add_tool({ name: "late-comer" })"#, ExecuteOptions::default())
        .await;
    assert_eq!(o.value, json!("added late-comer"), "{:?}", o.error);
    // The program that caused the change keeps the tools it started with; the next ones see it.
    eventually(Duration::from_secs(10), "lateComer registered", || {
        engine.registry().get("dynamic", "lateComer").is_some()
    })
    .await;
    let decls = engine.registry().describe(&["dynamic"]).unwrap();
    assert!(
        decls.contains("function lateComer(args?: LateComerInput): Promise<LateComerOutput>;"),
        "{decls}"
    );
    let o = engine.execute("return await dynamic.lateComer({})", ExecuteOptions::default()).await;
    assert_eq!(o.value, json!("I am late-comer"), "{:?}", o.error);
    let status = upstream.status().await;
    assert_eq!((status.tools, status.calls, status.failed_calls, status.connected), (2, 2, 0, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_over_streamable_http_with_headers_and_a_server_restart() {
    let script = npm_script("@modelcontextprotocol/server-everything");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = || {
        let child = tokio::process::Command::new("node")
            .arg(&script)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        async move {
            eventually(Duration::from_secs(10), "the HTTP server listens", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .await;
            child
        }
    };
    let mut server = start().await;
    let mut cfg = UpstreamConfig::http("web", format!("http://user:secret@127.0.0.1:{port}/mcp?key=hidden"));
    let Transport::Http { headers, .. } = &mut cfg.transport else { unreachable!() };
    headers.insert("X-Codemode-Test".into(), "yes".into());
    let mut registry = Registry::new();
    let upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    assert!(registry.get("web", "getSum").is_some());
    // Read off the listing's event stream, as on stdio off the pipe.
    assert!(registry.get("web", "simulate-research-query").is_none());
    assert_eq!(upstream.status().await.withheld, [TASK_ONLY]);
    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    upstream.follow(&engine);
    let run = |code: &'static str| {
        let engine = engine.clone();
        async move { engine.execute(code, ExecuteOptions::default()).await }
    };
    let o = run(r#"return [await web.echo({ message: "hi" }), (await web.getStructuredContent({ location: "New York" })).temperature]"#).await;
    assert_eq!(o.value, json!(["Echo: hi", 33]), "{:?}", o.error);
    let status = upstream.status().await;
    assert_eq!(status.transport, "http");
    // Credentials and the query never show in status or errors.
    assert_eq!(status.target, format!("http://127.0.0.1:{port}/mcp"));
    assert!(status.connected);

    // The server goes away: the program sees an error; once it is back, calls work again.
    server.kill().await.unwrap();
    let o = run(r#"try { await web.echo({ message: "x" }); return "no error" } catch (e) { return e.code }"#)
        .await;
    let code = o.value.as_str().unwrap().to_string();
    assert!(["upstream_disconnected", "upstream_error"].contains(&code.as_str()), "{code}");
    let _server = start().await;
    let mut last = json!(null);
    for _ in 0..100 {
        let o =
            run(r#"try { return await web.echo({ message: "back" }) } catch (e) { return e.message }"#).await;
        last = o.value;
        if last == json!("Echo: back") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, json!("Echo: back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_after_an_idle_server_died_reconnects_and_goes_through() {
    let mut registry = Registry::new();
    let file = std::env::temp_dir().join(format!("codemode-idle-{}.jsonl", std::process::id()));
    let mut cfg = config("memory", "@modelcontextprotocol/server-memory", &[]);
    let Transport::Stdio { env, .. } = &mut cfg.transport else { unreachable!() };
    env.insert("MEMORY_FILE_PATH".into(), file.display().to_string());
    let upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    let pid = upstream.pid().await.expect("a running server");
    // The server dies while nothing is being asked of it.
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = engine.execute("return (await memory.read_graph({})).entities", ExecuteOptions::default()).await;
    assert_eq!((o.error.as_ref().map(|e| e.message.clone()), o.value), (None, json!([])));
    let status = upstream.status().await;
    assert_eq!((status.reconnects, status.failed_calls), (1, 0), "{status:?}");
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untyped_tools_are_declared_as_the_mcp_mapping_until_their_results_teach_a_type() {
    let state =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("learned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut cfg = config("everything", "@modelcontextprotocol/server-everything", &["stdio"]);
    cfg.state_dir = Some(state.clone());
    let mut registry = Registry::new();
    let upstream = Upstream::register(cfg.clone(), &mut registry).await.unwrap();
    let declared = registry.describe(&["everything.echo"]).unwrap();
    assert!(
        declared.contains(
            "   * The server declares no output schema: one text block is a `string`, several are\n"
        ) && declared.contains("  type EchoOutput = codemode.ToolResult;\n"),
        "{declared}"
    );
    let engine = Engine::builder()
        .registry(registry)
        .type_checker(type_checker("learned"))
        .workers(1)
        .build()
        .unwrap();
    upstream.follow(&engine);
    assert!(engine
        .prompt(false)
        .contains("- A tool whose server declares no output schema returns `codemode.ToolResult`"));
    let shout = r#"return (await everything.echo({ message: "hi" })).toUpperCase()"#;
    let o = engine.execute(shout, ExecuteOptions::default()).await;
    let e = o.error.expect("a type error");
    assert_eq!((e.kind, o.stats.tool_calls), (codemode::ErrorKind::TypeError, 0));
    assert!(
        e.diagnostics[0].message.contains("Property 'toUpperCase' does not exist on type 'ToolResult'"),
        "{e:?}"
    );

    let o =
        engine.execute(r#"return await everything.echo({ message: "hi" })"#, ExecuteOptions::default()).await;
    assert_eq!(o.value, json!("Echo: hi"));
    let learned = |engine: &Engine| engine.registry().describe(&["everything.echo"]).unwrap();
    eventually(Duration::from_secs(10), "the learned type is declared", || {
        learned(&engine).contains("  type EchoOutput = string;\n")
    })
    .await;
    assert!(learned(&engine).contains("   * @observed 1 result\n"), "{}", learned(&engine));
    let o = engine.execute(shout, ExecuteOptions::default()).await;
    assert_eq!((o.error.map(|e| e.message), o.value), (None, json!("ECHO: HI")));

    // A JSON text is said to be one, with what parsing it gives.
    let o = engine.execute("return await everything.getEnv({})", ExecuteOptions::default()).await;
    assert!(o.value.as_str().is_some_and(|t| t.starts_with('{')), "{:?}", o.value);
    eventually(Duration::from_secs(10), "getEnv is learned", || {
        engine.registry().describe(&["everything.getEnv"]).unwrap().contains("`JSON.parse` of it gives `{ ")
    })
    .await;

    // The shapes are kept in the state directory, and the next run starts from them.
    let file = state.join("shapes/everything.json");
    eventually(Duration::from_secs(10), "the shapes file is written", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"get-env\""))
    })
    .await;
    drop(engine);
    drop(upstream);
    let mut registry = Registry::new();
    let _again = Upstream::register(cfg.clone(), &mut registry).await.unwrap();
    let declared = registry.describe(&["everything.echo"]).unwrap();
    assert!(declared.contains("  type EchoOutput = string;\n"), "{declared}");

    // A file that is not ours to read is reported, left as it was, and learning goes on.
    std::fs::write(&file, "[1, 2").unwrap();
    let mut registry = Registry::new();
    let broken = Upstream::register(cfg, &mut registry).await.unwrap();
    let problem = broken.status().await.shapes_problem.expect("the bad file is reported");
    assert!(problem.starts_with(&format!("{}: not a learned-shapes file", file.display())), "{problem}");
    assert!(registry
        .describe(&["everything.echo"])
        .unwrap()
        .contains("type EchoOutput = codemode.ToolResult;"));
    drop(broken);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "[1, 2");
    let _ = std::fs::remove_dir_all(&state);
}

/// server-everything over stdio, and an engine with its namespace.
async fn everything() -> (std::sync::Arc<Upstream>, Engine) {
    let cfg = config("everything", "@modelcontextprotocol/server-everything", &["stdio"]);
    let mut registry = Registry::new();
    let upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    (upstream, Engine::builder().registry(registry).workers(1).build().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_log_messages_of_a_call_reach_its_execution_logs() {
    let (_upstream, engine) = everything().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let options = ExecuteOptions {
        on_log: Some(std::sync::Arc::new(move |line: &codemode::LogLine| {
            sink.lock().unwrap().push(line.message.clone());
        })),
        ..Default::default()
    };
    let o = engine
        .execute(
            r#"console.log("before");
            const done = await everything.triggerLongRunningOperation({ duration: 0.3, steps: 3 });
            console.log("after");
            return done"#,
            options,
        )
        .await;
    assert_eq!(o.error, None);
    let progress = [
        "before",
        "everything.triggerLongRunningOperation: progress 1/3",
        "everything.triggerLongRunningOperation: progress 2/3",
        "everything.triggerLongRunningOperation: progress 3/3",
        "after",
    ];
    assert_eq!(crate::harness::logs(&o), progress);
    assert_eq!(o.logs[1].level, codemode::LogLevel::Info);
    assert_eq!(
        *seen.lock().unwrap(),
        progress,
        "the log sink (the daemon's code/log) sees them as they come"
    );

    // The server's first simulated log message goes out while the call that turned it on runs.
    let o = engine.execute("await everything.toggleSimulatedLogging({})", ExecuteOptions::default()).await;
    assert_eq!(o.error, None);
    let lines = crate::harness::logs(&o);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let message = lines[0].strip_prefix("everything.toggleSimulatedLogging: ").unwrap();
    assert!(message.ends_with("message") || message.ends_with("level-message"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_follows_a_resource_link_with_read_resource() {
    let (_upstream, engine) = everything().await;
    let o = engine
        .execute(
            r#"
            const blocks = await everything.getResourceLinks({ count: 2 });
            const link = blocks.find((b) => b.type === "resource_link" && b.name === "Text Resource 2");
            const [contents] = await codemode.readResource("everything", link.uri);
            return { uri: contents.uri, mimeType: contents.mimeType, text: contents.text.split(" created at ")[0] };
            "#,
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(o.error, None);
    assert_eq!(
        o.value,
        json!({ "uri": "demo://resource/dynamic/text/2", "mimeType": "text/plain",
                "text": "Resource 2: This is a plaintext resource" })
    );
    assert_eq!(o.stats.tool_calls, 2, "reading a resource is a call to the server");
    let o = engine
        .execute(
            r#"const e = await codemode.readResource("nowhere", "x://y").catch((e) => e);
               const m = await codemode.readResource("everything", "demo://nothing/here").catch((e) => e);
               return [e.code, e.message, m.code, m.tool]"#,
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(o.error, None);
    assert_eq!(
        o.value,
        json!([
            "unknown_server",
            "codemode.readResource: \"nowhere\" is not a server with resources (servers: everything)",
            "upstream_error",
            "codemode.readResource"
        ])
    );
}

const TASK_ONLY: &str = "simulate-research-query: callable only as an MCP task (execution.taskSupport is \
     \"required\"), which codemode does not speak yet";

/// A streamable HTTP server that answers with one JSON body, not an event stream: rmcp has
/// parsed the body (dropping `execution`) before codemode sees it, so the listing is asked for
/// once more, raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_server_answering_json_has_its_task_only_tools_left_out_too() {
    use axum::response::IntoResponse;
    let lists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&lists);
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: String| {
            let lists = std::sync::Arc::clone(&counted);
            async move {
                let request: Value = serde_json::from_str(&body).unwrap();
                let result = match request["method"].as_str() {
                    Some("initialize") => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                        "serverInfo": {"name": "json-only", "version": "1"}}),
                    Some("tools/list") => {
                        lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        json!({"tools": [{"name": "quick", "inputSchema": {"type": "object"}},
                            {"name": "slow", "inputSchema": {"type": "object"}, "execution": {"taskSupport": "required"}}]})
                    }
                    _ => return axum::http::StatusCode::ACCEPTED.into_response(),
                };
                let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
                ([(axum::http::header::CONTENT_TYPE, "application/json")], answer.to_string()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut registry = Registry::new();
    let upstream = Upstream::register(
        UpstreamConfig::http("json", format!("http://127.0.0.1:{port}/mcp")),
        &mut registry,
    )
    .await
    .unwrap();
    assert!(registry.get("json", "quick").is_some());
    assert!(registry.get("json", "slow").is_none());
    assert_eq!(
        upstream.status().await.withheld,
        ["slow: callable only as an MCP task (execution.taskSupport is \"required\"), which codemode does not speak yet"]
    );
    assert_eq!(lists.load(std::sync::atomic::Ordering::SeqCst), 2, "rmcp's listing and the raw one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_callable_only_as_a_task_is_left_out_and_reported() {
    let cfg = config("everything", "@modelcontextprotocol/server-everything", &["stdio"]);
    let mut registry = Registry::new();
    let upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    assert!(registry.get("everything", "simulate-research-query").is_none());
    assert!(registry.get("everything", "echo").is_some());
    assert_eq!(upstream.status().await.withheld, [TASK_ONLY]);
    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    let o = engine
        .execute("return await everything.simulateResearchQuery({ topic: 'x' })", ExecuteOptions::default())
        .await;
    assert!(o
        .error
        .unwrap()
        .message
        .starts_with("everything.simulateResearchQuery is not a tool of everything"));
}

/// Sampling, elicitation and roots requests an upstream server sends while its tool runs reach
/// the `codemode mcp` client whose program called the tool, and the client's answers reach the
/// server. A client that does not take them is never asked: the server gets an error saying
/// why, and the program sees it as the tool's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_elicitation_and_roots_requests_reach_the_mcp_client() {
    let mut cfg = config("everything", "@modelcontextprotocol/server-everything", &["stdio"]);
    cfg.forward_client_requests = codemode::mcp::ClientFeatures::ALL;
    let mut registry = Registry::new();
    let _upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    for tool in ["triggerSamplingRequest", "triggerElicitationRequest", "getRootsList"] {
        assert!(registry.get("everything", tool).is_some(), "{tool} is listed once the server is told");
    }
    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    let code = r#"const sampled = await everything.triggerSamplingRequest({ prompt: "a haiku", maxTokens: 20 });
        const elicited = await everything.triggerElicitationRequest({});
        const roots = await everything.getRootsList({});
        return [JSON.parse(sampled.slice(sampled.indexOf("{"))).content.text, elicited[1], roots.split("\n")[2]]"#;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "execute_code", "arguments": {"code": code}}});
    let capable = json!({"sampling": {}, "elicitation": {}, "roots": {}});
    let (mut lines, mut w) = in_memory_session(codemode::mcp::McpServer::new(engine.clone()), capable).await;
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let mut asked = Vec::new();
    let answer = loop {
        let m: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        if m.get("method").is_none() && m["id"] == json!(1) {
            break m;
        }
        let (Some(method), Some(id)) = (m["method"].as_str(), m.get("id")) else { continue };
        // The progress token is this connection's own (the request's id), not the upstream's.
        assert_eq!(m["params"]["_meta"]["progressToken"], *id, "{m}");
        let result = match method {
            "sampling/createMessage" => {
                assert_eq!(
                    m["params"]["messages"][0]["content"]["text"],
                    "Resource trigger-sampling-request context: a haiku"
                );
                assert_eq!(m["params"]["maxTokens"], 20);
                json!({"role": "assistant", "content": {"type": "text", "text": "an old silent pond"},
                    "model": "test-model", "stopReason": "endTurn"})
            }
            "elicitation/create" => json!({"action": "accept", "content": {"name": "Ada"}}),
            "roots/list" => json!({"roots": [{"uri": "file:///work/project", "name": "project"}]}),
            other => panic!("unexpected request {other}: {m}"),
        };
        asked.push(method.to_string());
        w.write_all(format!("{}\n", json!({"jsonrpc": "2.0", "id": id, "result": result})).as_bytes())
            .await
            .unwrap();
    };
    assert_eq!(asked, ["sampling/createMessage", "elicitation/create", "roots/list"], "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["value"],
        json!(["an old silent pond", "User inputs:\n- Name: Ada", "1. project"]),
        "{answer}"
    );

    let (mut lines, mut w) = in_memory_session(codemode::mcp::McpServer::new(engine), json!({})).await;
    let code =
        r#"try { await everything.triggerSamplingRequest({ prompt: "x" }) } catch (e) { return e.message }"#;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "execute_code", "arguments": {"code": code}}});
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let answer = loop {
        let m: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(
            m.get("method").is_none() || m.get("id").is_none(),
            "a client without sampling was asked: {m}"
        );
        if m["id"] == json!(2) {
            break m;
        }
    };
    let message = answer["result"]["structuredContent"]["value"].as_str().unwrap().to_string();
    assert!(
        message.contains("codemode cannot forward sampling/createMessage: no call to this server is running for a client that takes it"),
        "{message}"
    );
}

/// `codemode mcp` on stdio tells its upstream servers what its one client takes, once the
/// client has initialized: a server then shows only the tools that client can use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_servers_show_the_tools_the_one_mcp_client_can_use() {
    let mut cfg = config("everything", "@modelcontextprotocol/server-everything", &["stdio"]);
    cfg.forward_client_requests = codemode::mcp::ClientFeatures::ALL;
    let mut registry = Registry::new();
    let upstream = Upstream::register(cfg, &mut registry).await.unwrap();
    let engine = Engine::builder().registry(registry).workers(1).build().unwrap();
    upstream.follow(&engine);
    let shown = |engine: &Engine| {
        ["triggerSamplingRequest", "triggerElicitationRequest", "getRootsList"]
            .into_iter()
            .filter(|t| engine.registry().get("everything", t).is_some())
            .collect::<Vec<_>>()
    };
    assert_eq!(shown(&engine), ["triggerSamplingRequest", "triggerElicitationRequest", "getRootsList"]);
    let server = codemode::mcp::McpServer::new(engine.clone()).upstreams(vec![upstream.clone()]);
    let (_lines, _w) = in_memory_session(server, json!({"sampling": {}})).await;
    eventually(Duration::from_secs(10), "the server lists for a client that takes sampling only", || {
        shown(&engine) == ["triggerSamplingRequest"]
    })
    .await;
    assert_eq!(upstream.status().await.reconnects, 1);
}
