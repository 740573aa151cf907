//! Upstream MCP servers as tool sources: an [`Upstream`] connects to a server (a child process
//! over stdio, or streamable HTTP), lists its tools, and registers them as a namespace whose
//! calls become `tools/call`.
//!
//! Results: `structuredContent` when the server sends it; otherwise a single text block is the
//! string (parsed as JSON when the tool's output schema says object); several text blocks are
//! an array of strings; anything else (images, audio, resources) is the array of MCP content
//! objects as they came. `isError: true` rejects the call with the server's text.
//!
//! One connection per upstream, shared by every execution. When the server dies or the
//! connection drops, the calls in flight fail with code `upstream_disconnected`, and the next
//! call connects again — at most once per backoff interval (100 ms, doubling to 5 s while it
//! keeps failing). Once [`Upstream::follow`] has tied it to an engine, the namespace is listed
//! again whenever the server sends `notifications/tools/list_changed` and after a reconnect.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    ElicitRequestParams, ElicitResult, ErrorData as McpError, NumberOrString, ProgressNotificationParam,
    ProgressToken, ReadResourceRequestParams, RequestParamsMeta, ServerNotification,
};
// Servers of protocol 2025-11-25, which is what upstream servers speak today, still send
// `notifications/message` and ask for sampling and roots; SEP-2577 deprecates them for later
// versions.
#[allow(deprecated)]
use rmcp::model::{
    CreateMessageRequestParams, CreateMessageResult, ListRootsResult, LoggingLevel,
    LoggingMessageNotificationParam,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ServiceExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{Mutex, Notify};
use tracing::Instrument;

use super::listing::{Listing, TappedHttp, Tee};
use super::shapes::ShapeStore;
use crate::bridge::CallContext;
use crate::definitions::ToolDefinition;
use crate::engine::{Engine, WeakEngine};
use crate::error::{RegistryError, ToolError};
use crate::outcome::LogLevel;
use crate::registry::{BoxFuture, Registry, ResourceReader, ResultType, Tool};

/// How to reach one upstream server, and the namespace its tools get.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// The namespace of its tools in programs.
    pub namespace: String,
    /// How to reach it.
    pub transport: Transport,
    /// How long one `tools/call` may take (default 30 s).
    pub call_timeout: Duration,
    /// Per-tool overrides of `call_timeout`, by the server's tool name.
    pub tool_timeouts: BTreeMap<String, Duration>,
    /// Where learned result types are kept (`shapes/<namespace>.json` inside it); `None`
    /// keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// Which of sampling, elicitation and roots requests the server is told are taken
    /// (default none). Set them when executions carry a client to forward them to
    /// ([`ExecuteOptions::client`](crate::ExecuteOptions::client)), as `codemode mcp` does:
    /// a server hides the tools that need them from a client that does not take them.
    pub forward_client_requests: ClientFeatures,
}

/// The requests of a server that a client takes: `sampling/createMessage`,
/// `elicitation/create`, `roots/list`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientFeatures {
    /// LLM completions (`sampling/createMessage`).
    pub sampling: bool,
    /// Input from the user (`elicitation/create`).
    pub elicitation: bool,
    /// The client's roots (`roots/list`).
    pub roots: bool,
}

impl ClientFeatures {
    /// All three.
    pub const ALL: ClientFeatures = ClientFeatures { sampling: true, elicitation: true, roots: true };

    /// What an MCP client declared in its capabilities.
    #[allow(deprecated)] // sampling and roots: upstream servers of 2025-11-25 still ask
    pub fn of(capabilities: &ClientCapabilities) -> ClientFeatures {
        ClientFeatures {
            sampling: capabilities.sampling.is_some(),
            elicitation: capabilities.elicitation.is_some(),
            roots: capabilities.roots.is_some(),
        }
    }

    /// Whether requests of `method` are taken.
    pub fn takes(self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" => self.elicitation,
            "roots/list" => self.roots,
            _ => false,
        }
    }

    fn capabilities(self) -> ClientCapabilities {
        let mut declared = serde_json::Map::new();
        for (name, taken) in
            [("sampling", self.sampling), ("elicitation", self.elicitation), ("roots", self.roots)]
        {
            if taken {
                declared.insert(name.into(), json!({}));
            }
        }
        serde_json::from_value(Value::Object(declared)).expect("client capabilities")
    }
}

/// How an upstream server is reached. Values of `env` and `headers` are already resolved:
/// secrets stay host-side and never reach the sandbox, logs, errors or [`UpstreamStatus`].
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program to run.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// The server's whole environment: it inherits nothing from this process
        /// (`Config::upstreams` puts the few variables of `config::PASSED_ENV` here).
        env: BTreeMap<String, String>,
    },
    /// A server speaking streamable HTTP at `url`.
    Http {
        /// Its endpoint, such as `http://127.0.0.1:3001/mcp`.
        url: String,
        /// Headers sent with every request (`Authorization`, say).
        headers: BTreeMap<String, String>,
        /// How to obtain a token, for a server that requires OAuth.
        oauth: Option<super::OAuthConfig>,
    },
}

