//! The configuration file (`codemode.toml`): limits, pool size, upstream MCP servers.
//!
//! ```toml
//! [limits]
//! timeout_ms = 5000
//! memory_mb = 64
//!
//! [pool]
//! workers = 4
//!
//! [daemon]
//! tool_call_timeout_ms = 10000
//!
//! [mcp]
//! max_sessions = 16
//!
//! [sessions]
//! max = 32
//! idle_timeout_ms = 600000
//!
//! [privacy]
//! tokenize = ["email", "phone"]
//!
//! [[servers]]
//! namespace = "memory"
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-memory"]
//! env = { MEMORY_FILE_PATH = "file:/run/secrets/memory-path" }
//! call_timeout_ms = 10000
//! tool_timeouts_ms = { read_graph = 2000 }
//!
//! [[servers]]
//! namespace = "crm"
//! url = "http://127.0.0.1:3001/mcp"
//! headers = { Authorization = "env:CRM_TOKEN" }
//! ```
//!
//! Unknown keys, wrong types and missing fields are errors naming the file, line, column and
//! key; nothing starts half-configured. Values of `env` and `headers` may reference secrets —
//! `env:NAME` (an environment variable of the host process) or `file:PATH` (a file's contents,
//! trimmed) — resolved on the host when servers start; a secret's value never appears in
//! errors, logs or the sandbox. The library reads no environment itself: the caller passes the
//! lookup (the binary passes `std::env::var`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::daemon::DaemonConfig;
use crate::limits::{Limits, LimitsPatch};
use crate::mcp::{Grant, McpConfig, OAuthConfig, Transport, UpstreamConfig};
use crate::privacy::Privacy;
use crate::session::SessionLimits;

/// A parsed configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per-execution limits; unset keys keep [`Limits::default`].
    #[serde(default)]
    pub limits: LimitsPatch,
    /// The sandbox pool.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Where sandboxes run.
    #[serde(default)]
    pub engine: EngineSection,
    /// The daemon (`codemode serve`).
    #[serde(default)]
    pub daemon: DaemonSection,
    /// The MCP server (`codemode mcp`).
    #[serde(default)]
    pub mcp: McpSection,
    /// What codemode keeps between runs.
    #[serde(default)]
    pub state: StateSection,
    /// Sessions (programs that share a sandbox and a store).
    #[serde(default)]
    pub sessions: SessionsSection,
    /// Private values kept out of what programs return.
    #[serde(default)]
    pub privacy: Option<Spanned<PrivacySection>>,
    /// Tools whose calls wait for a person's approval.
    #[serde(default)]
    pub approvals: Option<Spanned<ApprovalsSection>>,
    /// Where the binary exports its spans.
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// Upstream MCP servers, each a namespace.
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    #[serde(skip)]
    file: PathBuf,
    #[serde(skip)]
    text: String,
}

/// `[pool]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Sandbox threads (default: two per core; one per core with the V8 engine).
    pub workers: Option<usize>,
    /// Warm sandboxes kept per thread (default 4; a sealed worker keeps them itself; a V8
    /// process keeps one).
    pub warm: Option<usize>,
}

/// `[engine]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// `"thread"` (in process, the default) or `"process"` (sealed worker processes).
    pub isolation: Option<crate::Isolation>,
    /// `"quickjs"` (the default) or `"v8"` (Node.js processes; `codemode setup v8`).
    pub kind: Option<crate::EngineKind>,
    /// The Node.js binary for `kind = "v8"` (a relative path is taken from the configuration
    /// file's folder); default: the one `codemode setup v8` installed.
    pub node: Option<PathBuf>,
}

/// `[state]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// Where learned result types are kept (a relative path is taken from the configuration
    /// file's folder); default `$XDG_DATA_HOME/codemode`, else `~/.local/share/codemode`.
    pub dir: Option<PathBuf>,
}

