//! The MCP server: three tools in the spirit of Anthropic's and Cloudflare's code mode.
//! * `search_tools` — rank the engine's tools for a query, at a detail level;
//! * `describe_tools` — TypeScript declarations of the tools (or namespaces) named;
//! * `execute_code` — run a program; its description carries the prompt helper's text (how to
//!   write a program, the limits, the namespace index). The outcome comes back as text and as
//!   `structuredContent`, its value already cut structurally to the result cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Implementation,
    InputRequiredResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    RequestParamsMeta, ServerCapabilities, ServerConfig, Tool as McpTool,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RoleServer};
use rmcp::ServerHandler;
use serde_json::{json, Map, Value};
use tracing::Instrument;

use crate::bridge::ClientRequests;
use crate::engine::{CancelToken, Engine, ExecuteOptions, LogSink};
use crate::outcome::{LogLine, Outcome};
use crate::params;
use crate::registry::discovery::{names_arg, search_args, SearchHit};

use super::client::{ClientFeatures, Upstream};
use super::sessions::{Sessions, SessionsError};
use super::stdio::BoundedLines;

/// Bounds of the MCP server's connections and sessions.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Longest accepted message line on stdio (default 16 MiB); a longer one gets an error
    /// response and the next line is read.
    pub max_line_bytes: usize,
    /// Bytes of responses the stdio client may leave unread (default 32 MiB). Past it no
    /// request is read until it reads; past twice it the connection is closed and its
    /// programs cancelled.
    pub max_unsent_bytes: usize,
    /// Requests of the stdio client running at once (default 1,024); further ones wait unread.
    /// Over HTTP, requests and streams one session may have open at once; one more is refused.
    pub max_in_flight: usize,
    /// HTTP sessions open at once (default 64); a new one past it is refused with 503.
    pub max_sessions: usize,
    /// How long an HTTP session with no request or stream open lives (default 10 minutes).
    pub session_idle: Duration,
    /// Whether each client's programs run in an engine session of its own (default true):
    /// what one program declares, the next sees, and `codemode.store` keeps values. A call
    /// may name another session of the client's (`session`); with this off, only such calls
    /// run in one.
    pub sessions: bool,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            max_line_bytes: 16 << 20,
            max_unsent_bytes: 32 << 20,
            max_in_flight: 1024,
            max_sessions: 64,
            session_idle: Duration::from_secs(600),
            sessions: true,
        }
    }
}

/// Serves an [`Engine`]'s tools to MCP clients. Cheap to clone.
#[derive(Clone)]
pub struct McpServer {
    engine: Engine,
    config: Arc<McpConfig>,
    /// Programs of this client (stdio) or session (HTTP) in the engine at once: as many as
    /// the pool has threads, so one client's burst does not queue ahead of everyone else's.
    slots: Arc<tokio::sync::Semaphore>,
    /// Upstream servers to tell what this server's one client takes (see [`McpServer::upstreams`]).
    upstreams: Arc<[Arc<Upstream>]>,
    /// The engine sessions of this client's programs.
    sessions: Arc<ClientSessions>,
    /// Log lines of executions paused while their client is asked in a later round, by
    /// approval id: the result that ends the execution carries them.
    held_logs: Arc<Mutex<HashMap<String, Vec<LogLine>>>>,
}

/// The engine sessions one MCP client's programs ran in: they end when the client goes (the
/// last clone of its handler is dropped).
struct ClientSessions {
    engine: Engine,
    /// Unique per client: the engine's session names are `PREFIX/NAME`.
    prefix: String,
    opened: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl ClientSessions {
    fn new(engine: &Engine) -> Self {
        static CLIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ClientSessions { engine: engine.clone(), prefix: format!("mcp/{n}"), opened: Default::default() }
    }

    /// The engine's name of the client's session `name`, remembered so it ends with the client.
    fn key(&self, name: &str) -> String {
        let key = format!("{}/{name}", self.prefix);
        self.opened.lock().expect("sessions lock").insert(key.clone());
        key
    }
}

impl Drop for ClientSessions {
    fn drop(&mut self) {
        for key in std::mem::take(&mut *self.opened.lock().expect("sessions lock")) {
            self.engine.close_session(&key);
        }
    }
}

/// The session a call runs in when it names none.
const DEFAULT_SESSION: &str = "default";

impl McpServer {
    /// A server for `engine` (its registry and limits), with the default bounds.
    pub fn new(engine: Engine) -> Self {
        McpServer::with_config(engine, McpConfig::default())
    }

