//! The daemon: JSON-RPC 2.0, newline-delimited, over a Unix socket or stdio, so any language
//! can run programs and register its own tools without linking Rust.
//!
//! Client → daemon: `initialize`, `tools/register`, `tools/list`, `tools/search`,
//! `tools/describe`, `prompt`, `code/execute`, `code/resume`, `code/cancel`, `code/calls`,
//! `session/close`, `skills/save`, `skills/list`, `skills/show`, `skills/remove`, `stats`. Daemon → client: `code/log`
//! notifications while a program runs, and `tools/call` requests when a program calls a tool the
//! client registered (the client answers with the tool's value as `result`, or an `error`).
//!
//! Each connection sees the engine's tools plus its own; its tools vanish when it disconnects,
//! and calls to them fail then with code `disconnected`. Every request runs as its own task, so a client may
//! run many programs at once and a slow client holds up nobody else. Executions may tighten the
//! engine's limits, never loosen them.

mod connection;
mod listen;
mod params;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::definitions;
use crate::engine::{CancelToken, Engine, ExecuteOptions};
use crate::error::ToolError;
use crate::flow::Outbox;
use crate::limits::LimitsPatch;
use crate::mcp::Upstream;
use crate::outcome::{CallRecord, LogLine};
use crate::registry::discovery::{names_arg, search_args};
use crate::registry::{Registry, Tool};
use crate::rpc::{self, Line, LineReader, RpcError};
use crate::skills::{Skill, SkillError, SkillStore};

use self::connection::{callback_tool, Connection};
pub use self::listen::SocketListener;

/// Settings of a [`Daemon`].
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Longest accepted message line (default 16 MiB); a longer one gets an error response and
    /// the connection continues with the next line.
    pub max_line_bytes: usize,
    /// How long a program waits for a client to answer `tools/call` (default 30 s) before the
    /// call fails with code `timeout`.
    pub tool_call_timeout: Duration,
    /// On shutdown, how long running executions may continue before they are cancelled
    /// (default 5 s).
    pub shutdown_grace: Duration,
    /// Bytes of responses a client may leave unread (default 32 MiB). Past it the daemon stops
    /// reading that client's requests until it reads; past twice it, the connection is closed
    /// (and logged): a client that sends and never reads cannot grow the daemon's memory.
    pub max_unsent_bytes: usize,
    /// Requests of one connection running at once (default 1,024); further ones wait unread.
    pub max_in_flight: usize,
    /// Where `skills/save` keeps skills and `skills/remove` removes them (the binary's
    /// `<state dir>/skills`); without one they last as long as the engine.
    pub skills: Option<SkillStore>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            max_line_bytes: 16 << 20,
            tool_call_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            max_unsent_bytes: 32 << 20,
            max_in_flight: 1024,
            skills: None,
        }
    }
}

/// Serves connections for one [`Engine`]. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: DaemonConfig,
    next_connection: AtomicU64,
    connections: AtomicUsize,
    /// Running executions: (connection, request id) → its cancel token.
    running: Mutex<HashMap<(u64, String), CancelToken>>,
    shutting_down: AtomicBool,
    stats: Mutex<Counters>,
    /// Upstream MCP servers whose status `stats` reports.
    upstreams: Mutex<Vec<Arc<Upstream>>>,
}

#[derive(Default)]
struct Counters {
    executions: u64,
    failures: BTreeMap<String, u64>,
    connections_total: u64,
    tool_callbacks: u64,
    /// Connections closed because their client left too much unread.
    closed_unread: u64,
    /// Connections whose client hung up while its programs ran (they were cancelled).
    cancelled_gone: u64,
}

