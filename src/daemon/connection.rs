//! One client's connection: what it is sent, the tools it registered and the calls of them
//! waiting for its answers.

use super::*;

/// One client connection.
pub(super) struct Connection {
    pub(super) id: u64,
    pub(super) out: Outbox,
    /// The tools this client registered.
    pub(super) own: Mutex<Registry>,
    /// The engine's tools with `own` laid over them, and the engine registry it was made
    /// from: rebuilt only when either changes, so discovery's caches live across requests.
    pub(super) view: Mutex<Option<(Arc<Registry>, Registry)>>,
    /// Our `tools/call` requests awaiting the client's answer.
    pub(super) pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, ToolError>>>>,
    pub(super) next_call: AtomicU64,
    /// Set when the client stopped sending: no new callback is sent to it.
    pub(super) closed: AtomicBool,
    /// Its programs in the engine at once: as many as the pool has threads.
    pub(super) slots: tokio::sync::Semaphore,
    /// The engine's names of the sessions only this connection sees: they end with it.
    pub(super) sessions: Mutex<std::collections::BTreeSet<String>>,
    /// The tool calls of its last finished executions, by request id (`code/calls`).
    pub(super) audits: Mutex<std::collections::VecDeque<(String, Vec<CallRecord>)>>,
}

/// Finished executions whose tool calls a connection can read back.
pub(super) const KEPT_AUDITS: usize = 64;

impl Connection {
    pub(super) fn send(&self, line: String) {
        // False once the client is being dropped for what it left unread.
        let _ = self.out.send(line);
    }

    /// The engine's name of the client's session `name`: one of this connection's own, or one
    /// every connection that asks for `shared` sees.
    pub(super) fn session_key(&self, name: &str, shared: bool) -> String {
        if shared {
            format!("shared/{name}")
        } else {
            format!("connection/{}/{name}", self.id)
        }
    }

    /// A session's client name, and whether it is shared, from the engine's name for it.
    pub(super) fn client_session(key: &str) -> Option<(String, bool)> {
        if let Some(name) = key.strip_prefix("shared/") {
            return Some((name.to_string(), true));
        }
        let (_, name) = key.strip_prefix("connection/")?.split_once('/')?;
        Some((name.to_string(), false))
    }

    /// Keeps the calls of the execution with request id `id`, forgetting the oldest past
    /// [`KEPT_AUDITS`].
    pub(super) fn keep_calls(&self, id: String, calls: Vec<CallRecord>) {
        let mut audits = self.audits.lock().expect("audits lock");
        audits.retain(|(kept, _)| *kept != id);
        if audits.len() >= KEPT_AUDITS {
            audits.pop_front();
        }
        audits.push_back((id, calls));
    }

    /// The calls of the finished execution with request id `id`, if kept.
    pub(super) fn calls(&self, id: &str) -> Option<Vec<CallRecord>> {
        let audits = self.audits.lock().expect("audits lock");
        audits.iter().find(|(kept, _)| kept == id).map(|(_, calls)| calls.clone())
    }

    pub(super) fn has_own_tools(&self) -> bool {
        !self.own.lock().expect("registry lock").is_empty()
    }

    /// What this client's programs and discovery see.
    pub(super) fn registry(&self, engine: &Engine) -> Registry {
        let base = engine.registry();
        let mut view = self.view.lock().expect("view lock");
        if let Some((made_from, merged)) = view.as_ref() {
            if Arc::ptr_eq(made_from, &base) {
                return merged.clone();
            }
        }
        let mut merged = Registry::clone(&base);
        merged.overlay(&self.own.lock().expect("registry lock"));
        *view = Some((base, merged.clone()));
        merged
    }

    /// Routes the client's response to the `tools/call` waiting for it.
    /// Fails the pending `tools/call` with this id, if there is one.
    pub(super) fn fail_call(&self, id: u64, message: String) {
        if let Some(waiter) = self.pending.lock().expect("pending lock").remove(&id) {
            let _ = waiter.send(Err(ToolError::with_code("invalid_response", message)));
        }
    }

    pub(super) fn answer(&self, m: &serde_json::Map<String, Value>) {
        // Our ids are numbers; a client that echoes one as a string is understood too.
        let id = match m.get("id") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let Some(id) = id else {
            tracing::warn!(
                connection = self.id,
                "a response whose id names no tools/call request was ignored"
            );
            return;
        };
        let Some(waiter) = self.pending.lock().expect("pending lock").remove(&id) else {
            tracing::warn!(
                connection = self.id,
                id,
                "a response to no pending tools/call (late, or answered twice) was ignored"
            );
            return;
        };
        let result = match (m.get("result"), m.get("error")) {
            (_, Some(e)) => {
                let message = e.get("message").and_then(Value::as_str).unwrap_or("the client's tool failed");
                let code = e
                    .get("data")
                    .and_then(|d| d.get("code"))
                    .and_then(Value::as_str)
                    .unwrap_or("client_error");
                Err(ToolError::with_code(code, message))
            }
            (Some(r), None) => Ok(r.clone()),
            (None, None) => {
                Err(ToolError::with_code("client_error", "the response has neither result nor error"))
            }
        };
        let _ = waiter.send(result);
    }
}

/// A tool whose handler asks the client: `tools/call {namespace, name, arguments}`.
pub(super) fn callback_tool(
    conn: &Arc<Connection>,
    inner: &Arc<Inner>,
    namespace: &str,
    def: definitions::ToolDefinition,
) -> Tool {
    let conn = Arc::downgrade(conn);
    let inner = Arc::downgrade(inner);
    let namespace = namespace.to_string();
    let name = def.name.clone();
    Tool::from_definition(def, move |args: Value| {
        let conn = conn.upgrade();
        let inner = inner.upgrade();
        let namespace = namespace.clone();
        let name = name.clone();
        async move {
            let disconnected = || {
                ToolError::with_code("disconnected", "the client that registered this tool has disconnected")
            };
            let conn = conn.filter(|c| !c.closed.load(Ordering::Relaxed)).ok_or_else(disconnected)?;
            let timeout = inner.as_ref().map_or(Duration::from_secs(30), |i| i.config.tool_call_timeout);
            if let Some(i) = &inner {
                i.stats.lock().expect("stats lock").tool_callbacks += 1;
            }
            let id = conn.next_call.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            conn.pending.lock().expect("pending lock").insert(id, tx);
            // Whatever ends this future (answer, timeout, the execution ending), the entry goes.
            let _cleanup = PendingGuard(Arc::clone(&conn), id);
            conn.send(rpc::request(
                id,
                "tools/call",
                json!({ "namespace": namespace, "name": name, "arguments": args }),
            ));
            drop(conn);
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(disconnected()),
                Err(_) => Err(ToolError::with_code(
                    "timeout",
                    format!("the client did not answer tools/call within {} ms", timeout.as_millis()),
                )),
            }
        }
    })
}

struct PendingGuard(Arc<Connection>, u64);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.lock().expect("pending lock").remove(&self.1);
    }
}