    /// A server for `engine` with these bounds.
    pub fn with_config(engine: Engine, config: McpConfig) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(engine.workers()));
        let sessions = Arc::new(ClientSessions::new(&engine));
        McpServer {
            engine,
            config: Arc::new(config),
            slots,
            upstreams: Arc::new([]),
            sessions,
            held_logs: Arc::default(),
        }
    }

    /// The upstream servers whose tools it serves, to be told which of sampling, elicitation
    /// and roots requests its client takes once the client has initialized, so that a server
    /// shows only the tools the client can use ([`Upstream::advertise`]). Only for a server of
    /// one client ([`serve_lines`](Self::serve_lines), [`serve_stdio`](Self::serve_stdio)):
    /// over HTTP every client shares the upstream connections.
    pub fn upstreams(mut self, upstreams: Vec<Arc<Upstream>>) -> Self {
        self.upstreams = upstreams.into();
        self
    }

    /// The same server for another client, with its own share of the pool.
    fn for_another_client(&self) -> Self {
        McpServer::with_config(self.engine.clone(), McpConfig::clone(&self.config))
    }

    /// Serves one client over stdin and stdout until it disconnects.
    pub async fn serve_stdio(self) -> std::io::Result<()> {
        let (input, output) = crate::flow::stdio();
        self.serve_lines(input, output).await
    }

    /// Serves one client over a reader and a writer of newline-delimited JSON-RPC (what
    /// [`serve_stdio`](Self::serve_stdio) does with stdin and stdout), until it disconnects.
    pub async fn serve_lines<R, W>(mut self, reader: R, writer: W) -> std::io::Result<()>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use rmcp::ServiceExt;
        // Another client than any other clone of this server serves: sessions of its own.
        self.sessions = Arc::new(ClientSessions::new(&self.engine));
        let transport = BoundedLines::new(reader, writer, &self.config);
        let running = self.serve(transport).await.map_err(std::io::Error::other)?;
        running.waiting().await.map_err(std::io::Error::other)?;
        Ok(())
    }

    /// Serves streamable HTTP at `http://ADDR/mcp` until `shutdown` completes. Sessions are
    /// kept per client, at most `max_sessions` at once, each closed after `session_idle`
    /// without a request; `GET /` says what the server is and reports the sessions
    /// ([`SessionStats`](super::SessionStats)). Requests must name a loopback `Host`, and a browser `Origin` must be
    /// this server's own (`http://127.0.0.1:PORT` or `http://localhost:PORT`): a web page
    /// cannot reach it through DNS rebinding. `addr` must be a loopback address.
    pub async fn serve_http(
        self,
        addr: std::net::SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        require_loopback(addr)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        self.serve_http_on(listener, shutdown).await
    }

    /// [`serve_http`](Self::serve_http) on a listener already bound (to a loopback address).
    pub async fn serve_http_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
        let addr = listener.local_addr()?;
        require_loopback(addr)?;
        let port = addr.port();
        let config = StreamableHttpServerConfig::default()
            .with_allowed_origins([format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")])
            .enforce_origin_validation();
        let sessions = Arc::new(Sessions::new(
            self.config.max_sessions,
            self.config.session_idle,
            self.config.max_in_flight,
        ));
        let expiry = tokio::spawn(Arc::clone(&sessions).expire_idle());
        let server = self;
        let service: StreamableHttpService<McpServer, Sessions> = StreamableHttpService::new(
            move || Ok(server.for_another_client()),
            Arc::clone(&sessions),
            config,
        );
        let full = Arc::clone(&sessions);
        let status = Arc::clone(&sessions);
        let router = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let full = Arc::clone(&full);
                    async move { refuse_when_full(&full, request, next).await }
                },
            ))
            .route(
                "/",
                axum::routing::get(move |headers: axum::http::HeaderMap| {
                    let status = Arc::clone(&status);
                    async move { describe_server(&status, &headers) }
                }),
            );
        tracing::info!(%addr, "serving MCP over streamable HTTP at /mcp");
        let served = axum::serve(listener, router).with_graceful_shutdown(shutdown).await;
        expiry.abort();
        served
    }

    async fn call(
        &self,
        name: &str,
        args: &Value,
        cancel: CancelToken,
        on_log: Option<LogSink>,
        client: Arc<dyn ClientRequests>,
        asking: Asking,
    ) -> Result<CallToolResponse, ErrorData> {
        let registry = self.engine.registry();
        match name {
            "search_tools" => {
                let (query, detail, limit) = search_args(args).map_err(|e| invalid(&e))?;
                let hits = registry.search(&query, detail, limit);
                let text = hits.iter().map(SearchHit::to_text).collect::<Vec<_>>().join("\n");
                let mut result = CallToolResult::structured(json!({ "hits": hits }));
                result.content = vec![ContentBlock::text(if text.is_empty() {
                    "no tool matches".to_string()
                } else {
                    text
                })];
                Ok(result.into())
            }
            "describe_tools" => {
                let names = names_arg(args).map_err(|e| invalid(&e))?;
                Ok(match registry.describe(&names) {
                    Ok(text) => {
                        let mut result = CallToolResult::structured(json!({ "declarations": text }));
                        result.content = vec![ContentBlock::text(text)];
                        result
                    }
                    Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
                }
                .into())
            }
            "execute_code" => {
                let execute: params::Execute = params::parse(args).map_err(|e| invalid(&e))?;
                let named = params::session(execute.session.as_deref(), None).map_err(|e| invalid(&e))?;
                let session = named.map(|(name, _)| name).or(self.config.sessions.then_some(DEFAULT_SESSION));
                let outcome = {
                    let _slot = self.slots.acquire().await;
                    self.engine
                        .execute(
                            &execute.code,
                            ExecuteOptions {
                                cancel: Some(cancel),
                                on_log,
                                client: Some(Arc::clone(&client)),
                                session: session.map(|name| self.sessions.key(name)),
                                ..Default::default()
                            },
                        )
                        .await
                };
                Ok(self.answer(outcome, &client, asking).await)
            }
            "resume_execution" => {
                let resume: params::Resume = params::parse(args).map_err(|e| invalid(&e))?;
                let outcome = {
                    let _slot = self.slots.acquire().await;
                    self.engine.resume(&resume.approval, resume.approve, resume.reason.as_deref()).await
                };
                match outcome {
                    Ok(outcome) => Ok(self.answer(outcome, &client, asking).await),
                    Err(e) => Ok(CallToolResult::error(vec![ContentBlock::text(e.to_string())]).into()),
                }
            }
            other => Err(ErrorData::invalid_params(format!("unknown tool {other:?}"), None)),
        }
    }
}