/// `[sessions]`; unset keys keep [`SessionLimits::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    /// Sessions live at once (default 64); one more ends the least recently used.
    pub max: Option<usize>,
    /// Milliseconds a session may stay unused before it ends (default 1,800,000).
    pub idle_timeout_ms: Option<u64>,
    /// Heap one session's sandbox may hold across its executions, in MiB (default 256).
    pub memory_mb: Option<usize>,
    /// Bytes one session may keep with `codemode.store` (default 4 MiB).
    pub store_bytes: Option<usize>,
    /// Whether `codemode mcp` runs each client's programs in a session of its own (default
    /// true); false makes every `execute_code` start from nothing unless it names a session.
    pub mcp: Option<bool>,
}

/// `[approvals]`: tools whose calls pause the execution until a person decides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// `namespace.tool` patterns, `*` matching any run of characters (`sheets.updateRow`,
    /// `crm.send*`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// How long a paused execution waits for a decision, in milliseconds (default 900,000).
    pub timeout_ms: Option<u64>,
}

/// `[privacy]`: which values are replaced by tokens in what goes back to the model.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// Built-in kinds: `email`, `phone`, `credit_card`, `iban`.
    #[serde(default)]
    pub tokenize: Vec<String>,
    /// Custom kinds: name → regular expression (`EMPLOYEE = "\bE\d{6}\b"` makes
    /// `[EMPLOYEE_1]`).
    #[serde(default)]
    pub patterns: BTreeMap<String, String>,
}

/// `[telemetry]`: OpenTelemetry spans, exported over OTLP/HTTP with protobuf by the binary
/// (built with the `telemetry` feature, as by default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// The collector's base URL, such as `http://localhost:4318`; spans are posted to its
    /// `/v1/traces`, as with `OTEL_EXPORTER_OTLP_ENDPOINT`. Unset: the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` decide, and without
    /// either nothing is exported. The other `OTEL_EXPORTER_OTLP_*` variables (headers,
    /// timeout, compression) apply either way.
    pub otlp_endpoint: Option<String>,
    /// The spans' `service.name` (default `OTEL_SERVICE_NAME`, else `codemode`).
    pub service_name: Option<String>,
}

/// `[daemon]`; unset keys keep [`DaemonConfig::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// How long a program waits for a client to answer a `tools/call` (default 30,000).
    pub tool_call_timeout_ms: Option<u64>,
    /// Longest accepted message line in bytes (default 16 MiB).
    pub max_line_bytes: Option<usize>,
    /// How long running executions may go on after SIGTERM before they are cancelled
    /// (default 5,000).
    pub shutdown_grace_ms: Option<u64>,
    /// Bytes of responses a client may leave unread before the daemon stops reading its
    /// requests (default 32 MiB; twice this closes the connection).
    pub max_unsent_bytes: Option<usize>,
    /// Requests of one connection running at once (default 1,024).
    pub max_in_flight: Option<usize>,
}

/// The variables of this process a stdio upstream server gets without being told: what a
/// program needs to start and find its files and locale. Anything else must be named in the
/// server's `env` (as `NAME = "env:NAME"` to pass one through).
pub const PASSED_ENV: &[&str] =
    &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/// `[mcp]`; unset keys keep [`McpConfig::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    /// Longest accepted message line on stdio, in bytes (default 16 MiB).
    pub max_line_bytes: Option<usize>,
    /// Bytes of responses the stdio client may leave unread before its requests are no longer
    /// read (default 32 MiB; twice this closes the connection).
    pub max_unsent_bytes: Option<usize>,
    /// Requests of the stdio client running at once (default 1,024).
    pub max_in_flight: Option<usize>,
    /// HTTP sessions open at once (default 64).
    pub max_sessions: Option<usize>,
    /// Milliseconds an HTTP session may stay idle before it is closed (default 600,000).
    pub session_idle_ms: Option<u64>,
}

