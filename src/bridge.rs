//! The host side of one execution: every tool call from the sandbox arrives here through one
//! op, is validated against the tool's input schema, and runs as a task on the caller's tokio
//! runtime; results come back over a channel that the sandbox thread waits on. Timers live here
//! too, so "nothing can ever settle" is one check: no call in flight, none queued, no timer.
//!
//! Nothing here knows which JS engine runs the program.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use std::future::Future;

use futures_util::FutureExt;
use serde_json::Value;
use tracing::Instrument;

pub use crate::error::PendingCall;
use crate::error::{ErrorKind, ToolError};
use crate::limits::Limits;
use crate::outcome::{CallRecord, TextSample};
use crate::outcome::{LogLevel, LogLine, LogSink};
use crate::privacy::{Privacy, Vault};
use crate::registry::discovery::{names_arg, search_args};
use crate::registry::{Entry, Registry};
use crate::session::SessionState;

/// The namespace of the runtime's own functions (`codemode.search`, ...); reserved, so no
/// registered namespace can take it.
const BUILTIN_NAMESPACE: &str = "codemode";

/// `codemode.list()`, `codemode.search(query, {detail, limit})`, `codemode.describe(names)`:
/// discovery from inside a program. They answer at once, from the registry's cached index and
/// declarations, and count as tool calls.
fn builtin(registry: &Registry, name: &str, args: &Value) -> Result<Value, String> {
    let label = format!("{BUILTIN_NAMESPACE}.{name}");
    match name {
        "list" => Ok(serde_json::to_value(registry.list()).expect("serializable")),
        "search" => {
            let (query, detail, limit) = search_args(args).map_err(|e| format!("{label}: {e}"))?;
            Ok(serde_json::to_value(registry.search(&query, detail, limit)).expect("serializable"))
        }
        "describe" => {
            let names = names_arg(args).map_err(|e| format!("{label}: {e}"))?;
            registry.describe(&names).map(Value::String).map_err(|e| format!("{label}: {e}"))
        }
        _ => Err(format!("{label} is not a function")),
    }
}

/// Wakes the sandbox thread: a finished tool call, or a cancellation.
pub(crate) enum Wake {
    Done(u64, CallResult),
    /// A running tool added a line to the program's logs ([`tool_log`]): it waits in the log
    /// channel, which is read before anything else.
    Logged,
    Cancel,
}

tokio::task_local! {
    /// The execution a tool handler runs for, while it runs.
    static CALLER: Caller;
}

#[derive(Clone)]
struct Caller {
    tx: Sender<Wake>,
    logs: Sender<LogLine>,
    tool: Arc<str>,
    client: Option<Arc<dyn ClientRequests>>,
}

/// The client an execution runs for, as its tools may need it: an MCP client that takes
/// sampling (`sampling/createMessage`), elicitation (`elicitation/create`) and roots
/// (`roots/list`) requests, which an upstream server sends while one of its tools runs.
/// `codemode mcp` gives each execution its client's; see [`ExecuteOptions::client`](crate::ExecuteOptions::client).
pub trait ClientRequests: Send + Sync {
    /// Whether the client takes requests of `method`.
    fn supports(&self, method: &str) -> bool;
    /// Sends the request and returns the client's result, or why there is none.
    fn request(&self, method: &str, params: Value) -> crate::registry::BoxFuture<Result<Value, String>>;
}

/// A handle on the execution whose tool call is running: its logs (what [`tool_log`] writes
/// to) and its client. Taken with [`CallContext::current`] inside a handler, it can be moved
/// to other tasks (an upstream server's notifications and requests arrive on its
/// connection's task, not the call's).
#[derive(Clone)]
pub struct CallContext(Caller);

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CallContext").field(&self.0.tool).finish()
    }
}

impl CallContext {
    /// The calling execution, inside a tool handler; `None` elsewhere.
    pub fn current() -> Option<CallContext> {
        CALLER.try_with(|c| CallContext(c.clone())).ok()
    }

    /// The client the execution runs for, when it takes requests of `method`.
    pub fn client_for(&self, method: &str) -> Option<&Arc<dyn ClientRequests>> {
        self.0.client.as_ref().filter(|c| c.supports(method))
    }