/// How the client of a call can be asked to decide on an approval.
#[derive(Clone, Copy, PartialEq)]
enum Asking {
    /// It takes `elicitation/create` requests while the call runs (protocols before 2026-07-28).
    Inline,
    /// It takes elicitation as input requests in the call's result, and calls again with the
    /// answers (2026-07-28's multi round-trip requests).
    Rounds,
    /// It takes no elicitation: the pause goes to the model, and `resume_execution` goes on.
    No,
}

/// Executions whose log lines are held between rounds at most.
const MAX_HELD: usize = 1024;

/// The key of the one input request an approval result carries.
const APPROVAL_INPUT: &str = "approval";

impl McpServer {
    /// The result of a call whose execution produced `outcome`: while it waits on an approval,
    /// the client is asked as it can be ([`Asking`]) and the execution continues with the
    /// answer; a client that cannot be asked gets the pause in the result.
    async fn answer(
        &self,
        mut outcome: Outcome,
        client: &Arc<dyn ClientRequests>,
        asking: Asking,
    ) -> CallToolResponse {
        loop {
            let Some(paused) = outcome.paused.clone() else { break };
            match asking {
                Asking::No => break,
                Asking::Rounds => {
                    // The lines so far wait here for the result that ends the execution.
                    let mut held = self.held_logs.lock().expect("held logs lock");
                    // A client that never calls again must not grow this without bound.
                    if held.len() >= MAX_HELD {
                        let any = held.keys().next().cloned();
                        any.map(|k| held.remove(&k));
                    }
                    held.insert(paused.approval.clone(), std::mem::take(&mut outcome.logs));
                    drop(held);
                    let request =
                        json!({ "method": "elicitation/create", "params": approval_request(&paused) });
                    let Ok(request) = serde_json::from_value::<rmcp::model::InputRequest>(request) else {
                        break;
                    };
                    let requests = [(APPROVAL_INPUT.to_string(), request)].into_iter().collect();
                    return InputRequiredResult::new(Some(requests), Some(paused.approval)).into();
                }
                Asking::Inline => {
                    let Ok(answer) = client.request("elicitation/create", approval_request(&paused)).await
                    else {
                        break;
                    };
                    outcome = self.decide(&paused.approval, &answer).await.after_logs(outcome.logs);
                }
            }
        }
        tool_result(&outcome).into()
    }

