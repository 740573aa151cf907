//! Upstream MCP servers as tool sources: an [`Upstream`] starts a server over stdio, lists its
//! tools, and registers them as a namespace whose calls become `tools/call`.
//!
//! Results: `structuredContent` when the server sends it; otherwise a single text block is the
//! string (parsed as JSON when the tool's output schema says object); several text blocks are
//! an array of strings; anything else (images, audio, resources) is the array of MCP content
//! objects as they came. `isError: true` rejects the call with the server's text.
//!
//! One connection per upstream, shared by every execution. When the server dies or the
//! connection drops, the calls in flight fail with code `upstream_disconnected`, and the next
//! call starts it again — at most once per backoff interval (100 ms, doubling to 5 s while it
//! keeps failing).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::definitions::ToolDefinition;
use crate::error::{RegistryError, ToolError};
use crate::registry::{Registry, Tool};

/// How to start one upstream server over stdio, and the namespace its tools get.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// The namespace of its tools in programs.
    pub namespace: String,
    /// The program to run.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables, already resolved (secrets stay host-side: they never reach
    /// the sandbox, logs or errors).
    pub env: BTreeMap<String, String>,
    /// How long one `tools/call` may take (default 30 s).
    pub call_timeout: Duration,
    /// Per-tool overrides of `call_timeout`, by the server's tool name.
    pub tool_timeouts: BTreeMap<String, Duration>,
}

impl UpstreamConfig {
    /// A server started as `command args...`, for `namespace`.
    pub fn new(namespace: impl Into<String>, command: impl Into<String>, args: Vec<String>) -> Self {
        UpstreamConfig {
            namespace: namespace.into(),
            command: command.into(),
            args,
            env: BTreeMap::new(),
            call_timeout: Duration::from_secs(30),
            tool_timeouts: BTreeMap::new(),
        }
    }
}

/// Why an upstream server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server could not be started or did not complete the MCP handshake.
    #[error("upstream {namespace:?} ({command}): {message}")]
    Connect {
        /// Its namespace.
        namespace: String,
        /// The command that was run.
        command: String,
        /// What went wrong.
        message: String,
    },
    /// Its tools could not be registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

type Client = RunningService<RoleClient, ()>;

/// A connected upstream server.
pub struct Upstream {
    config: UpstreamConfig,
    state: Mutex<State>,
}

struct State {
    client: Option<Arc<Client>>,
    pid: Option<u32>,
    next_attempt: Instant,
    backoff: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Upstream {
    /// Starts the server, lists its tools and adds them to `registry` under the configured
    /// namespace (with their output schemas, so they get typed declarations).
    pub async fn register(
        config: UpstreamConfig,
        registry: &mut Registry,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        let (client, pid) = connect(&config).await?;
        let tools = client.list_all_tools().await.map_err(|e| connect_error(&config, e.to_string()))?;
        let upstream = Arc::new(Upstream {
            config,
            state: Mutex::new(State {
                client: Some(Arc::new(client)),
                pid,
                next_attempt: Instant::now(),
                backoff: FIRST_BACKOFF,
            }),
        });
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
            let weak = Arc::downgrade(&upstream);
            let name = t.name.to_string();
            let tool = Tool::from_definition(definition, move |args: Value| {
                let upstream = weak.upgrade();
                let name = name.clone();
                async move {
                    let upstream = upstream.ok_or_else(|| {
                        ToolError::with_code("upstream_gone", "the upstream server was shut down")
                    })?;
                    upstream.call(&name, args, object_output).await
                }
            });
            registry.register(&upstream.config.namespace, tool)?;
        }
        Ok(upstream)
    }

    /// The process id of the running server, if it is running.
    pub async fn pid(&self) -> Option<u32> {
        self.state.lock().await.pid
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
                    "the server is down; next restart attempt in {} ms",
                    (state.next_attempt - now).as_millis()
                ),
            ));
        }
        match connect(&self.config).await {
            Ok((client, pid)) => {
                tracing::info!(namespace = %self.config.namespace, "upstream server restarted");
                let client = Arc::new(client);
                state.client = Some(Arc::clone(&client));
                state.pid = pid;
                state.backoff = FIRST_BACKOFF;
                Ok(client)
            }
            Err(e) => {
                state.client = None;
                state.pid = None;
                state.next_attempt = Instant::now() + state.backoff;
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                Err(ToolError::with_code("upstream_disconnected", e.to_string()))
            }
        }
    }

    async fn call(&self, name: &str, args: Value, object_output: bool) -> Result<Value, ToolError> {
        let client = self.client().await?;
        let Value::Object(arguments) = args else {
            return Err(ToolError::with_code("invalid_argument", "MCP tool arguments must be an object"));
        };
        let started = Instant::now();
        let request = CallToolRequestParams::new(name.to_string()).with_arguments(arguments);
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
            Ok(Err(e @ (ServiceError::TransportClosed | ServiceError::TransportSend(_)))) => {
                let mut state = self.state.lock().await;
                state.client = None;
                state.pid = None;
                Err(ToolError::with_code(
                    "upstream_disconnected",
                    format!("the connection to the server was lost ({e})"),
                ))
            }
            Ok(Err(e)) => Err(ToolError::with_code("upstream_error", e.to_string())),
            Ok(Ok(result)) => to_value(result, object_output),
        }
    }
}

async fn connect(config: &UpstreamConfig) -> Result<(Client, Option<u32>), UpstreamError> {
    let command = tokio::process::Command::new(&config.command).configure(|c| {
        c.args(&config.args);
        c.envs(&config.env);
        c.kill_on_drop(true);
    });
    let transport = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|(t, _)| t)
        .map_err(|e| connect_error(config, format!("cannot start it: {e}")))?;
    let pid = transport.id();
    let client =
        ().serve(transport).await.map_err(|e| connect_error(config, format!("handshake failed: {e}")))?;
    Ok((client, pid))
}

fn connect_error(config: &UpstreamConfig, message: String) -> UpstreamError {
    UpstreamError::Connect { namespace: config.namespace.clone(), command: config.command.clone(), message }
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