    /// Adds `message` to the execution's logs as `<namespace.tool>: <message>`, within the
    /// execution's log limits, and hands it to its log sink (the daemon's `code/log`). False
    /// when the execution has ended.
    pub fn log(&self, level: LogLevel, message: &str) -> bool {
        let line = LogLine { level, message: format!("{}: {message}", self.0.tool) };
        // The line goes first, the wake-up after: a result sent after it is never seen before it.
        self.0.logs.send(line).is_ok() && self.0.tx.send(Wake::Logged).is_ok()
    }
}

/// [`CallContext::log`] on the calling execution's log: a tool handler reports progress or a
/// warning to the program's logs. False outside a tool call or once the execution has ended.
pub fn tool_log(level: LogLevel, message: &str) -> bool {
    CallContext::current().is_some_and(|log| log.log(level, message))
}

/// A finished call: the JSON text and the tool's label, or the failure.
pub(crate) type CallResult = Result<(Arc<str>, Arc<str>), ToolFailure>;

/// A rejected tool call, as the sandbox will see it: an `Error` (or `TypeError`) with these
/// properties.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ToolFailure {
    pub(crate) name: &'static str,
    pub(crate) message: String,
    pub(crate) tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
}

impl ToolFailure {
    fn type_error(tool: &str, message: String, path: Option<String>) -> Self {
        ToolFailure { name: "TypeError", message, tool: tool.into(), code: None, path }
    }
}

/// What settles next in the sandbox.
pub(crate) enum Settlement {
    /// JSON text from `tool` (named in the error if the text does not parse).
    Value {
        json: Arc<str>,
        tool: Arc<str>,
    },
    Error(ToolFailure),
    Timer,
}

/// What the sandbox thread should do next.
pub(crate) enum Next {
    Settle(u64, Settlement),
    /// A tool's line for the logs.
    Log(LogLine),
    /// Nothing is pending: an unsettled program can never finish.
    Idle,
    /// Nothing can settle until a person decides on the call awaiting approval
    /// ([`Bridge::awaiting`]).
    Paused,
    TimedOut,
    Cancelled,
}

/// Cancels an execution from any thread.
#[derive(Clone, Debug)]
pub(crate) struct CancelHandle {
    flag: Arc<AtomicBool>,
    tx: Sender<Wake>,
}

impl CancelHandle {
    /// True while the execution exists: its bridge holds the other reference to the flag.
    pub(crate) fn is_live(&self) -> bool {
        Arc::strong_count(&self.flag) > 1
    }

    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Wake::Cancel);
    }
}

struct Queued {
    id: u64,
    entry: Arc<Entry>,
    args: Value,
    since: Instant,
}

/// A call of a tool that needs approval, held back until someone decides on it.
pub(crate) struct Awaiting {
    id: u64,
    entry: Arc<Entry>,
    pub(crate) args: Value,
    /// The id a person answers with ([`Engine::resume`](crate::Engine::resume)).
    pub(crate) approval: String,
    /// When the call was made.
    pub(crate) at: std::time::SystemTime,
}

impl Awaiting {
    pub(crate) fn tool(&self) -> &str {
        &self.entry.label
    }
}