    /// Continues the execution paused on `approval` with the person's elicitation `answer`.
    async fn decide(&self, approval: &str, answer: &Value) -> Outcome {
        let content = &answer["content"];
        let (approve, reason) = match answer["action"].as_str() {
            Some("accept") => {
                (content["approve"].as_bool() == Some(true), content["reason"].as_str().map(str::to_string))
            }
            Some(action) => (false, Some(format!("the person chose {action}"))),
            None => (false, Some("the client's answer had no action".to_string())),
        };
        let resumed = {
            let _slot = self.slots.acquire().await;
            self.engine.resume(approval, approve, reason.as_deref()).await
        };
        let held = self.held_logs.lock().expect("held logs lock").remove(approval).unwrap_or_default();
        let failed = |e: crate::engine::ResumeError| {
            Outcome::failed(crate::error::ExecError::new(crate::error::ErrorKind::Internal, e.to_string()))
        };
        resumed.unwrap_or_else(failed).after_logs(held)
    }
}

/// The elicitation that asks a person about a paused call.
fn approval_request(paused: &crate::outcome::Paused) -> Value {
    json!({
        "mode": "form",
        "message": format!("The program calls {} with {}. Allow this call?", paused.tool, paused.arguments),
        "requestedSchema": {
            "type": "object",
            "properties": {
                "approve": { "type": "boolean", "title": "Approve", "description": "Let the call run." },
                "reason": { "type": "string", "title": "Reason", "description": "Told to the program when rejected." }
            },
            "required": ["approve"]
        }
    })
}