/// One `[[servers]]` entry: stdio (`command`, `args`, `env`) or streamable HTTP (`url`,
/// `headers`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The namespace of its tools.
    pub namespace: Spanned<String>,
    /// The program to start (stdio).
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables; values may be `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The server's URL (streamable HTTP).
    pub url: Option<String>,
    /// HTTP headers; values may be `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long one call may take, in milliseconds (default 30,000).
    pub call_timeout_ms: Option<u64>,
    /// Per-tool overrides of `call_timeout_ms`, by the server's tool name.
    #[serde(default)]
    pub tool_timeouts_ms: BTreeMap<String, u64>,
    /// Tools of this server whose calls wait for approval, by the server's tool name or its
    /// JS name; `*` matches any run of characters (`write_*`).
    #[serde(default)]
    pub approve: Vec<String>,
    /// OAuth for an HTTP server that requires it (`[servers.oauth]`).
    pub oauth: Option<OAuthServerConfig>,
}

/// A server's `[servers.oauth]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthServerConfig {
    /// A client registered beforehand; omitted, the client registers itself dynamically (or
    /// uses `client_metadata_url`).
    pub client_id: Option<String>,
    /// A confidential client's secret; `env:NAME` or `file:PATH`.
    pub client_secret: Option<String>,
    /// `authorization_code` (the default: `codemode auth login`) or `client_credentials`.
    #[serde(default)]
    pub grant: Grant,
    /// Scopes to ask for; omitted, the server's challenge and metadata decide.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The HTTPS URL of this client's metadata document, used as its client ID by
    /// authorization servers that support them.
    pub client_metadata_url: Option<String>,
    /// The loopback port that receives the browser's redirect (default: any free one).
    pub redirect_port: Option<u16>,
}