/// A fresh approval id: not guessable, so holding one is what lets a caller decide.
fn approval_id() -> String {
    use sha2::Digest;
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hash = sha2::Sha256::new();
    hash.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hash.update(std::process::id().to_le_bytes());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hash.update(now.as_nanos().to_le_bytes());
    // The address of a fresh allocation adds what ASLR gives.
    hash.update((Box::new(0u8).as_ref() as *const u8 as usize).to_le_bytes());
    let digest = hash.finalize();
    format!("apr_{}", digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A tool call still running, for the error that names what a timed-out program waited on.
struct InFlight {
    task: tokio::task::AbortHandle,
    tool: Arc<str>,
    since: Instant,
}

/// What a program called: a registered tool, by its position in [`Registry::entries`], or one
/// of the runtime's own functions (`codemode.list`, ...), by name.
pub(crate) enum Target<'a> {
    Tool(usize),
    Builtin(&'a str),
    /// A tool the runtime provides (`codemode.readResource`).
    Entry(&'a Arc<Entry>),
}

impl Target<'_> {
    /// Whether the call counts in `stats.tool_calls` and against `max_tool_calls`. Reading a
    /// resource reaches a server: it is a tool call in all but name. Discovery
    /// (`codemode.list/search/describe`) and the store are answered by the host and are not
    /// (the deadline bounds a program that loops on them).
    pub(crate) fn counts(&self) -> bool {
        !matches!(self, Target::Builtin(name) if *name != "readResource")
    }
}

pub(crate) struct Bridge {
    registry: Arc<Registry>,
    /// The registry's entries, which a sandbox names by position.
    tools: Arc<[Arc<Entry>]>,
    log_sink: Option<LogSink>,
    client: Option<Arc<dyn ClientRequests>>,
    handle: tokio::runtime::Handle,
    max_calls: u32,
    max_concurrent: usize,
    tx: Sender<Wake>,
    rx: Receiver<Wake>,
    /// Lines tools add to the logs; read before any settlement, so a tool's lines come before
    /// its result even when it answers inline.
    log_tx: Sender<LogLine>,
    log_rx: Receiver<LogLine>,
    cancelled: Arc<AtomicBool>,
    next_id: u64,
    calls: u32,
    in_flight: HashMap<u64, InFlight>,
    queued: VecDeque<Queued>,
    /// Calls held for approval, in the order they were made.
    awaiting: VecDeque<Awaiting>,
    ready: VecDeque<(u64, Settlement)>,
    timers: BTreeSet<(Instant, u64)>,
    timer_due: HashMap<u64, Instant>,
    pub(crate) tool_result_bytes: u64,
    pub(crate) samples: TextSample,
    /// The session the execution runs in, and how many bytes its store may hold.
    session: Option<(Arc<SessionState>, usize)>,
    audit: Option<Audit>,
    /// What to tokenize in the output, and the tokens of this session (or execution).
    privacy: Option<(Privacy, Arc<std::sync::Mutex<Vault>>)>,
    /// Values tokenized in the logs so far, by kind.
    pub(crate) tokenized: std::collections::BTreeMap<String, u64>,
}

/// The tool calls of an execution, recorded as they start and settle.
struct Audit {
    started: Instant,
    records: Vec<CallRecord>,
    /// Calls not settled yet: their place in `records`.
    by_id: HashMap<u64, usize>,
}

/// The longest key `codemode.store` takes.
const MAX_STORE_KEY_BYTES: usize = 1024;

impl Bridge {
    pub(crate) fn new(registry: Arc<Registry>, handle: tokio::runtime::Handle, limits: &Limits) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (log_tx, log_rx) = std::sync::mpsc::channel();
        Bridge {
            tools: registry.entries(),
            registry,
            log_sink: None,
            client: None,
            handle,
            max_calls: limits.max_tool_calls,
            max_concurrent: limits.max_concurrent_tool_calls.max(1),
            tx,
            rx,
            log_tx,
            log_rx,
            cancelled: Arc::new(AtomicBool::new(false)),
            next_id: 1,
            calls: 0,
            in_flight: HashMap::new(),
            queued: VecDeque::new(),
            awaiting: VecDeque::new(),
            ready: VecDeque::new(),
            timers: BTreeSet::new(),
            timer_due: HashMap::new(),
            tool_result_bytes: 0,
            samples: TextSample::default(),
            session: None,
            audit: None,
            privacy: None,
            tokenized: Default::default(),
        }
    }

    pub(crate) fn cancel_handle(&self) -> CancelHandle {
        CancelHandle { flag: Arc::clone(&self.cancelled), tx: self.tx.clone() }
    }

    pub(crate) fn set_log_sink(&mut self, sink: Option<LogSink>) {
        self.log_sink = sink;
    }

    pub(crate) fn set_client(&mut self, client: Option<Arc<dyn ClientRequests>>) {
        self.client = client;
    }

    /// Hands a kept console line to the caller's sink, if any.
    pub(crate) fn emit_log(&self, line: &LogLine) {
        if let Some(sink) = &self.log_sink {
            sink(line);
        }
    }

    /// Whether log lines are tokenized (privacy is on).
    pub(crate) fn redacts(&self) -> bool {
        self.privacy.is_some()
    }

    /// Whether the caller takes log lines as they are written.
    pub(crate) fn streams(&self) -> bool {
        self.log_sink.is_some()
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancelled)
    }

    pub(crate) fn calls(&self) -> u32 {
        self.calls
    }

    /// The tool calls not finished now, longest waiting first: running, then queued behind the
    /// concurrency limit.
    pub(crate) fn pending(&self) -> Vec<PendingCall> {
        let now = Instant::now();
        let waited = |since: Instant| now.saturating_duration_since(since).as_millis() as u64;
        let mut running: Vec<PendingCall> = self
            .in_flight
            .values()
            .map(|c| PendingCall { tool: c.tool.to_string(), waited_ms: waited(c.since), queued: false })
            .collect();
        running.sort_by_key(|c| std::cmp::Reverse(c.waited_ms));
        let queued = self.queued.iter().map(|q| PendingCall {
            tool: q.entry.label.to_string(),
            waited_ms: waited(q.since),
            queued: true,
        });
        running.extend(queued);
        running
    }

    /// Gives the execution its session's store.
    pub(crate) fn set_session(&mut self, session: Arc<SessionState>, store_bytes: usize) {
        self.session = Some((session, store_bytes));
    }

    /// `codemode.store(key, value)` (`value` absent removes the key) and
    /// `codemode.load(key)`, which answers `{found, value}`.
    fn store(&self, name: &str, args: &Value) -> Result<Value, String> {
        let Some((session, limit)) = &self.session else {
            return Err("this execution is not part of a session, so nothing it stores could outlive it; \
                        run it in a session to keep values between executions"
                .into());
        };
        let key = match args.get("key") {
            Some(Value::String(key)) if !key.is_empty() && key.len() <= MAX_STORE_KEY_BYTES => key,
            _ => return Err(format!("the key must be a string of 1 to {MAX_STORE_KEY_BYTES} bytes")),
        };
        let mut store = session.store.lock().expect("store lock");
        if name == "store" {
            store.put(key, args.get("value"), *limit)?;
            return Ok(Value::Null);
        }
        Ok(match store.get(key) {
            Some(text) => {
                let value: Value = serde_json::from_str(text).expect("the store keeps JSON");
                serde_json::json!({"found": true, "value": value})
            }
            None => serde_json::json!({"found": false}),
        })
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Starts a tool call and returns its id. `args` is the snapshot of the JS arguments, or why
    /// they could not be taken. Errs only when the call limit is passed, which ends the run.
    pub(crate) fn call(&mut self, target: Target<'_>, args: Result<Value, String>) -> Result<u64, ErrorKind> {
        let id = self.fresh_id();
        // Reading a resource reaches a server: it is a tool call in all but name.
        let read_resource;
        let target = match target {
            Target::Builtin("readResource") => {
                read_resource = self.registry.read_resource_entry();
                Target::Entry(&read_resource)
            }
            other => other,
        };
        if target.counts() {
            self.calls += 1;
            if self.calls > self.max_calls {
                return Err(ErrorKind::ToolCallLimit);
            }
        }
        let entry = match target {
            Target::Builtin(name) => {
                let label = format!("{BUILTIN_NAMESPACE}.{name}");
                let settlement =
                    match args.map_err(|why| format!("{label}: {why}")).and_then(|a| match name {
                        "store" | "load" => self.store(name, &a).map_err(|e| format!("{label}: {e}")),
                        _ => builtin(&self.registry, name, &a),
                    }) {
                        Ok(value) => {
                            Settlement::Value { json: Arc::from(value.to_string()), tool: label.into() }
                        }
                        Err(message) => Settlement::Error(ToolFailure::type_error(&label, message, None)),
                    };
                self.ready.push_back((id, settlement));
                return Ok(id);
            }
            Target::Entry(entry) => Arc::clone(entry),
            Target::Tool(index) => match self.tools.get(index) {
                Some(entry) => Arc::clone(entry),
                None => {
                    let failure = ToolFailure::type_error("?", format!("no tool has index {index}"), None);
                    self.ready.push_back((id, Settlement::Error(failure)));
                    return Ok(id);
                }
            },
        };
        let label = &entry.label;
        let args = match args {
            Ok(mut args) => {
                // A token this session made reaches the tool as the value it stands for.
                if let Some((_, vault)) = &self.privacy {
                    vault.lock().expect("vault lock").resolve_json(&mut args);
                }
                args
            }
            Err(why) => {
                self.record(id, label, None);
                let failure = ToolFailure::type_error(label, format!("{label}: {why}"), None);
                self.settle(id, Settlement::Error(failure));
                return Ok(id);
            }
        };
        self.record(id, label, Some(&args));
        if !entry.validator.is_valid(&args) {
            let err = entry.validator.iter_errors(&args).next().expect("an invalid instance has an error");
            let path = js_path(&err.instance_path().to_string());
            let mut detail = err.to_string();
            if detail.len() > 300 {
                let mut end = 300;
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                detail.truncate(end);
                detail.push('…');
            }
            let message = format!("{label}: invalid arguments at {path}: {detail}");
            let failure = ToolFailure::type_error(label, message, Some(path));
            self.settle(id, Settlement::Error(failure));
            return Ok(id);
        }
        if entry.tool.requires_approval() {
            self.mark(id, "pending");
            let at = std::time::SystemTime::now();
            self.awaiting.push_back(Awaiting { id, entry, args, approval: approval_id(), at });
            return Ok(id);
        }
        self.start(Queued { id, entry, args, since: Instant::now() });
        Ok(id)
    }

    /// Dispatches a call now, or queues it behind the concurrency limit.
    fn start(&mut self, call: Queued) {
        if self.in_flight.len() < self.max_concurrent {
            self.dispatch(call);
        } else {
            self.queued.push_back(call);
        }
    }

    /// The call the execution waits on a decision for: the oldest held for approval.
    pub(crate) fn awaiting(&self) -> Option<&Awaiting> {
        self.awaiting.front()
    }

    /// Decides on the call [`Bridge::awaiting`] names: approved, it goes to its tool now;
    /// rejected, it rejects in the program with a `ToolError` whose code is `rejected`.
    pub(crate) fn decide(&mut self, approve: bool, reason: Option<&str>) {
        let Some(Awaiting { id, entry, args, .. }) = self.awaiting.pop_front() else { return };
        if approve {
            self.mark(id, "approved");
            self.start(Queued { id, entry, args, since: Instant::now() });
            return;
        }
        self.mark(id, "rejected");
        let label = &entry.label;
        let message = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(reason) => format!("{label}: the call was rejected: {reason}"),
            None => format!("{label}: the call was rejected"),
        };
        let failure = ToolFailure {
            name: "ToolError",
            message,
            tool: label.to_string(),
            code: Some("rejected".into()),
            path: None,
        };
        self.settle(id, Settlement::Error(failure));
    }

    /// Notes the approval state of a call in its audit record.
    fn mark(&mut self, id: u64, approval: &str) {
        let Some(audit) = &mut self.audit else { return };
        if let Some(record) = audit.by_id.get(&id).and_then(|&i| audit.records.get_mut(i)) {
            record.approval = Some(approval.to_string());
        }
    }

    /// Runs the handler. Its first poll happens right here, on the sandbox thread, inside the
    /// caller's runtime: a handler that answers without waiting (an in-memory lookup) settles
    /// with no thread hop. Only a handler that is still pending becomes a tokio task, whose
    /// completion wakes this thread through the channel.
    fn dispatch(&mut self, call: Queued) {
        let Queued { id, entry, args, since } = call;
        let handler = Arc::clone(entry.tool.handler());
        let label = Arc::clone(&entry.label);
        let span = tracing::info_span!(
            "tool_call",
            tool = %label,
            namespace = tracing::field::Empty,
            id,
            args_bytes = tracing::field::Empty,
            result_bytes = tracing::field::Empty,
            outcome = tracing::field::Empty,
            error_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // Sizes only, never the arguments or the result: they may be private.
        if !span.is_disabled() {
            span.record("namespace", label.split_once('.').map_or(&*label, |(ns, _)| ns));
            span.record("args_bytes", args.to_string().len());
        }
        let caller = Caller {
            tx: self.tx.clone(),
            logs: self.log_tx.clone(),
            tool: Arc::clone(&label),
            client: self.client.clone(),
        };
        let mut call = Box::pin(
            async move {
                let started = Instant::now();
                let result = AssertUnwindSafe(CALLER.scope(caller, handler.call(args))).catch_unwind().await;
                let result = match result {
                    Ok(Ok(output)) => Ok((Arc::<str>::from(output.into_text()), label)),
                    Ok(Err(ToolError { code, message })) => Err(ToolFailure {
                        name: "ToolError",
                        message: format!("{label}: {message}"),
                        tool: label.to_string(),
                        code: Some(code),
                        path: None,
                    }),
                    Err(panic) => Err(ToolFailure {
                        name: "ToolError",
                        message: format!("{label}: the tool panicked: {}", panic_message(&panic)),
                        tool: label.to_string(),
                        code: Some("panic".into()),
                        path: None,
                    }),
                };
                tracing::debug!(
                    ok = result.is_ok(),
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "tool call done"
                );
                let span = tracing::Span::current();
                match &result {
                    Ok((text, _)) => {
                        span.record("outcome", "ok");
                        span.record("result_bytes", text.len());
                    }
                    Err(failure) => {
                        span.record("outcome", "error");
                        span.record("error_code", failure.code.as_deref());
                        span.record("otel.status_code", "ERROR");
                    }
                }
                result
            }
            .instrument(span),
        );
        let first = {
            let _runtime = self.handle.enter();
            call.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        };
        match first {
            Poll::Ready(result) => {
                let settlement = self.settlement(result);
                self.settle(id, settlement);
            }
            Poll::Pending => {
                let tx = self.tx.clone();
                let task = self.handle.spawn(async move {
                    let result = call.await;
                    let _ = tx.send(Wake::Done(id, result));
                });
                let tool = Arc::clone(&entry.label);
                self.in_flight.insert(id, InFlight { task: task.abort_handle(), tool, since });
            }
        }
    }

    /// Records a tool call as it starts, when the execution keeps an audit.
    fn record(&mut self, id: u64, tool: &str, args: Option<&Value>) {
        let Some(audit) = &mut self.audit else { return };
        use sha2::Digest;
        let text = args.map(Value::to_string).unwrap_or_default();
        let hash = sha2::Sha256::digest(text.as_bytes());
        audit.by_id.insert(id, audit.records.len());
        audit.records.push(CallRecord {
            tool: tool.to_string(),
            argument_bytes: text.len() as u64,
            argument_sha256: hash.iter().map(|b| format!("{b:02x}")).collect(),
            started_ms: audit.started.elapsed().as_secs_f64() * 1000.0,
            duration_ms: None,
            outcome: "pending".into(),
            error_code: None,
            result_bytes: None,
            approval: None,
        });
    }

    /// A tool call's settlement, for the sandbox's next turn (and the audit).
    fn settle(&mut self, id: u64, settlement: Settlement) {
        if let Some(audit) = &mut self.audit {
            if let Some(record) = audit.by_id.remove(&id).and_then(|i| audit.records.get_mut(i)) {
                let now = audit.started.elapsed().as_secs_f64() * 1000.0;
                record.duration_ms = Some(now - record.started_ms);
                match &settlement {
                    Settlement::Value { json, .. } => {
                        record.outcome = "ok".into();
                        record.result_bytes = Some(json.len() as u64);
                    }
                    Settlement::Error(failure) => {
                        record.outcome = "error".into();
                        record.error_code = Some(match (&failure.code, failure.path.is_some()) {
                            (Some(code), _) => code.clone(),
                            (None, true) => "invalid_arguments".into(),
                            (None, false) => "invalid_call".into(),
                        });
                    }
                    Settlement::Timer => {}
                }
            }
        }
        self.ready.push_back((id, settlement));
    }

    /// Tokenizes private values in what the program writes, and resolves tokens in the
    /// arguments of its tool calls, with `vault`.
    pub(crate) fn set_privacy(&mut self, privacy: Privacy, vault: Arc<std::sync::Mutex<Vault>>) {
        self.privacy = Some((privacy, vault));
    }

    /// A line for the logs with its private values tokenized.
    pub(crate) fn redact(&mut self, text: String) -> String {
        match &self.privacy {
            Some((privacy, vault)) => {
                vault.lock().expect("vault lock").tokenize(privacy, &text, &mut self.tokenized)
            }
            None => text,
        }
    }

    /// Keeps a record of every tool call from now on ([`Bridge::take_calls`]).
    pub(crate) fn set_audit(&mut self, on: bool) {
        self.audit =
            on.then(|| Audit { started: Instant::now(), records: Vec::new(), by_id: HashMap::new() });
    }

    /// The calls recorded so far (a paused execution's; the final outcome has them all).
    pub(crate) fn calls_so_far(&self) -> Vec<CallRecord> {
        self.audit.as_ref().map(|a| a.records.clone()).unwrap_or_default()
    }

    /// The calls recorded, in order.
    pub(crate) fn take_calls(&mut self) -> Vec<CallRecord> {
        self.audit.as_mut().map(|a| std::mem::take(&mut a.records)).unwrap_or_default()
    }

    fn settlement(&mut self, result: CallResult) -> Settlement {
        match result {
            Ok((text, tool)) => {
                self.tool_result_bytes += text.len() as u64;
                self.samples.push(&text);
                Settlement::Value { json: text, tool }
            }
            Err(failure) => Settlement::Error(failure),
        }
    }

    /// Schedules a timer `delay` from now and returns its id.
    pub(crate) fn timer(&mut self, delay: Duration) -> u64 {
        let id = self.fresh_id();
        let due = Instant::now() + delay;
        self.timers.insert((due, id));
        self.timer_due.insert(id, due);
        id
    }

    pub(crate) fn clear_timer(&mut self, id: u64) {
        if let Some(due) = self.timer_due.remove(&id) {
            self.timers.remove(&(due, id));
        }
    }

    /// Blocks the sandbox thread until something settles, the deadline passes, or the run is
    /// cancelled.
    pub(crate) fn next(&mut self, deadline: Instant) -> Next {
        loop {
            if let Ok(line) = self.log_rx.try_recv() {
                return Next::Log(line);
            }
            if let Some((id, s)) = self.ready.pop_front() {
                return Next::Settle(id, s);
            }
            if self.cancelled.load(Ordering::SeqCst) {
                return Next::Cancelled;
            }
            let now = Instant::now();
            if let Some(&(due, id)) = self.timers.first() {
                if due <= now {
                    self.timers.pop_first();
                    self.timer_due.remove(&id);
                    return Next::Settle(id, Settlement::Timer);
                }
            }
            if self.in_flight.is_empty() && self.timers.is_empty() {
                return if self.awaiting.is_empty() { Next::Idle } else { Next::Paused };
            }
            if now >= deadline {
                return Next::TimedOut;
            }
            let wake_at = self.timers.first().map_or(deadline, |&(due, _)| due.min(deadline));
            match self.rx.recv_timeout(wake_at - now) {
                Ok(Wake::Done(id, result)) => {
                    self.in_flight.remove(&id);
                    while self.in_flight.len() < self.max_concurrent {
                        let Some(q) = self.queued.pop_front() else { break };
                        self.dispatch(q);
                    }
                    // Behind any queued call that completed inline, and after the lines the
                    // tool wrote, which the next turn reads first.
                    let settlement = self.settlement(result);
                    self.settle(id, settlement);
                }
                Ok(Wake::Logged) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Wake::Cancel) => return Next::Cancelled,
                Err(RecvTimeoutError::Disconnected) => return Next::Idle,
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Handlers still running when the program ends are not waited for.
        for call in self.in_flight.values() {
            call.task.abort();
        }
    }
}

/// `/rows/0/id` → `args.rows[0].id`: the path as the program wrote it.
fn js_path(pointer: &str) -> String {
    let mut out = String::from("args");
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            crate::registry::push_property(&mut out, &seg);
        }
    }
    out
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_pointers_read_as_js_paths() {
        assert_eq!(super::js_path(""), "args");
        assert_eq!(super::js_path("/sheetId"), "args.sheetId");
        assert_eq!(super::js_path("/rows/3/id"), "args.rows[3].id");
        assert_eq!(super::js_path("/a b/x~1y"), "args[\"a b\"][\"x/y\"]");
    }
}