/// An execution's outcome as the result of `execute_code`: the report as structured content,
/// and the logs and the result (or the error, or the pause) as text for the model.
fn tool_result(outcome: &Outcome) -> CallToolResult {
    let mut report = outcome.to_report();
    if let Some(info) = report.get_mut("session") {
        // The client's name for it, not the engine's.
        if let Some(name) =
            info["id"].as_str().and_then(|key| key.split_once('/')).and_then(|(_, rest)| rest.split_once('/'))
        {
            info["id"] = json!(name.1);
        }
    }
    // Images and audio in the result go to the client as content blocks of their
    // own, not as base64 inside the text the model reads.
    let media = take_media(&mut report["value"]);
    let mut text = String::new();
    for line in &outcome.logs {
        text.push_str(&format!("[{}] {}\n", line.level.as_str(), line.message));
    }
    match (&outcome.error, &outcome.paused) {
        (Some(e), _) => text.push_str(&e.headline()),
        (None, Some(p)) => text.push_str(&format!(
            "paused: {}({}) needs a person's approval (approval {}); once they have decided, call \
             resume_execution with approve true or false",
            p.tool, p.arguments, p.approval
        )),
        (None, None) => text.push_str(&format!("result: {}", report["value"])),
    }
    // A pause is not a failure: the execution goes on once someone decides.
    let mut result = if outcome.error.is_none() {
        CallToolResult::structured(report)
    } else {
        CallToolResult::structured_error(report)
    };
    result.content = vec![ContentBlock::text(text)];
    result.content.extend(media);
    result
}

fn require_loopback(addr: std::net::SocketAddr) -> std::io::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{addr} is not a loopback address; the HTTP server only listens on loopback"),
    ))
}

/// Replaces each MCP image or audio content object in `value` (`{type: "image" | "audio", data,
/// mimeType}`, as an upstream tool returns them) by a short note, and returns them as content
/// blocks, in the order met.
fn take_media(value: &mut Value) -> Vec<ContentBlock> {
    fn walk(value: &mut Value, out: &mut Vec<ContentBlock>) {
        match value {
            Value::Object(m) => {
                let kind = m.get("type").and_then(Value::as_str);
                let data = m.get("data").and_then(Value::as_str);
                let mime = m.get("mimeType").and_then(Value::as_str);
                if let (Some(kind @ ("image" | "audio")), Some(data), Some(mime)) = (kind, data, mime) {
                    let block = if kind == "image" {
                        ContentBlock::image(data, mime)
                    } else {
                        ContentBlock::audio(data, mime)
                    };
                    let note = format!(
                        "[{kind} {} ({mime}, {} bytes of base64): sent as its own content block]",
                        out.len() + 1,
                        data.len()
                    );
                    out.push(block);
                    *value = Value::String(note);
                    return;
                }
                m.values_mut().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    out
}

/// A new session (a POST without `Mcp-Session-Id`) while the sessions are full gets 503 with a
/// JSON-RPC error saying why, before rmcp would make one.
async fn refuse_when_full(
    sessions: &Sessions,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let opens_session =
        request.method() == axum::http::Method::POST && !request.headers().contains_key("mcp-session-id");
    if opens_session && sessions.refuses_new() {
        let stats = sessions.stats();
        let body = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": -32000, "message": SessionsError::Full(stats.max).to_string() },
        });
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    next.run(request).await
}

/// `GET /`: what this server is, where its endpoint is, and its sessions. Only for a loopback
/// `Host`, as the endpoint itself.
fn describe_server(sessions: &Sessions, headers: &axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let name =
        host.rsplit_once(':').map_or(host, |(name, port)| if port.contains(']') { host } else { name });
    if !matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
        return (axum::http::StatusCode::FORBIDDEN, "Host must be a loopback address").into_response();
    }
    let body = json!({
        "server": "codemode",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoint": "/mcp",
        "transport": "streamable HTTP (MCP)",
        "sessions": sessions.stats(),
    });
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn invalid(message: &str) -> ErrorData {
    ErrorData::invalid_params(message.to_string(), None)
}

fn schema(v: Value) -> Arc<Map<String, Value>> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => unreachable!("literal object schemas"),
    }
}