impl Daemon {
    /// A daemon over `engine`; clients see its registry plus their own tools.
    pub fn new(engine: Engine, config: DaemonConfig) -> Self {
        Daemon {
            inner: Arc::new(Inner {
                engine,
                config,
                next_connection: AtomicU64::new(1),
                connections: AtomicUsize::new(0),
                running: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                stats: Mutex::new(Counters::default()),
                upstreams: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Reports these upstream servers' status in `stats` (they serve the engine's tools; the
    /// daemon only watches them).
    pub fn watch_upstreams(&self, upstreams: impl IntoIterator<Item = Arc<Upstream>>) {
        self.inner.upstreams.lock().expect("upstreams lock").extend(upstreams);
    }

    /// Serves one connection until the peer closes it. Runs every request as its own task on
    /// the current tokio runtime.
    pub async fn serve_connection<R, W>(&self, reader: R, writer: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_connection_watching(reader, writer, std::future::pending()).await;
    }

    /// [`serve_connection`](Self::serve_connection), cancelling the connection's running
    /// programs when `peer_gone` completes after the client stopped sending: a client that
    /// hung up entirely cannot read their results, so they stop now instead of at their
    /// deadlines (a client that only closed its sending side still gets them).
    pub async fn serve_connection_watching<R, W>(
        &self,
        reader: R,
        writer: W,
        peer_gone: impl Future<Output = ()>,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let id = self.inner.next_connection.fetch_add(1, Ordering::Relaxed);
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        self.inner.stats.lock().expect("stats lock").connections_total += 1;
        let span = tracing::info_span!("connection", id);
        let (out, writer_task) =
            Outbox::new(writer, self.inner.config.max_unsent_bytes, self.inner.config.max_in_flight);
        let conn = Arc::new(Connection {
            id,
            out,
            own: Mutex::new(Registry::new()),
            view: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            slots: tokio::sync::Semaphore::new(self.inner.engine.workers()),
            sessions: Mutex::new(Default::default()),
            audits: Mutex::new(Default::default()),
        });
        self.read_loop(&conn, reader).instrument(span.clone()).await;
        let overflowed = conn.out.is_overflowed();
        if overflowed {
            // Its results can no longer be delivered: its programs stop now, not at their
            // deadlines, and free the sandbox threads for other clients.
            self.cancel_connection(id);
            self.inner.stats.lock().expect("stats lock").closed_unread += 1;
            span.in_scope(|| {
                tracing::warn!(
                    "connection closed: its client left more than {} bytes of responses unread",
                    2 * conn.out.max_unsent()
                )
            });
        }
        // The client stopped sending. Its pending callbacks fail at once (it can no longer
        // answer) and its tools vanish with the connection. Its running programs go on to
        // their end, within their deadline, and their results are written if the client is
        // still reading (a client may close only its sending side, as `serve --stdio` with a
        // piped stdin does) — unless the client is gone entirely, which `peer_gone` tells.
        conn.closed.store(true, Ordering::Relaxed);
        conn.pending.lock().expect("pending lock").clear();
        // Nobody else can reach its own sessions: they end with it.
        for key in std::mem::take(&mut *conn.sessions.lock().expect("sessions lock")) {
            self.inner.engine.close_session(&key);
        }
        drop(conn);
        tokio::pin!(writer_task);
        tokio::select! {
            biased;
            _ = &mut writer_task => {}
            () = peer_gone, if !overflowed => {
                // Requests read just before the hang-up may not have registered their runs
                // yet: cancel until every one has ended.
                let mut cancelled = 0;
                loop {
                    cancelled += self.cancel_connection(id);
                    tokio::select! {
                        _ = &mut writer_task => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                if cancelled > 0 {
                    self.inner.stats.lock().expect("stats lock").cancelled_gone += 1;
                    span.in_scope(|| tracing::info!("client gone: its running programs are cancelled"));
                }
            }
        }
        self.inner.connections.fetch_sub(1, Ordering::Relaxed);
        span.in_scope(|| tracing::info!("connection closed"));
    }

    /// Cancels the running executions of connection `id`; returns how many.
    fn cancel_connection(&self, id: u64) -> usize {
        let running = self.inner.running.lock().expect("running lock");
        let mine = running.iter().filter(|((connection, _), _)| *connection == id);
        mine.map(|(_, token)| token.cancel()).count()
    }

    async fn read_loop<R: AsyncRead + Unpin>(&self, conn: &Arc<Connection>, reader: R) {
        let mut reader = LineReader::new(BufReader::new(reader), self.inner.config.max_line_bytes);
        loop {
            // Backpressure: no new request while the client leaves too much unread or has too
            // many running; a client past the hard bound is dropped.
            if !conn.out.room().await {
                return;
            }
            let read = tokio::select! {
                read = reader.next() => read,
                // A client dropped for what it left unread is not waited on to send more.
                () = conn.out.overflowed() => return,
            };
            let line = match read {
                Ok(Line::Eof) | Err(_) => return,
                Ok(Line::Text(t)) => t,
                Ok(other) => {
                    if let Some(e) = other.framing_error(reader.max()) {
                        conn.send(rpc::response(&Value::Null, Err(e)));
                    }
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            self.handle_message(conn, &line);
        }
    }

    fn handle_message(&self, conn: &Arc<Connection>, line: &str) {
        let msg: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                // An answer to one of our `tools/call` requests that is not JSON still names
                // its call, most likely: that call fails now instead of at its time-out.
                if let Some(id) = rpc::id_in(line) {
                    conn.fail_call(id, format!("the client's answer is not JSON: {e}"));
                }
                conn.send(rpc::response(
                    &Value::Null,
                    Err(RpcError::new(rpc::PARSE_ERROR, format!("parse error: {e}"))),
                ));
                return;
            }
        };
        let Value::Object(m) = &msg else {
            let why = if msg.is_array() {
                "batches are not supported; send one message per line"
            } else {
                "a message must be an object"
            };
            conn.send(rpc::response(&Value::Null, Err(RpcError::new(rpc::INVALID_REQUEST, why))));
            return;
        };
        let id = m.get("id").cloned();
        if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            let id = id.unwrap_or(Value::Null);
            conn.send(rpc::response(
                &id,
                Err(RpcError::new(rpc::INVALID_REQUEST, "jsonrpc must be \"2.0\"")),
            ));
            return;
        }
        let Some(method) = m.get("method").and_then(Value::as_str) else {
            // A response to one of our `tools/call` requests.
            if m.contains_key("result") || m.contains_key("error") {
                conn.answer(m);
            } else {
                let id = id.unwrap_or(Value::Null);
                conn.send(rpc::response(
                    &id,
                    Err(RpcError::new(
                        rpc::INVALID_REQUEST,
                        "a message needs a method, or a result or error",
                    )),
                ));
            }
            return;
        };
        let valid_id =
            matches!(id, None | Some(Value::String(_)) | Some(Value::Number(_)) | Some(Value::Null));
        if !valid_id {
            conn.send(rpc::response(
                &Value::Null,
                Err(RpcError::new(rpc::INVALID_REQUEST, "id must be a string or a number")),
            ));
            return;
        }
        let params = m.get("params").cloned().unwrap_or(Value::Null);
        let daemon = self.clone();
        let conn = Arc::clone(conn);
        let method = method.to_string();
        let running = conn.out.begin();
        // A root: a trace is one request (or the caller's), not the whole connection.
        let span = tracing::info_span!(
            parent: None,
            "request",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "jsonrpc",
            rpc.method = %method,
            connection = conn.id,
        );
        let traced = follow_caller(&span, &params);
        tokio::spawn(
            async move {
                let _running = running;
                let result = match traced {
                    Ok(()) => daemon.call(&conn, &method, id.as_ref(), params).await,
                    Err(e) => Err(e),
                };
                // Notifications (no id) get no response, not even an error.
                if let Some(id) = id {
                    conn.send(rpc::response(&id, result));
                }
            }
            .instrument(span),
        );
    }

    async fn call(
        &self,
        conn: &Arc<Connection>,
        method: &str,
        id: Option<&Value>,
        params: Value,
    ) -> Result<Value, RpcError> {
        match method {
            "initialize" => Ok(json!({
                "protocolVersion": "1",
                "serverInfo": { "name": "codemode", "version": env!("CARGO_PKG_VERSION") },
                "capabilities": { "toolCallbacks": true, "logNotifications": true, "cancel": true },
                "limits": LimitsPatch::from(self.inner.engine.limits()),
            })),
            // A big schema takes a while to check and declare: off the async workers, so
            // other clients' responses are not held up behind it.
            "tools/register" => {
                let (daemon, conn) = (self.clone(), Arc::clone(conn));
                tokio::task::spawn_blocking(move || daemon.register(&conn, &params)).await.unwrap_or_else(
                    |e| Err(RpcError::new(rpc::REGISTRATION_FAILED, format!("registration failed: {e}"))),
                )
            }
            "tools/list" => Ok(json!({ "namespaces": conn.registry(&self.inner.engine).list() })),
            "tools/search" => {
                let (query, detail, limit) = search_args(&params).map_err(RpcError::params)?;
                Ok(json!({ "hits": conn.registry(&self.inner.engine).search(&query, detail, limit) }))
            }
            "tools/describe" => {
                let names = names_arg(&params).map_err(RpcError::params)?;
                let text = conn
                    .registry(&self.inner.engine)
                    .describe(&names)
                    .map_err(|e| RpcError::new(rpc::NO_SUCH_TOOL, e.to_string()))?;
                Ok(json!({ "declarations": text }))
            }
            "prompt" => {
                let params::Prompt { session } = params::read(&params)?;
                let registry = conn.registry(&self.inner.engine);
                Ok(json!({ "prompt": self.inner.engine.prompt_for(&registry, session.unwrap_or(false)) }))
            }
            "code/execute" => self.execute(conn, id, &params).await,
            "code/resume" => self.resume(conn, id, &params).await,
            "code/cancel" => {
                let target = params::read::<params::Request>(&params)?.id.to_string();
                let token =
                    self.inner.running.lock().expect("running lock").get(&(conn.id, target.clone())).cloned();
                match token {
                    Some(t) => {
                        t.cancel();
                        Ok(json!({ "cancelled": true }))
                    }
                    None => Err(RpcError::new(
                        rpc::NO_SUCH_EXECUTION,
                        format!("no running execution with id {target}"),
                    )),
                }
            }
            "code/calls" => {
                let target = params::read::<params::Request>(&params)?.id.to_string();
                match conn.calls(&target) {
                    Some(calls) => Ok(json!({ "calls": calls })),
                    None => Err(RpcError::new(
                        rpc::NO_SUCH_EXECUTION,
                        format!(
                            "no finished execution with id {target} on this connection (the last {} are kept)",
                            connection::KEPT_AUDITS
                        ),
                    )),
                }
            }
            "session/close" => {
                let close: params::CloseSession = params::read(&params)?;
                let (name, shared) =
                    params::session(Some(&close.session), close.shared)?.expect("a session is named");
                let key = conn.session_key(name, shared);
                conn.sessions.lock().expect("sessions lock").remove(&key);
                Ok(json!({ "closed": self.inner.engine.close_session(&key) }))
            }
            "skills/list" => {
                let registry = conn.registry(&self.inner.engine);
                let skills: Vec<Value> = registry
                    .skills()
                    .map(|s| {
                        json!({
                            "name": s.name(),
                            "signature": s.signature(),
                            "summary": crate::typegen::first_sentence(s.description()),
                        })
                    })
                    .collect();
                Ok(json!({ "skills": skills }))
            }
            "skills/save" => self.save_skill(&params).await,
            "skills/show" => {
                let params::SkillName { name } = params::read(&params)?;
                let name = name.as_str();
                let registry = conn.registry(&self.inner.engine);
                let skill =
                    registry.skill(name).ok_or_else(|| skill_refused(&SkillError::NotFound(name.into())))?;
                Ok(json!({
                    "name": skill.name(),
                    "signature": skill.signature(),
                    "description": skill.description(),
                    "declarations": registry.describe(&[format!("skills.{name}")]).unwrap_or_default(),
                    "source": skill.source(),
                }))
            }
            "skills/remove" => {
                let params::SkillName { name } = params::read(&params)?;
                let name = name.as_str();
                let removed = self.inner.engine.remove_skill(name);
                let deleted = match &self.inner.config.skills {
                    Some(store) => store.remove(name).map_err(|e| skill_refused(&e))?,
                    None => false,
                };
                if !removed && !deleted {
                    return Err(skill_refused(&SkillError::NotFound(name.into())));
                }
                Ok(json!({ "removed": true }))
            }
            "stats" => Ok(self.stats().await),
            other => Err(RpcError::new(rpc::METHOD_NOT_FOUND, format!("unknown method {other:?}"))),
        }
    }

    /// `skills/save {name, source}`: checked against the engine's tools as the engine's limits
    /// ask, then kept (in the store, when there is one) and callable by every connection.
    async fn save_skill(&self, params: &Value) -> Result<Value, RpcError> {
        let params::SaveSkill { name, source } = params::read(params)?;
        let name = name.as_str();
        let skill = Skill::parse(name, &source).map_err(|e| skill_refused(&e))?;
        let signature = skill.signature();
        let previous = self.inner.engine.registry().skill(name).cloned();
        let diagnostics = self.inner.engine.add_skill(skill.clone()).await.map_err(|e| skill_refused(&e))?;
        let replaced = match &self.inner.config.skills {
            // A skill that could not be kept is not offered either: the engine goes back to the
            // version it had.
            Some(store) => store.save(&skill).map_err(|e| {
                match previous {
                    Some(previous) => self.inner.engine.put_skill(previous),
                    None => drop(self.inner.engine.remove_skill(name)),
                }
                skill_refused(&e)
            })?,
            None => false,
        };
        Ok(json!({ "name": name, "signature": signature, "replaced": replaced, "diagnostics": diagnostics }))
    }

    fn register(&self, conn: &Arc<Connection>, params: &Value) -> Result<Value, RpcError> {
        let params::Register { namespace, tools, description, approve } = params::read(params)?;
        let namespace = namespace.as_str();
        if tools.is_empty() {
            return Err(RpcError::params("tools must list at least one tool"));
        }
        let defs = definitions::from_value(&Value::Array(tools))
            .map_err(|e| RpcError::params(format!("tools: at {}: {}", e.at, e.message)))?;
        // All or nothing: register into a copy of the client's tools, then swap it in. Names
        // taken by the engine's tools are refused too.
        let view = conn.registry(&self.inner.engine);
        let mut own_guard = conn.own.lock().expect("registry lock");
        let mut own = own_guard.clone();
        let failed = |e: crate::RegistryError| RpcError::new(rpc::REGISTRATION_FAILED, e.to_string());
        let mut names = Vec::with_capacity(defs.len());
        for def in defs {
            let tool = callback_tool(conn, &self.inner, namespace, def);
            names.push(tool.js_name().to_string());
            if let Some(e) = view.collision(namespace, &tool) {
                return Err(failed(e));
            }
            own.register(namespace, tool).map_err(failed)?;
        }
        if let Some(d) = &description {
            own.describe_namespace(namespace, d).map_err(failed)?;
        }
        for pattern in &approve {
            own.require_approval(&format!("{namespace}.{pattern}"));
        }
        *own_guard = own;
        drop(own_guard);
        *conn.view.lock().expect("view lock") = None;
        Ok(json!({ "namespace": namespace, "tools": names }))
    }

    async fn execute(
        &self,
        conn: &Arc<Connection>,
        id: Option<&Value>,
        params: &Value,
    ) -> Result<Value, RpcError> {
        self.accepting()?;
        let execute: params::Execute = params::read(params)?;
        let limits = match &execute.limits {
            None => self.inner.engine.limits().clone(),
            Some(patch) => patch.tighten(self.inner.engine.limits()),
        };
        let session = params::session(execute.session.as_deref(), execute.shared)?;
        let session_key = session.map(|(name, shared)| conn.session_key(name, shared));
        if let (Some(key), Some((_, false))) = (&session_key, session) {
            conn.sessions.lock().expect("sessions lock").insert(key.clone());
        }
        let (key, token) = self.track(conn, id)?;
        let log_conn = Arc::clone(conn);
        let log_id = id.cloned().unwrap_or(Value::Null);
        let options = ExecuteOptions {
            limits: Some(limits),
            cancel: Some(token),
            // A client without tools of its own runs on the engine's registry as it is.
            registry: conn.has_own_tools().then(|| conn.registry(&self.inner.engine)),
            on_log: Some(Arc::new(move |line: &LogLine| {
                log_conn.send(rpc::notification(
                    "code/log",
                    json!({ "id": log_id, "level": line.level, "message": line.message }),
                ));
            })),
            client: None,
            session: session_key,
            // Kept for `code/calls`, whether or not this response carries them.
            audit: true,
        };
        // One connection has at most as many programs in the engine as it has sandbox threads:
        // the rest wait here, so one client's burst does not queue ahead of everyone else's.
        let outcome = {
            let _slot = conn.slots.acquire().await;
            self.inner.engine.execute(&execute.code, options).await
        };
        self.inner.running.lock().expect("running lock").remove(&key);
        Ok(self.report(conn, id, execute.tokens, execute.calls, outcome))
    }

    /// Registers a request that runs a program, so that `code/cancel`, the client hanging up
    /// or overflowing, and shutdown can stop it. A notification's run has no id to cancel it
    /// by, but is registered all the same.
    fn track(
        &self,
        conn: &Arc<Connection>,
        id: Option<&Value>,
    ) -> Result<((u64, String), CancelToken), RpcError> {
        let key = match id {
            Some(id) => (conn.id, id.to_string()),
            None => (conn.id, format!("notification #{}", conn.next_call.fetch_add(1, Ordering::Relaxed))),
        };
        let token = CancelToken::new();
        let mut running = self.inner.running.lock().expect("running lock");
        if running.contains_key(&key) {
            return Err(RpcError::new(
                rpc::INVALID_REQUEST,
                format!("an execution with id {} is already running", key.1),
            ));
        }
        running.insert(key.clone(), token.clone());
        Ok((key, token))
    }

    /// Refuses to start running programs once the daemon is shutting down.
    fn accepting(&self) -> Result<(), RpcError> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(RpcError::new(rpc::SHUTTING_DOWN, "the daemon is shutting down"));
        }
        Ok(())
    }

    /// `code/resume {approval, approve, reason?}`: the decision on the call a paused execution
    /// waits on, and the execution's next outcome. Any connection holding the approval id may
    /// decide (an approval id is not guessable).
    async fn resume(
        &self,
        conn: &Arc<Connection>,
        id: Option<&Value>,
        params: &Value,
    ) -> Result<Value, RpcError> {
        self.accepting()?;
        let resume: params::Resume = params::read(params)?;
        let (key, token) = self.track(conn, id)?;
        let outcome = self
            .inner
            .engine
            .resume_with(&resume.approval, resume.approve, resume.reason.as_deref(), Some(&token))
            .await;
        self.inner.running.lock().expect("running lock").remove(&key);
        let outcome = outcome.map_err(|e| RpcError::new(rpc::NO_SUCH_EXECUTION, e.to_string()))?;
        Ok(self.report(conn, id, resume.tokens, resume.calls, outcome))
    }

    /// The response to `code/execute` or `code/resume`: the outcome's report, counted in the
    /// stats, its calls kept for `code/calls`.
    fn report(
        &self,
        conn: &Arc<Connection>,
        id: Option<&Value>,
        tokens: Option<bool>,
        calls: Option<bool>,
        outcome: crate::Outcome,
    ) -> Value {
        let mut stats = self.inner.stats.lock().expect("stats lock");
        // A paused execution is counted once, when it ends.
        if outcome.paused.is_none() {
            stats.executions += 1;
        }
        if let Some(e) = &outcome.error {
            *stats.failures.entry(e.kind.code().to_string()).or_default() += 1;
        }
        drop(stats);
        // The exact count costs about 8 ms per 100 KB of tool results; only on request.
        let exact = tokens.unwrap_or(false);
        let mut report = if exact { outcome.to_report_exact() } else { outcome.to_report() };
        if calls != Some(true) {
            if let Some(m) = report.as_object_mut() {
                m.remove("calls");
            }
        }
        if let Some(id) = id {
            conn.keep_calls(id.to_string(), outcome.calls);
        }
        if let Some(info) = report.get_mut("session") {
            // The client's own name for it, not the engine's.
            if let Some((name, shared)) = info["id"].as_str().and_then(Connection::client_session) {
                info["id"] = json!(name);
                info["shared"] = json!(shared);
            }
        }
        report
    }

    /// Executions, failures by kind, connections, pool size, the engine's tools, and the
    /// status of each watched upstream server.
    pub async fn stats(&self) -> Value {
        let upstreams: Vec<Arc<Upstream>> = self.inner.upstreams.lock().expect("upstreams lock").clone();
        let mut statuses = Vec::with_capacity(upstreams.len());
        for u in upstreams {
            statuses.push(u.status().await);
        }
        let s = self.inner.stats.lock().expect("stats lock");
        json!({
            "executions": s.executions,
            "failures": s.failures,
            "running": self.inner.running.lock().expect("running lock").len(),
            "connections": self.inner.connections.load(Ordering::Relaxed),
            "connectionsTotal": s.connections_total,
            "toolCallbacks": s.tool_callbacks,
            "closedUnread": s.closed_unread,
            "cancelledGone": s.cancelled_gone,
            "pool": { "workers": self.inner.engine.workers() },
            "sessions": self.inner.engine.sessions().len(),
            "tools": self.inner.engine.registry().tools().count(),
            "upstreams": statuses,
        })
    }

    fn cancel_all(&self) {
        for token in self.inner.running.lock().expect("running lock").values() {
            token.cancel();
        }
    }

    /// Refuses new executions, waits up to the grace period for running ones, then cancels the
    /// rest and waits for them to end.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        if tokio::time::timeout(self.inner.config.shutdown_grace, self.idle()).await.is_err() {
            tracing::warn!("cancelling executions still running after the shutdown grace period");
            self.cancel_all();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.idle()).await;
        }
    }

    /// Completes when no execution is running. Shutdown is rare, so polling is enough.
    async fn idle(&self) {
        while !self.inner.running.lock().expect("running lock").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A skill refused, with its diagnostics or its syntax error as the error's data.
fn skill_refused(e: &SkillError) -> RpcError {
    let error = RpcError::new(rpc::SKILL_REFUSED, e.to_string());
    match e {
        SkillError::TypeErrors { diagnostics, .. } => error.with_data(json!({ "diagnostics": diagnostics })),
        SkillError::Syntax { error: syntax, .. } => error.with_data(json!({ "error": syntax })),
        _ => error,
    }
}

/// Any request may carry the caller's W3C trace context as `traceparent` (and `tracestate`)
/// params: its spans continue the caller's trace.
fn follow_caller(span: &tracing::Span, params: &Value) -> Result<(), RpcError> {
    // Most requests carry none: their params are not read twice.
    if params.get("traceparent").is_none() {
        return Ok(());
    }
    let trace: params::Trace = params::read(params)?;
    let Some(parent) = trace.traceparent else { return Ok(()) };
    crate::telemetry::continue_trace(span, &parent, trace.tracestate.as_deref())
        .map_err(|e| RpcError::params(e.to_string()))
}