impl Transport {
    /// `"stdio"` or `"http"`, as status and spans name it.
    fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        }
    }
}

impl UpstreamConfig {
    /// A server started as `command args...`, for `namespace`.
    pub fn new(namespace: impl Into<String>, command: impl Into<String>, args: Vec<String>) -> Self {
        Self::with_transport(
            namespace,
            Transport::Stdio { command: command.into(), args, env: BTreeMap::new() },
        )
    }

    /// A server at a streamable HTTP `url`, for `namespace`.
    pub fn http(namespace: impl Into<String>, url: impl Into<String>) -> Self {
        Self::with_transport(
            namespace,
            Transport::Http { url: url.into(), headers: BTreeMap::new(), oauth: None },
        )
    }

    /// A server reached through `transport`, for `namespace`, with the default timeouts.
    pub fn with_transport(namespace: impl Into<String>, transport: Transport) -> Self {
        UpstreamConfig {
            namespace: namespace.into(),
            transport,
            call_timeout: Duration::from_secs(30),
            tool_timeouts: BTreeMap::new(),
            state_dir: None,
            forward_client_requests: ClientFeatures::default(),
        }
    }

    /// The file of this server's learned result types, in the state directory.
    fn shapes_file(&self) -> Option<PathBuf> {
        self.state_file("shapes", "json")
    }

    /// This server's file in the folder `kind` of the state directory.
    pub(crate) fn state_file(&self, kind: &str, extension: &str) -> Option<PathBuf> {
        let safe: String = self
            .namespace
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .collect();
        Some(self.state_dir.as_ref()?.join(kind).join(format!("{safe}.{extension}")))
    }

    /// An error about this server.
    pub(crate) fn error(&self, message: String) -> UpstreamError {
        UpstreamError::Connect { namespace: self.namespace.clone(), target: self.target(), message }
    }

    /// The error of a server that needs a token codemode does not have.
    pub(crate) fn needs_login(&self) -> UpstreamError {
        self.error(format!("it needs authorization: run `codemode auth login {}`", self.namespace))
    }

    /// Where the server is, for messages: the command, or the URL without credentials or query.
    fn target(&self) -> String {
        match &self.transport {
            Transport::Stdio { command, .. } => command.clone(),
            Transport::Http { url, .. } => {
                let url = url.split(['?', '#']).next().unwrap_or(url);
                match url.split_once("://") {
                    Some((scheme, rest)) => {
                        let rest = rest
                            .split_once('@')
                            .filter(|(user, _)| !user.contains('/'))
                            .map_or(rest, |(_, r)| r);
                        format!("{scheme}://{rest}")
                    }
                    None => url.to_string(),
                }
            }
        }
    }
}

/// Why an upstream server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server could not be reached or did not complete the MCP handshake.
    #[error("upstream {namespace:?} ({target}): {message}")]
    Connect {
        /// Its namespace.
        namespace: String,
        /// The command run or the URL used (without credentials).
        target: String,
        /// What went wrong.
        message: String,
    },
    /// Its tools could not be registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What [`Upstream::status`] reports; the daemon's `stats` lists one per server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamStatus {
    /// Its namespace.
    pub namespace: String,
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// The command or URL (without credentials).
    pub target: String,
    /// True while a connection is open.
    pub connected: bool,
    /// The child process, for stdio servers that are running.
    pub pid: Option<u32>,
    /// Its tools in the registry.
    pub tools: usize,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// `tools/call` requests sent.
    pub calls: u64,
    /// Calls that failed (timeouts, lost connections, server errors, `isError` results).
    pub failed_calls: u64,
    /// The last connection or listing failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// Why the file of learned result types is not used, if it is not.
    pub shapes_problem: Option<String>,
    /// Tools the server lists that are left out of the namespace, each with why.
    pub withheld: Vec<String>,
}

/// What the server tells the client: a changed tool list (the upstream lists its tools
/// again), and progress and log messages, which go to the logs of the executions whose calls
/// are in flight; and what it asks of the client (sampling, elicitation, roots), which goes to
/// the client of such an execution.
#[derive(Clone, Default)]
struct Listener {
    /// What is advertised when connecting; [`Upstream::advertise`] changes it.
    forward: Arc<std::sync::Mutex<ClientFeatures>>,
    changed: Arc<Notify>,
    /// The calls in flight whose executions take log lines, by progress token.
    calls: Arc<std::sync::Mutex<HashMap<i64, CallContext>>>,
    /// What the stdio reader finds in `tools/list` responses.
    listing: Arc<Listing>,
}