fn tool_list(engine: &Engine, sessions: bool) -> Vec<McpTool> {
    let prompt = engine.prompt(sessions);
    let mut tools = vec![
        McpTool::new(
            "search_tools",
            "Find the tools a task needs: ranks every tool by name, description and parameters. \
             detail: \"name\", \"summary\" (signature and first sentence, the default) or \"full\" \
             (TypeScript declarations).",
            schema(json!({
                "type": "object",
                "properties": {
                    "query": { "type": "string", "description": "What the tool should do, in words." },
                    "detail": { "enum": ["name", "summary", "full"], "default": "summary" },
                    "limit": { "type": "integer", "minimum": 1, "maximum": 100, "default": 10 }
                },
                "required": ["query"],
                "additionalProperties": false
            })),
        ),
        McpTool::new(
            "describe_tools",
            "TypeScript declarations (with JSDoc) of the tools named, as `namespace.tool`, or of whole \
             namespaces. Read them before writing a program that calls those tools.",
            schema(json!({
                "type": "object",
                "properties": {
                    "names": {
                        "type": "array", "items": { "type": "string" }, "minItems": 1,
                        "description": "Such as [\"sheets.getRows\"] or [\"sheets\"]."
                    }
                },
                "required": ["names"],
                "additionalProperties": false
            })),
        ),
        McpTool::new(
            "execute_code",
            format!("Run a TypeScript program against the tools and get back its console output and result.\n\n{prompt}"),
            schema(json!({
                "type": "object",
                "properties": {
                    "code": { "type": "string", "description": "The TypeScript program (a function body; top-level await works)." },
                    "session": {
                        "type": "string", "minLength": 1, "maxLength": 256,
                        "description": "Run in this named session of yours instead of the default one: each session keeps its own declarations and stored values."
                    }
                },
                "required": ["code"],
                "additionalProperties": false
            })),
        ),
    ];
    // Only where some tool needs approval: otherwise it is a tool the model never needs.
    if engine.registry().tools().any(|(_, tool)| tool.requires_approval()) {
        tools.push(McpTool::new(
            "resume_execution",
            "Continue an execute_code run that paused at a call needing a person's approval (its result \
             says `paused` with an approval id). Call it only with the person's decision: approve true runs \
             the call, false makes it throw a ToolError with code \"rejected\" (and the reason).",
            schema(json!({
                "type": "object",
                "properties": {
                    "approval": { "type": "string", "description": "The approval id from the paused result." },
                    "approve": { "type": "boolean" },
                    "reason": { "type": "string", "description": "Why it was rejected; the program sees it." }
                },
                "required": ["approval", "approve"],
                "additionalProperties": false
            })),
        ));
    }
    tools
}