/// A configuration error: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), at.as_ref().map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub at: Option<(usize, usize)>,
    /// What is wrong, naming the key.
    pub message: String,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.into(),
            at: None,
            message: format!("cannot read it: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses `text` as the contents of `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.into(),
            at: e.span().map(|s| line_column(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        config.file = file.into();
        config.text = text.into();
        let mut seen: Vec<&str> = Vec::new();
        for s in &config.servers {
            let name = s.namespace.get_ref().as_str();
            let fail = |message: String| ConfigError {
                file: file.into(),
                at: Some(line_column(text, s.namespace.span().start)),
                message,
            };
            match (&s.command, &s.url) {
                (Some(_), Some(_)) => {
                    return Err(fail(format!("server {name:?}: set `command` or `url`, not both")))
                }
                (None, None) => {
                    return Err(fail(format!("server {name:?}: missing `command` (stdio) or `url` (HTTP)")))
                }
                (Some(_), None) if !s.headers.is_empty() => {
                    return Err(fail(format!(
                        "server {name:?}: `headers` need `url`; a stdio server takes `env`"
                    )))
                }
                (None, Some(_)) if !s.env.is_empty() || !s.args.is_empty() => {
                    return Err(fail(format!(
                        "server {name:?}: `args` and `env` need `command`; an HTTP server takes `headers`"
                    )))
                }
                (None, Some(url)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    return Err(fail(format!("server {name:?}: `url` must start with http:// or https://")))
                }
                _ => {}
            }
            if let Some(oauth) = &s.oauth {
                if s.command.is_some() {
                    return Err(fail(format!(
                        "server {name:?}: `oauth` needs `url`; a stdio server takes `env`"
                    )));
                }
                if s.headers.keys().any(|h| h.eq_ignore_ascii_case("authorization")) {
                    return Err(fail(format!(
                        "server {name:?}: set an `Authorization` header or `oauth`, not both"
                    )));
                }
                match oauth.grant {
                    Grant::ClientCredentials if oauth.client_id.is_none() || oauth.client_secret.is_none() => {
                        return Err(fail(format!(
                            "server {name:?}: oauth: the client_credentials grant needs `client_id` and `client_secret`"
                        )))
                    }
                    Grant::AuthorizationCode if oauth.client_secret.is_some() && oauth.client_id.is_none() => {
                        return Err(fail(format!(
                            "server {name:?}: oauth: `client_secret` belongs to a pre-registered client; set `client_id` too"
                        )))
                    }
                    _ => {}
                }
            }
            if seen.contains(&name) {
                return Err(fail(format!("server {name:?}: namespace listed twice")));
            }
            seen.push(name);
        }
        if let Some(section) = &config.approvals {
            if let Some(bad) = section.get_ref().tools.iter().find(|p| !p.contains('.')) {
                return Err(ConfigError {
                    file: file.into(),
                    at: Some(line_column(text, section.span().start)),
                    message: format!(
                        "[approvals] tools: {bad:?} names no tool; write namespace.tool (\"sheets.updateRow\", \"crm.*\")"
                    ),
                });
            }
        }
        if let Some(section) = &config.privacy {
            config.privacy_of(section).map_err(|e| ConfigError {
                file: file.into(),
                at: Some(line_column(text, section.span().start)),
                message: format!("[privacy]: {e}"),
            })?;
        }
        Ok(config)
    }

    /// What `[privacy]` asks to tokenize (nothing when the section is absent).
    pub fn privacy(&self) -> Privacy {
        self.privacy
            .as_ref()
            .map_or_else(Privacy::default, |s| self.privacy_of(s).expect("checked when the file was parsed"))
    }

    fn privacy_of(&self, section: &Spanned<PrivacySection>) -> Result<Privacy, crate::PrivacyError> {
        let section = section.get_ref();
        Privacy::new(
            section.tokenize.iter().map(String::as_str),
            section.patterns.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// Every pattern of tools that need approval (`[approvals] tools`, and each server's
    /// `approve` under its namespace), for [`Registry::require_approval`](crate::Registry::require_approval).
    pub fn approval_patterns(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.approvals.as_ref().map(|s| s.get_ref().tools.clone()).unwrap_or_default();
        for server in &self.servers {
            let namespace = server.namespace.get_ref();
            out.extend(server.approve.iter().map(|p| format!("{namespace}.{p}")));
        }
        out
    }

    /// `[approvals] timeout_ms`, when set.
    pub fn approval_timeout(&self) -> Option<Duration> {
        self.approvals.as_ref()?.get_ref().timeout_ms.map(Duration::from_millis)
    }

    /// The limits: the defaults with this file's values over them.
    pub fn limits(&self) -> Limits {
        self.limits.apply(&Limits::default())
    }

    /// The limits on sessions: the defaults with this file's values over them.
    pub fn sessions(&self) -> SessionLimits {
        let mut out = SessionLimits::default();
        let s = &self.sessions;
        if let Some(n) = s.max {
            out.max_sessions = n.max(1);
        }
        if let Some(ms) = s.idle_timeout_ms {
            out.idle_timeout = Duration::from_millis(ms);
        }
        if let Some(mb) = s.memory_mb {
            out.memory_bytes = mb.saturating_mul(1 << 20);
        }
        if let Some(bytes) = s.store_bytes {
            out.store_bytes = bytes;
        }
        out
    }

    /// The daemon's settings: the defaults with this file's values over them.
    pub fn daemon(&self) -> DaemonConfig {
        let mut out = DaemonConfig::default();
        let d = &self.daemon;
        if let Some(ms) = d.tool_call_timeout_ms {
            out.tool_call_timeout = Duration::from_millis(ms);
        }
        if let Some(bytes) = d.max_line_bytes {
            out.max_line_bytes = bytes;
        }
        if let Some(ms) = d.shutdown_grace_ms {
            out.shutdown_grace = Duration::from_millis(ms);
        }
        if let Some(bytes) = d.max_unsent_bytes {
            out.max_unsent_bytes = bytes;
        }
        if let Some(n) = d.max_in_flight {
            out.max_in_flight = n;
        }
        out
    }

    /// The MCP server's settings: the defaults with this file's values over them.
    pub fn mcp(&self) -> McpConfig {
        let mut out = McpConfig::default();
        let m = &self.mcp;
        if let Some(bytes) = m.max_line_bytes {
            out.max_line_bytes = bytes;
        }
        if let Some(bytes) = m.max_unsent_bytes {
            out.max_unsent_bytes = bytes;
        }
        if let Some(n) = m.max_in_flight {
            out.max_in_flight = n;
        }
        if let Some(n) = m.max_sessions {
            out.max_sessions = n;
        }
        if let Some(ms) = m.session_idle_ms {
            out.session_idle = Duration::from_millis(ms);
        }
        out.sessions = self.sessions.mcp.unwrap_or(true);
        out
    }

    /// `[engine] node`, a relative path taken from the configuration file's folder.
    pub fn node_program(&self) -> Option<PathBuf> {
        let node = self.engine.node.as_ref()?;
        Some(self.file.parent().unwrap_or(Path::new("")).join(node))
    }

    /// The state directory: `[state] dir`, else the user's data directory by `env` (the
    /// caller's environment lookup); `None` when neither is known.
    pub fn state_dir(&self, env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
        if let Some(dir) = &self.state.dir {
            return Some(self.file.parent().unwrap_or(Path::new("")).join(dir));
        }
        let base = env("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
        Some(base.join("codemode"))
    }

    /// The upstream servers, with secret references resolved through `env` (the caller's
    /// environment lookup) and the file system.
    pub fn upstreams(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<UpstreamConfig>, ConfigError> {
        let mut out = Vec::with_capacity(self.servers.len());
        let state_dir = self.state_dir(&env);
        for s in &self.servers {
            let name = s.namespace.get_ref();
            let fail = |message: String| ConfigError {
                file: self.file.clone(),
                at: Some(line_column(&self.text, s.namespace.span().start)),
                message,
            };
            let resolve_all = |table: &str, values: &BTreeMap<String, String>| {
                let mut resolved = BTreeMap::new();
                for (key, value) in values {
                    let v = resolve(value, &env)
                        .map_err(|why| fail(format!("server {name:?}: {table}.{key}: {why}")))?;
                    resolved.insert(key.clone(), v);
                }
                Ok::<_, ConfigError>(resolved)
            };
            let transport = match (&s.command, &s.url) {
                (Some(command), _) => {
                    // The server gets these few of ours, so it can run at all, and what `env`
                    // names; nothing else of this process's environment reaches it.
                    let mut env: BTreeMap<String, String> =
                        PASSED_ENV.iter().filter_map(|name| Some((name.to_string(), env(name)?))).collect();
                    env.extend(resolve_all("env", &s.env)?);
                    Transport::Stdio { command: command.clone(), args: s.args.clone(), env }
                }
                (None, url) => Transport::Http {
                    url: url.clone().unwrap_or_default(),
                    headers: resolve_all("headers", &s.headers)?,
                    oauth: match &s.oauth {
                        None => None,
                        Some(o) => Some(OAuthConfig {
                            client_id: o.client_id.clone(),
                            client_secret: match &o.client_secret {
                                Some(secret) => Some(resolve(secret, &env).map_err(|why| {
                                    fail(format!("server {name:?}: oauth.client_secret: {why}"))
                                })?),
                                None => None,
                            },
                            grant: o.grant,
                            scopes: o.scopes.clone(),
                            client_metadata_url: o.client_metadata_url.clone(),
                            redirect_port: o.redirect_port.unwrap_or(0),
                        }),
                    },
                },
            };
            let mut cfg = UpstreamConfig::with_transport(name.clone(), transport);
            if let Some(ms) = s.call_timeout_ms {
                cfg.call_timeout = Duration::from_millis(ms);
            }
            cfg.tool_timeouts = s
                .tool_timeouts_ms
                .iter()
                .map(|(tool, ms)| (tool.clone(), Duration::from_millis(*ms)))
                .collect();
            cfg.state_dir = state_dir.clone();
            out.push(cfg);
        }
        Ok(out)
    }
}

/// `env:NAME` → the variable, `file:PATH` → the file (trimmed), anything else as written. The
/// error names the reference, never a value.
fn resolve(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(name) = value.strip_prefix("env:") {
        env(name).ok_or_else(|| format!("environment variable {name} is not set"))
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {path}: {e}"))
    } else {
        Ok(value.to_string())
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, column)
}