struct Tracked<'a> {
    listener: &'a Listener,
    token: i64,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.listener.calls.lock().expect("call logs lock").remove(&self.token);
    }
}

#[allow(deprecated)] // sampling and roots, as above
impl ClientHandler for Listener {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = self.forward.lock().expect("features lock").capabilities();
        info
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.changed.notify_one();
        std::future::ready(())
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        self.forward_request("sampling/createMessage", &params).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        self.forward_request("elicitation/create", &params).await
    }

    async fn list_roots(&self, _context: RequestContext<RoleClient>) -> Result<ListRootsResult, McpError> {
        self.forward_request("roots/list", &serde_json::Map::new()).await
    }
}

impl Listener {
    /// Sends a request of the server to the client of the execution whose call on this
    /// connection started last among those whose client takes `method`. A request names no
    /// call (on stdio nothing ties it to one), and the latest call is the likeliest cause.
    async fn forward_request<P: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, McpError> {
        let client = self
            .calls
            .lock()
            .expect("call logs lock")
            .iter()
            .filter_map(|(token, call)| Some((*token, Arc::clone(call.client_for(method)?))))
            .max_by_key(|(token, _)| *token)
            .map(|(_, client)| client);
        let Some(client) = client else {
            return Err(McpError::invalid_request(
                format!(
                    "codemode cannot forward {method}: no call to this server is running for a \
                     client that takes it"
                ),
                None,
            ));
        };
        let params =
            serde_json::to_value(params).map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let result = client.request(method, params).await.map_err(|e| {
            McpError::internal_error(format!("codemode's client refused {method}: {e}"), None)
        })?;
        serde_json::from_value(result).map_err(|e| {
            McpError::internal_error(
                format!("codemode's client answered {method} with an invalid result: {e}"),
                None,
            )
        })
    }

    /// Registers a call in flight; the guard removes it.
    fn track(&self, token: i64, log: CallContext) -> Tracked<'_> {
        self.calls.lock().expect("call logs lock").insert(token, log);
        Tracked { listener: self, token }
    }

    /// Sees every message from the server in order, before rmcp does: progress and log
    /// notifications reach the execution's logs before the call's response can (rmcp hands
    /// notifications to handlers on tasks of their own, which may run after the response).
    #[allow(deprecated)] // notifications/message, as above
    fn observe(&self, message: &rmcp::service::RxJsonRpcMessage<RoleClient>) {
        let rmcp::model::JsonRpcMessage::Notification(n) = message else { return };
        match &n.notification {
            ServerNotification::ProgressNotification(p) => {
                if let NumberOrString::Number(token) = p.params.progress_token.0 {
                    if let Some(log) = self.calls.lock().expect("call logs lock").get(&token) {
                        log.log(LogLevel::Info, &progress_line(&p.params));
                    }
                }
            }
            ServerNotification::LoggingMessageNotification(m) => self.log_message(&m.params),
            _ => {}
        }
    }

    /// A log message names no request: every call in flight on this connection may be its
    /// cause, so each of their executions sees it.
    #[allow(deprecated)] // notifications/message, as above
    fn log_message(&self, params: &LoggingMessageNotificationParam) {
        let level = match params.level {
            LoggingLevel::Debug => LogLevel::Debug,
            LoggingLevel::Info | LoggingLevel::Notice => LogLevel::Info,
            LoggingLevel::Warning => LogLevel::Warn,
            _ => LogLevel::Error,
        };
        let data = match &params.data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let message = match &params.logger {
            Some(logger) => format!("[{logger}] {data}"),
            None => data,
        };
        let calls = self.calls.lock().expect("call logs lock");
        if calls.is_empty() {
            tracing::debug!(%message, "upstream log message with no call in flight");
        }
        for log in calls.values() {
            log.log(level, &message);
        }
    }
}

/// `progress 1/3: message`, numbers without a needless `.0`.
fn progress_line(p: &ProgressNotificationParam) -> String {
    let mut line = format!("progress {}", p.progress);
    if let Some(total) = p.total {
        line.push_str(&format!("/{total}"));
    }
    if let Some(message) = &p.message {
        line.push_str(": ");
        line.push_str(message);
    }
    line
}

/// A connection to the server, and whether its transport has ended.
struct Client {
    service: RunningService<RoleClient, Listener>,
    /// Set as soon as the transport reports its end (the server exited or the stream closed).
    /// rmcp's own `is_closed` turns true only after its service loop has spent up to 5 s
    /// draining, and a call sent in that window waits unsent and then fails.
    ended: Arc<AtomicBool>,
    /// A stdio server's process, killed when the client is dropped.
    _child: Option<tokio::process::Child>,
    /// A client-credentials token to renew before calls, for an OAuth server.
    renewal: Option<super::oauth::Renewal>,
}