impl ServerHandler for McpServer {
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let Some(info) = context.peer.peer_info() else { return };
        let features = ClientFeatures::of(&info.capabilities);
        for upstream in self.upstreams.iter() {
            let upstream = Arc::clone(upstream);
            tokio::spawn(async move { upstream.advertise(features).await });
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("codemode", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Write TypeScript programs that call tools as typed functions: search_tools finds them, \
                 describe_tools shows their types, execute_code runs the program next to them and returns \
                 only its logs and result.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // Made per request: the namespace index in execute_code's description follows the
        // engine's registry, which upstream servers may change.
        Ok(ListToolsResult::with_all_items(tool_list(&self.engine, self.config.sessions)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let token = request.progress_token().or_else(|| context.meta.get_progress_token());
        let span = tracing::info_span!(
            parent: None,
            "tools/call",
            otel.kind = "server",
            rpc.system = "mcp",
            tool = %request.name,
        );
        let traced = follow_caller(&span, &request, &context);
        let args = Value::Object(request.arguments.unwrap_or_default());
        let cancel = CancelToken::new();
        // The client's cancellation (notifications/cancelled) cancels the execution.
        let watcher = {
            let cancel = cancel.clone();
            let ct = context.ct.clone();
            tokio::spawn(async move {
                ct.cancelled().await;
                cancel.cancel();
            })
        };
        // A client that asks for progress sees each log line as it is written, tool progress
        // from upstream servers included, as a progress notification.
        let (on_log, forwarder) = match token {
            Some(token) => {
                // `None` ends the stream: every line the execution wrote comes before it.
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
                let peer = context.peer.clone();
                let forwarder = tokio::spawn(async move {
                    let mut n = 0.0;
                    while let Some(Some(message)) = rx.recv().await {
                        n += 1.0;
                        let params = ProgressNotificationParam::new(token.clone(), n).with_message(message);
                        if peer.notify_progress(params).await.is_err() {
                            return;
                        }
                    }
                });
                let sender = tx.clone();
                // Bounded by the execution's log limits: only kept lines are sent.
                let sink: LogSink = Arc::new(move |line: &LogLine| {
                    let _ = sender.send(Some(format!("[{}] {}", line.level.as_str(), line.message)));
                });
                (Some(sink), Some((tx, forwarder)))
            }
            None => (None, None),
        };
        let client: Arc<dyn ClientRequests> = Arc::new(PeerClient(context.peer.clone()));
        let elicits = context.client_capabilities().is_some_and(|c| c.elicitation.is_some());
        let rounds = context.protocol_version().is_some_and(|v| v.as_str() >= "2026-07-28");
        let asking = match (elicits, rounds) {
            (false, _) => Asking::No,
            (true, true) => Asking::Rounds,
            (true, false) => Asking::Inline,
        };
        let result = match traced {
            Err(e) => Err(e),
            // A later round: the client's answer to the approval its last result asked about.
            Ok(()) => match &request.request_state {
                Some(approval) => {
                    let answer =
                        request.input_responses.as_ref().and_then(|r| r.get(APPROVAL_INPUT)).cloned();
                    let answer = answer.unwrap_or_else(|| json!({ "action": "cancel" }));
                    let outcome = self.decide(approval, &answer).instrument(span).await;
                    Ok(self.answer(outcome, &client, asking).await)
                }
                None => {
                    self.call(&request.name, &args, cancel, on_log, client, asking).instrument(span).await
                }
            },
        };
        watcher.abort();
        if let Some((tx, forwarder)) = forwarder {
            // The progress notifications go out before the result.
            let _ = tx.send(None);
            let _ = forwarder.await;
        }
        result
    }
}

/// The caller's W3C trace context, from the request's `_meta` (SEP-414) or, over HTTP, its
/// `traceparent` and `tracestate` headers: the call's spans continue the caller's trace.
fn follow_caller(
    span: &tracing::Span,
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<(), ErrorData> {
    let headers = context.extensions.get::<axum::http::request::Parts>().map(|parts| &parts.headers);
    let header = |name: &str| headers.and_then(|h| h.get(name)).and_then(|v| v.to_str().ok());
    let (parent, state) = match request.traceparent().or_else(|| context.meta.get_traceparent()) {
        Some(parent) => (parent, request.tracestate().or_else(|| context.meta.get_tracestate())),
        None => match header("traceparent") {
            Some(parent) => (parent, header("tracestate")),
            None => return Ok(()),
        },
    };
    crate::telemetry::continue_trace(span, parent, state)
        .map_err(|e| ErrorData::invalid_params(e.to_string(), None))
}

/// The MCP client of an `execute_code` call, which upstream servers' sampling, elicitation and
/// roots requests are forwarded to when it declared that it takes them.
struct PeerClient(Peer<RoleServer>);

impl ClientRequests for PeerClient {
    fn supports(&self, method: &str) -> bool {
        self.0.peer_info().is_some_and(|info| ClientFeatures::of(&info.capabilities).takes(method))
    }

    fn request(&self, method: &str, params: Value) -> crate::registry::BoxFuture<Result<Value, String>> {
        let mut request = json!({ "method": method });
        if params.as_object().is_some_and(|p| !p.is_empty()) {
            request["params"] = params;
        }
        let request = serde_json::from_value::<rmcp::model::ServerRequest>(request);
        let peer = self.0.clone();
        Box::pin(async move {
            let request = request.map_err(|e| format!("not a request codemode can send: {e}"))?;
            let result = peer.send_request(request).await.map_err(|e| e.to_string())?;
            serde_json::to_value(result).map_err(|e| e.to_string())
        })
    }
}
