//! The MCP server: three tools in the spirit of Anthropic's and Cloudflare's code mode.
//! * `search_tools` — rank the engine's tools for a query, at a detail level;
//! * `describe_tools` — TypeScript declarations of the tools (or namespaces) named;
//! * `execute_code` — run a program; its description carries the prompt helper's text (how to
//!   write a program, the limits, the namespace index). The outcome comes back as text and as
//!   `structuredContent`, its value already cut structurally to the result cap.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool as McpTool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::ServerHandler;
use serde_json::{json, Map, Value};

use crate::discovery::{names_arg, search_args};
use crate::engine::{CancelToken, Engine, ExecuteOptions};

/// Serves an [`Engine`]'s tools to MCP clients. Cheap to clone.
#[derive(Clone)]
pub struct McpServer {
    engine: Engine,
}

impl McpServer {
    /// A server for `engine` (its registry and limits).
    pub fn new(engine: Engine) -> Self {
        McpServer { engine }
    }

    /// Serves one client over stdin and stdout until it disconnects.
    pub async fn serve_stdio(self) -> std::io::Result<()> {
        use rmcp::ServiceExt;
        let running = self.serve(rmcp::transport::stdio()).await.map_err(std::io::Error::other)?;
        running.waiting().await.map_err(std::io::Error::other)?;
        Ok(())
    }

    /// Serves streamable HTTP at `http://ADDR/mcp` until `shutdown` completes. Sessions are
    /// kept per client. Requests must name a loopback `Host`, and a browser `Origin` must be
    /// this server's own (`http://127.0.0.1:PORT` or `http://localhost:PORT`): a web page
    /// cannot reach it through DNS rebinding. `addr` must be a loopback address.
    pub async fn serve_http(
        self,
        addr: std::net::SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
        use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{addr} is not a loopback address; the HTTP server only listens on loopback"),
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        let config = StreamableHttpServerConfig::default()
            .with_allowed_origins([format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")])
            .enforce_origin_validation();
        let server = self;
        let service: StreamableHttpService<McpServer, LocalSessionManager> =
            StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config);
        let router = axum::Router::new().nest_service("/mcp", service);
        tracing::info!(%addr, "serving MCP over streamable HTTP at /mcp");
        axum::serve(listener, router).with_graceful_shutdown(shutdown).await
    }

    async fn call(&self, name: &str, args: &Value, cancel: CancelToken) -> Result<CallToolResult, ErrorData> {
        let registry = self.engine.registry();
        match name {
            "search_tools" => {
                let (query, detail, limit) = search_args(args).map_err(|e| invalid(&e))?;
                let hits = registry.search(query, detail, limit);
                let text = hits
                    .iter()
                    .map(|h| match (&h.declarations, &h.signature) {
                        (Some(d), _) => d.clone(),
                        (None, Some(sig)) => {
                            let ns = h.path.split('.').next().unwrap_or("");
                            format!("{ns}.{sig} — {}", h.summary.as_deref().unwrap_or(""))
                        }
                        (None, None) => h.path.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let mut result = CallToolResult::structured(json!({ "hits": hits }));
                result.content = vec![ContentBlock::text(if text.is_empty() {
                    "no tool matches".to_string()
                } else {
                    text
                })];
                Ok(result)
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
                })
            }
            "execute_code" => {
                let code = args
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("code must be a string"))?;
                let outcome = self
                    .engine
                    .execute(code, ExecuteOptions { cancel: Some(cancel), ..Default::default() })
                    .await;
                let report = outcome.to_report();
                let mut text = String::new();
                for line in &outcome.logs {
                    text.push_str(&format!(
                        "[{}] {}\n",
                        serde_json::to_value(line.level)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        line.message
                    ));
                }
                match &outcome.error {
                    None => text.push_str(&format!("result: {}", outcome.value)),
                    Some(e) => {
                        let at = match (e.line, e.column) {
                            (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
                            _ => String::new(),
                        };
                        let name = e.name.as_deref().map(|n| format!("{n}: ")).unwrap_or_default();
                        text.push_str(&format!("error ({}){at}: {name}{}", e.kind.code(), e.message));
                    }
                }
                let mut result = if outcome.is_ok() {
                    CallToolResult::structured(report)
                } else {
                    CallToolResult::structured_error(report)
                };
                result.content = vec![ContentBlock::text(text)];
                Ok(result)
            }
            other => Err(ErrorData::invalid_params(format!("unknown tool {other:?}"), None)),
        }
    }
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

fn tool_list(engine: &Engine) -> Vec<McpTool> {
    let prompt = engine.prompt();
    vec![
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
                    "code": { "type": "string", "description": "The TypeScript program (a function body; top-level await works)." }
                },
                "required": ["code"],
                "additionalProperties": false
            })),
        ),
    ]
}

impl ServerHandler for McpServer {
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
        Ok(ListToolsResult::with_all_items(tool_list(&self.engine)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
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
        let result = self.call(&request.name, &args, cancel).await;
        watcher.abort();
        result.map(Into::into)
    }
}