impl Client {
    fn is_closed(&self) -> bool {
        self.ended.load(Ordering::Relaxed) || self.service.is_closed()
    }
}

impl std::ops::Deref for Client {
    type Target = RunningService<RoleClient, Listener>;
    fn deref(&self) -> &Self::Target {
        &self.service
    }
}

/// A transport that records when it ends.
struct Watched<T> {
    inner: T,
    ended: Arc<AtomicBool>,
    listener: Listener,
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient> for Watched<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await;
        match &message {
            Some(m) => self.listener.observe(m),
            None => self.ended.store(true, Ordering::Relaxed),
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.ended.store(true, Ordering::Relaxed);
        self.inner.close().await
    }
}

/// Serves `transport` as a client, watching for its end.
async fn serve_watched<T>(
    listener: Listener,
    transport: T,
    child: Option<tokio::process::Child>,
) -> Result<Client, rmcp::service::ClientInitializeError>
where
    T: rmcp::transport::Transport<RoleClient> + Send + 'static,
{
    let ended = Arc::new(AtomicBool::new(false));
    let watched = Watched { inner: transport, ended: Arc::clone(&ended), listener: listener.clone() };
    let service = listener.serve(watched).await?;
    Ok(Client { service, ended, _child: child, renewal: None })
}

/// A connected upstream server.
pub struct Upstream {
    config: UpstreamConfig,
    state: Mutex<State>,
    listener: Listener,
    /// Progress tokens of calls, unique on this upstream.
    next_token: AtomicU64,
    engine: std::sync::Mutex<Option<WeakEngine>>,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    /// The result types learned for its tools that declare no output schema.
    shapes: Arc<ShapeStore>,
    /// Tools of the last listing left out of the namespace, each with why.
    withheld: std::sync::Mutex<Vec<String>>,
}

/// One `tools/list`: the tools, and what rmcp's types leave out of them.
struct Listed {
    tools: Vec<rmcp::model::Tool>,
    /// `execution.taskSupport` by tool name (see `listing.rs`).
    task_support: HashMap<String, String>,
}

