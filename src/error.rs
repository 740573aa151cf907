//! Errors, one type per boundary.
//!
//! * [`ExecError`] is what a failed execution reports inside an [`Outcome`](crate::Outcome):
//!   a stable [`ErrorKind`] (its wire code never changes), a message, and where it happened.
//! * [`ToolError`] is what a tool handler returns; it becomes a rejected promise in the sandbox.
//! * [`RegistryError`] is returned when tools are registered.

use serde::{Deserialize, Serialize};

/// Why an execution failed. The `snake_case` name is the stable wire code
/// (`codemode run --json`, the daemon, MCP).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TypeScript did not parse, or used syntax that needs a transform (`enum`, `namespace`,
    /// parameter properties), or nested deeper than the parsers allow. Nothing ran.
    Syntax,
    /// The program does not type-check against the tools' declarations; `diagnostics` says
    /// where and why. Nothing ran. Also when the checker itself failed on this program (then
    /// `diagnostics` is empty and the message says what happened).
    TypeError,
    /// The program threw (or its returned promise rejected) and nothing caught it.
    Exception,
    /// The wall-clock deadline passed.
    Timeout,
    /// The sandbox ran out of its memory budget. That sandbox is discarded.
    MemoryLimit,
    /// The program made more tool calls than allowed.
    ToolCallLimit,
    /// The request was refused before anything ran: the program is larger than
    /// `max_program_bytes`, or a limit cannot be met (a memory limit below what any program
    /// needs).
    Limit,
    /// The program produced more output (logs and result) than the hard output budget.
    OutputLimit,
    /// The program awaited something that can never settle: no tool call or timer was pending.
    Deadlock,
    /// The returned value cannot be expressed as JSON (a cycle, a Proxy, a function).
    InvalidResult,
    /// The caller cancelled the execution (or dropped its future).
    Cancelled,
    /// A bug or resource failure on the host side (thread could not start, engine refused to
    /// build a context). Worth reporting.
    Internal,
}

impl ErrorKind {
    /// The stable wire code, as serialized.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::TypeError => "type_error",
            ErrorKind::Exception => "exception",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::ToolCallLimit => "tool_call_limit",
            ErrorKind::Limit => "limit",
            ErrorKind::OutputLimit => "output_limit",
            ErrorKind::Deadlock => "deadlock",
            ErrorKind::InvalidResult => "invalid_result",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A failed execution, as structured data. Line and column are 1-based and refer to the
/// agent's own TypeScript source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ExecError {
    /// Stable category.
    pub kind: ErrorKind,
    /// Human-readable message (for exceptions: the JS `message`).
    pub message: String,
    /// The JS error's `name` (`TypeError`, `ToolError`, ...) for exceptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 1-based line in the agent's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column in the agent's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The JS stack, with positions mapped to the agent's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// For `type_error`: every error the compiler found, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// For an uncaught tool error (a handler's `ToolError` or an argument `TypeError`): the
    /// tool, as `namespace.tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// For an uncaught tool error: its `code` (`"not_found"`, the handler's own codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For `timeout` and `cancelled`: the tool calls still pending, longest waiting first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingCall>,
}

impl ExecError {
    /// The error on one line, as the CLI and the MCP server show it:
    /// `error[exception] at line 2, column 14: ToolError: no such sheet (tool sheets.getRows, code not_found)`.
    pub fn headline(&self) -> String {
        let at = match (self.line, self.column) {
            (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
            _ => String::new(),
        };
        let name = self.name.as_deref().map(|n| format!("{n}: ")).unwrap_or_default();
        let tool = match (&self.tool, &self.code) {
            (Some(tool), Some(code)) => format!(" (tool {tool}, code {code})"),
            (Some(tool), None) => format!(" (tool {tool})"),
            _ => String::new(),
        };
        format!("error[{}]{at}: {name}{}{tool}", self.kind.code(), self.message)
    }

    /// An error with only a kind and a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ExecError {
            kind,
            message: message.into(),
            name: None,
            line: None,
            column: None,
            stack: None,
            diagnostics: Vec::new(),
            tool: None,
            code: None,
            pending: Vec::new(),
        }
    }

    /// The same error, located at `line:column` of the agent's source.
    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

/// The error a tool handler returns. In the sandbox it rejects the call's promise with an
/// `Error` whose `name` is `"ToolError"` and which carries `tool` and `code` properties.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// Short machine-readable code (`"not_found"`, `"invalid_argument"`, ...), free-form.
    pub code: String,
    /// What went wrong, for the program (and the agent reading its logs).
    pub message: String,
}

impl ToolError {
    /// A tool error with code `"tool_error"`.
    pub fn new(message: impl Into<String>) -> Self {
        ToolError { code: "tool_error".into(), message: message.into() }
    }

    /// A tool error with an explicit code.
    pub fn with_code(code: impl Into<String>, message: impl Into<String>) -> Self {
        ToolError { code: code.into(), message: message.into() }
    }
}

/// Why a tool could not be registered.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The namespace is empty or cannot be made into a JS identifier.
    #[error("invalid namespace {0:?}: it must start with a letter, `_` or `$` and contain letters, digits, `_`, `-` or `.`")]
    InvalidNamespace(String),
    /// The namespace would shadow a global the sandbox relies on (`console`, `codemode`, ...).
    #[error("namespace {0:?} is reserved")]
    ReservedNamespace(String),
    /// The tool name is empty or has no character that can form a JS name.
    #[error("invalid tool name {name:?} in namespace {namespace:?}")]
    InvalidToolName {
        /// Namespace of the tool.
        namespace: String,
        /// The rejected name.
        name: String,
    },
    /// Two tools of one namespace map to the same JS name, or the same name was registered twice.
    #[error("tool {name:?} in namespace {namespace:?} collides with {existing:?}: both are `{namespace}.{js_name}` in the sandbox")]
    Collision {
        /// Namespace of both tools.
        namespace: String,
        /// The tool being registered.
        name: String,
        /// The tool already registered.
        existing: String,
        /// The JS name both map to.
        js_name: String,
    },
    /// The input or output schema is not a valid JSON Schema.
    #[error("invalid {which} schema for tool {namespace}.{name}: {message}")]
    InvalidSchema {
        /// Namespace of the tool.
        namespace: String,
        /// Tool name.
        name: String,
        /// `"input"` or `"output"`.
        which: &'static str,
        /// What the validator compiler said.
        message: String,
    },
}

/// Why a discovery request could not be answered.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// These names match no namespace and no `namespace.tool`.
    #[error("no such tool or namespace: {}", .0.join(", "))]
    UnknownTools(Vec<String>),
}

/// A tool call that had not finished when the program was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCall {
    /// `namespace.tool`.
    pub tool: String,
    /// Milliseconds since the program made the call.
    pub waited_ms: u64,
    /// True when it had not started: it waited behind the concurrency limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
}

/// One error the compiler found, at the agent's own position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// 1-based line in the agent's source.
    pub line: u32,
    /// 1-based column (in characters) in the agent's source.
    pub column: u32,
    /// TypeScript's error code (`2551` for "Property 'x' does not exist … Did you mean 'y'?").
    pub code: u32,
    /// The compiler's message, with its hints.
    pub message: String,
}