struct State {
    client: Option<Arc<Client>>,
    pid: Option<u32>,
    next_attempt: Instant,
    backoff: Duration,
    tools: usize,
    reconnects: u64,
    last_error: Option<String>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Upstream {
    /// Connects to the server, lists its tools and adds them to `registry` under the
    /// configured namespace (with their output schemas, so they get typed declarations).
    pub async fn register(
        config: UpstreamConfig,
        registry: &mut Registry,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let forward = Arc::new(std::sync::Mutex::new(config.forward_client_requests));
        let listener = Listener { forward, ..Listener::default() };
        let (client, pid) = connect(&config, &listener).await?;
        let shapes = match config.shapes_file() {
            Some(path) => ShapeStore::open(path),
            None => ShapeStore::in_memory(),
        };
        if let Some(problem) = shapes.problem() {
            tracing::warn!(upstream = %config.namespace, %problem, "learned result types not read");
        }
        let upstream = Arc::new(Upstream {
            config,
            state: Mutex::new(State {
                client: None,
                pid,
                next_attempt: Instant::now(),
                backoff: FIRST_BACKOFF,
                tools: 0,
                reconnects: 0,
                last_error: None,
            }),
            listener,
            next_token: AtomicU64::new(1),
            engine: std::sync::Mutex::new(None),
            calls: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            shapes: Arc::new(shapes),
            withheld: std::sync::Mutex::new(Vec::new()),
        });
        let client = Arc::new(client);
        upstream.state.lock().await.client = Some(Arc::clone(&client));
        let listed = upstream.list(&client).await.map_err(|e| {
            upstream.config.error(scope_refusal(&upstream.config, &upstream.listener.listing).unwrap_or(e))
        })?;
        let n = upstream.install(registry, &client, listed)?;
        upstream.state.lock().await.tools = n;
        Ok(upstream)
    }

    /// Keeps `engine`'s namespace for this server in step with the server: when it sends
    /// `notifications/tools/list_changed`, and after a reconnect, its tools are listed again
    /// and replace the namespace (executions already running keep the tools they started
    /// with). Call it once, inside a tokio runtime, after building the engine from the
    /// registry [`Upstream::register`] filled.
    pub fn follow(self: &Arc<Self>, engine: &Engine) {
        *self.engine.lock().expect("engine lock") = Some(engine.downgrade());
        let weak = Arc::downgrade(self);
        let changed = Arc::clone(&self.listener.changed);
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                let Some(upstream) = weak.upgrade() else { return };
                upstream.refresh().await;
            }
        });
    }

    /// The namespace of its tools.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// The tools the server shows only to a client that takes sampling, elicitation and roots
    /// requests, when this connection does not say it takes them: asked over a second
    /// connection that does say so (a second process, for a stdio server), closed at once.
    /// Empty when this connection says so already.
    pub async fn capability_gated_tools(&self) -> Result<Vec<String>, UpstreamError> {
        if *self.listener.forward.lock().expect("features lock") == ClientFeatures::ALL {
            return Ok(Vec::new());
        }
        let failed = |e: String| self.config.error(e);
        let client = self.client().await.map_err(|e| failed(e.message))?;
        let ours = client.list_all_tools().await.map_err(|e| failed(format!("tools/list failed: {e}")))?;
        let probe = Listener { forward: Arc::new(ClientFeatures::ALL.into()), ..Listener::default() };
        let (other, _) = connect(&self.config, &probe).await?;
        let theirs = other.list_all_tools().await.map_err(|e| failed(format!("tools/list failed: {e}")))?;
        let _ = other.service.cancel().await;
        let known: std::collections::HashSet<&str> = ours.iter().map(|t| t.name.as_ref()).collect();
        Ok(theirs
            .into_iter()
            .filter(|t| !known.contains(t.name.as_ref()))
            .map(|t| t.name.to_string())
            .collect())
    }

    /// Tells the server that `features` are what is taken from now on, when that differs from
    /// what it was told: the connection is made again (a stdio server restarted) and, once
    /// [`Upstream::follow`] ties it to an engine, the tools are listed again, so tools shown
    /// only to clients that take a request come or go. `codemode mcp` on stdio calls it with
    /// what its one client declared.
    pub async fn advertise(&self, features: ClientFeatures) {
        {
            let mut forward = self.listener.forward.lock().expect("features lock");
            if *forward == features {
                return;
            }
            *forward = features;
        }
        let mut state = self.state.lock().await;
        state.client = None;
        state.pid = None;
        state.next_attempt = Instant::now();
        drop(state);
        if let Err(e) = self.client().await {
            tracing::warn!(upstream = %self.config.namespace, error = %e.message, "reconnect failed");
        }
    }

    /// The process id of the running server, for stdio servers that are running.
    pub async fn pid(&self) -> Option<u32> {
        self.state.lock().await.pid
    }

    /// How the server is doing.
    pub async fn status(&self) -> UpstreamStatus {
        let state = self.state.lock().await;
        UpstreamStatus {
            namespace: self.config.namespace.clone(),
            transport: self.config.transport.kind(),
            target: self.config.target(),
            connected: state.client.as_ref().is_some_and(|c| !c.is_closed()),
            pid: state.pid,
            tools: state.tools,
            reconnects: state.reconnects,
            calls: self.calls.load(Ordering::Relaxed),
            failed_calls: self.failed_calls.load(Ordering::Relaxed),
            last_error: state.last_error.clone(),
            shapes_problem: self.shapes.problem(),
            withheld: self.withheld.lock().expect("withheld lock").clone(),
        }
    }

    /// Lists the tools again and replaces the followed engine's namespace with them.
    async fn refresh(self: &Arc<Self>) {
        let Some(engine) = self.engine.lock().expect("engine lock").as_ref().and_then(WeakEngine::upgrade)
        else {
            return;
        };
        let Ok(client) = self.client().await else { return };
        let listed = match self.list(&client).await {
            Ok(tools) => tools,
            Err(e) => {
                self.state.lock().await.last_error = Some(e);
                return;
            }
        };
        let namespace = &self.config.namespace;
        // A server's schemas may be big: they are checked and declared off the async workers.
        let installed = {
            let upstream = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                engine
                    .update_registry(|registry| {
                        registry.remove_namespace(&upstream.config.namespace);
                        upstream.install(registry, &client, listed)
                    })
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("registration failed: {e}")))
        };
        let mut state = self.state.lock().await;
        match installed {
            Ok(n) => {
                tracing::info!(upstream = %namespace, tools = n, "upstream tools listed again");
                state.tools = n;
            }
            Err(e) => {
                tracing::warn!(upstream = %namespace, error = %e, "upstream tools not re-registered");
                state.last_error = Some(e);
            }
        }
    }

    async fn list(&self, client: &Client) -> Result<Listed, String> {
        let listing = &self.listener.listing;
        listing.begin();
        let tools = client.list_all_tools().await;
        let task_support = listing.end();
        Ok(Listed { tools: tools.map_err(|e| format!("tools/list failed: {e}"))?, task_support })
    }

    /// Adds `tools` to `registry` under the namespace, described by the server's own name and
    /// instructions; all or nothing is left to the caller's copy.
    fn install(
        self: &Arc<Self>,
        registry: &mut Registry,
        client: &Client,
        listed: Listed,
    ) -> Result<usize, UpstreamError> {
        let Listed { tools, task_support } = listed;
        let mut withheld = Vec::new();
        let tools: Vec<rmcp::model::Tool> = tools
            .into_iter()
            .filter(|t| {
                let required = task_support.get(t.name.as_ref()).is_some_and(|s| s == "required");
                if required {
                    withheld.push(format!(
                        "{}: callable only as an MCP task (execution.taskSupport is \"required\"), which \
                         codemode does not speak yet",
                        t.name
                    ));
                }
                !required
            })
            .collect();
        if !withheld.is_empty() {
            tracing::info!(upstream = %self.config.namespace, ?withheld, "tools left out of the namespace");
        }
        *self.withheld.lock().expect("withheld lock") = withheld;
        let n = tools.len();
        let info = client.peer_info();
        if let Some((info, server)) = info.as_ref().and_then(|i| Some((i, i.server_info.as_ref()?))) {
            let name = server.title.as_deref().unwrap_or(&server.name);
            let instructions = info.instructions.as_deref().map(str::trim).unwrap_or("");
            registry.describe_namespace(&self.config.namespace, namespace_description(name, instructions))?;
        }
        if info.as_ref().is_some_and(|i| i.capabilities.resources.is_some()) {
            registry.set_resource_reader(&self.config.namespace, Arc::new(Resources(Arc::downgrade(self))));
        }
        for t in tools {
            let object_output =
                t.output_schema.as_ref().is_some_and(|s| s.get("type") == Some(&Value::from("object")));
            let definition = ToolDefinition {
                name: t.name.to_string(),
                title: t.title.clone(),
                description: t.description.as_deref().unwrap_or("").to_string(),
                input_schema: Value::Object(t.input_schema.as_ref().clone()),
                output_schema: t.output_schema.as_ref().map(|s| Value::Object(s.as_ref().clone())),
            };
            // Weak: the registry (inside the engine) must not keep the connection alive.
            let weak: Weak<Upstream> = Arc::downgrade(self);
            let name = t.name.to_string();
            let learn = definition.output_schema.is_none();
            let result_type = learn.then(|| self.shapes.declaration(&name).unwrap_or_else(mcp_result_type));
            let mut tool = Tool::from_definition(definition, move |args: Value| {
                let upstream = weak.upgrade();
                let name = name.clone();
                async move {
                    let upstream = upstream.ok_or_else(|| {
                        ToolError::with_code("upstream_gone", "the upstream server was shut down")
                    })?;
                    upstream.call(&name, args, object_output, learn).await
                }
            });
            if let Some(result_type) = result_type {
                tool = tool.with_result_type(result_type);
            }
            registry.register(&self.config.namespace, tool)?;
        }
        Ok(n)
    }

    async fn client(&self) -> Result<Arc<Client>, ToolError> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.client {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let now = Instant::now();
        if now < state.next_attempt {
            return Err(ToolError::with_code(
                "upstream_disconnected",
                format!(
                    "the server is down; next reconnect attempt in {} ms",
                    (state.next_attempt - now).as_millis()
                ),
            ));
        }
        match connect(&self.config, &self.listener).await {
            Ok((client, pid)) => {
                tracing::info!(upstream = %self.config.namespace, "upstream server reconnected");
                let client = Arc::new(client);
                state.client = Some(Arc::clone(&client));
                state.pid = pid;
                state.backoff = FIRST_BACKOFF;
                state.reconnects += 1;
                state.last_error = None;
                // The server may have changed while it was away.
                self.listener.changed.notify_one();
                Ok(client)
            }
            Err(e) => {
                state.client = None;
                state.pid = None;
                state.next_attempt = Instant::now() + state.backoff;
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                state.last_error = Some(e.to_string());
                Err(ToolError::with_code("upstream_disconnected", e.to_string()))
            }
        }
    }

    /// `resources/read` of `uri`: the contents, as MCP sends them.
    async fn read_resource(&self, uri: String) -> Result<Value, ToolError> {
        let client = self.client().await?;
        let timeout = self.config.call_timeout;
        let request = ReadResourceRequestParams::new(uri);
        match tokio::time::timeout(timeout, client.read_resource(request)).await {
            Err(_) => Err(ToolError::with_code(
                "timeout",
                format!("the upstream server did not answer within {} ms", timeout.as_millis()),
            )),
            Ok(Err(ServiceError::McpError(e))) => {
                Err(ToolError::with_code("upstream_error", e.message.to_string()))
            }
            Ok(Err(e)) => Err(ToolError::with_code("upstream_error", e.to_string())),
            Ok(Ok(result)) => serde_json::to_value(result.contents)
                .map_err(|e| ToolError::with_code("invalid_output", e.to_string())),
        }
    }

    /// Calls `name`; with `learn` (it declares no output schema), its result's shape is
    /// learned, and a change of the learned type declares the namespace again.
    async fn call(
        &self,
        name: &str,
        args: Value,
        object_output: bool,
        learn: bool,
    ) -> Result<Value, ToolError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "upstream_request",
            otel.kind = "client",
            upstream = %self.config.namespace,
            tool = name,
            transport = self.config.transport.kind(),
            result_bytes = tracing::field::Empty,
            outcome = tracing::field::Empty,
            error_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = self.call_inner(name, args, object_output).instrument(span.clone()).await;
        if !span.is_disabled() {
            match &result {
                Ok(value) => {
                    span.record("outcome", "ok");
                    span.record("result_bytes", value.to_string().len());
                }
                Err(e) => {
                    span.record("outcome", "error");
                    span.record("error_code", e.code.as_str());
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
        match &result {
            Err(_) => {
                self.failed_calls.fetch_add(1, Ordering::Relaxed);
            }
            Ok(value) if learn && self.shapes.observe(name, value) => self.listener.changed.notify_one(),
            Ok(_) => {}
        }
        result
    }

    async fn call_inner(&self, name: &str, args: Value, object_output: bool) -> Result<Value, ToolError> {
        let client = self.client().await?;
        if let Some(renewal) = &client.renewal {
            renewal.ensure().await?;
        }
        let Value::Object(arguments) = args else {
            return Err(ToolError::with_code("invalid_argument", "MCP tool arguments must be an object"));
        };
        let started = Instant::now();
        let mut request = CallToolRequestParams::new(name.to_string()).with_arguments(arguments);
        // SEP-414: the trace goes on in the server; over HTTP also as the `traceparent` header
        // (see `TappedHttp`).
        if let Some((parent, state)) = crate::telemetry::current() {
            request.set_traceparent(&parent);
            if let Some(state) = state {
                request.set_tracestate(&state);
            }
        }
        // The token ties the server's progress notifications to this call's execution.
        let _tracked = CallContext::current().map(|log| {
            let token = self.next_token.fetch_add(1, Ordering::Relaxed) as i64;
            request.set_progress_token(ProgressToken(NumberOrString::Number(token)));
            self.listener.track(token, log)
        });
        let timeout = self.config.tool_timeouts.get(name).copied().unwrap_or(self.config.call_timeout);
        let result = tokio::time::timeout(timeout, client.call_tool(request)).await;
        tracing::debug!(upstream = %self.config.namespace, tool = name, elapsed_us = started.elapsed().as_micros() as u64, "upstream call");
        match result {
            Err(_) => Err(ToolError::with_code(
                "timeout",
                format!("the upstream server did not answer within {} ms", timeout.as_millis()),
            )),
            Ok(Err(ServiceError::McpError(e))) => {
                Err(ToolError::with_code("upstream_error", e.message.to_string()))
            }
            Ok(Err(e)) if matches!(e, ServiceError::TransportClosed | ServiceError::TransportSend(_)) => {
                let mut state = self.state.lock().await;
                state.client = None;
                state.pid = None;
                // Refused for lack of a scope: the next connection uses the token signed in
                // for it.
                Err(match scope_refusal(&self.config, &self.listener.listing) {
                    Some(advice) => ToolError::with_code("upstream_unauthorized", advice),
                    None => ToolError::with_code(
                        "upstream_disconnected",
                        format!("the connection to the server was lost ({e})"),
                    ),
                })
            }
            Ok(Err(e)) => Err(match scope_refusal(&self.config, &self.listener.listing) {
                Some(advice) => ToolError::with_code("upstream_unauthorized", advice),
                None => ToolError::with_code("upstream_error", e.to_string()),
            }),
            Ok(Ok(result)) => to_value(result, object_output),
        }
    }
}

/// What to do when the server refused the last request for lack of a scope (which is kept
/// for the next login), if it did.
fn scope_refusal(config: &UpstreamConfig, listing: &Listing) -> Option<String> {
    let scope = listing.take_wanted_scope()?;
    Some(super::oauth::want_scope(config, &scope))
}

async fn connect(
    config: &UpstreamConfig,
    listener: &Listener,
) -> Result<(Client, Option<u32>), UpstreamError> {
    let listener = listener.clone();
    match &config.transport {
        Transport::Stdio { command, args, env } => {
            let mut child = tokio::process::Command::new(command)
                .args(args)
                .env_clear()
                .envs(env)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| config.error(format!("cannot start it: {e}")))?;
            let pid = child.id();
            let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
                return Err(config.error("its stdin or stdout could not be opened".into()));
            };
            let reader = Tee::new(stdout, Arc::clone(&listener.listing));
            let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(reader, stdin);
            let client = serve_watched(listener, transport, Some(child))
                .await
                .map_err(|e| config.error(format!("handshake failed: {e}")))?;
            Ok((client, pid))
        }
        Transport::Http { url, headers, oauth } => {
            let mut custom = HashMap::with_capacity(headers.len());
            for (name, value) in headers {
                let name = axum::http::HeaderName::try_from(name.as_str())
                    .map_err(|_| config.error(format!("header {name:?} is not a valid header name")))?;
                // The value may be a secret: the error names the header only.
                let value = axum::http::HeaderValue::try_from(value.as_str()).map_err(|_| {
                    config.error(format!("header {name}: the value is not a valid header value"))
                })?;
                custom.insert(name, value);
            }
            let http = TappedHttp::new(Arc::clone(&listener.listing));
            let transport_config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
            let listing = Arc::clone(&listener.listing);
            listing.take_refused();
            let handshake_failed = |e: rmcp::service::ClientInitializeError| {
                if let Some(advice) = scope_refusal(config, &listing) {
                    config.error(advice)
                } else if listing.take_refused() {
                    match oauth {
                        Some(o) if o.grant == super::Grant::ClientCredentials => {
                            config.error("the server refused the token of the client credentials".into())
                        }
                        Some(_) => config.needs_login(),
                        None => config.error(format!("handshake failed: {e}")),
                    }
                } else {
                    config.error(format!("handshake failed: {e}"))
                }
            };
            let (client, renewal) = match oauth {
                None => {
                    let transport = StreamableHttpClientTransport::with_client(http, transport_config);
                    (serve_watched(listener, transport, None).await.map_err(handshake_failed)?, None)
                }
                Some(oauth) => {
                    let (http, renewal) = super::oauth::authorized_http(config, url, oauth, http).await?;
                    let transport = StreamableHttpClientTransport::with_client(http, transport_config);
                    (serve_watched(listener, transport, None).await.map_err(handshake_failed)?, renewal)
                }
            };
            Ok((Client { renewal, ..client }, None))
        }
    }
}

/// A namespace's description from its server: the name and a summary line on the first line
/// (what the prompt's index shows), then the whole instructions when there is more to them
/// (what `describe` of the namespace shows). The summary is the instructions' first line of
/// prose: a markdown heading is a title, not a summary.
fn namespace_description(name: &str, instructions: &str) -> String {
    let mut description = format!("{name} (MCP server)");
    let prose = instructions.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    if let Some(line) = prose.filter(|l| l.chars().count() <= 200) {
        description = format!("{description}: {line}");
        if instructions == line {
            return description;
        }
    }
    if !instructions.is_empty() {
        description = format!("{description}\n\n{instructions}");
    }
    description
}

/// `codemode.readResource` for one server.
struct Resources(Weak<Upstream>);

impl ResourceReader for Resources {
    fn read(&self, uri: String) -> BoxFuture<Result<Value, ToolError>> {
        let upstream = self.0.upgrade();
        Box::pin(async move {
            let upstream = upstream
                .ok_or_else(|| ToolError::with_code("upstream_gone", "the upstream server was shut down"))?;
            upstream.read_resource(uri).await
        })
    }
}

/// The result type of a tool that has returned nothing yet and declares no output schema:
/// whatever [`to_value`] may make of MCP content.
fn mcp_result_type() -> ResultType {
    ResultType {
        typescript: "codemode.ToolResult".into(),
        doc: [
            "The server declares no output schema: one text block is a `string`, several are",
            "`string[]`, other content is `codemode.ContentBlock[]`, no content is `null`. Once",
            "the tool has returned results, their learned type stands here.",
        ]
        .map(String::from)
        .to_vec(),
    }
}

fn to_value(result: CallToolResult, object_output: bool) -> Result<Value, ToolError> {
    let texts: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect();
    if result.is_error == Some(true) {
        let message =
            if texts.is_empty() { "the tool reported an error".to_string() } else { texts.join("\n") };
        return Err(ToolError::with_code("upstream_error", message));
    }
    if let Some(structured) = result.structured_content {
        return Ok(structured);
    }
    if texts.len() == result.content.len() {
        return Ok(match texts.as_slice() {
            [] => Value::Null,
            [one] if object_output => {
                serde_json::from_str(one).unwrap_or_else(|_| Value::String(one.to_string()))
            }
            [one] => Value::String(one.to_string()),
            many => Value::Array(many.iter().map(|t| Value::String(t.to_string())).collect()),
        });
    }
    serde_json::to_value(&result.content).map_err(|e| ToolError::with_code("invalid_output", e.to_string()))
}

#[cfg(test)]
mod description_tests {
    #[test]
    fn the_whole_instructions_follow_a_summary_line() {
        use super::namespace_description as d;
        assert_eq!(d("memory", ""), "memory (MCP server)");
        assert_eq!(d("dynamic", "Tools that appear."), "dynamic (MCP server): Tools that appear.");
        assert_eq!(
            d("everything", "# Everything\n\nTests every feature.\n\n## Tools\n- echo"),
            "everything (MCP server): Tests every feature.\n\n# Everything\n\nTests every feature.\n\n## Tools\n- echo"
        );
    }
}
