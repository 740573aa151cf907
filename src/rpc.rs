//! JSON-RPC 2.0 framing: newline-delimited messages, bounded line length, error objects.

// Shared by the daemon and the MCP stdio transport; a build with MCP but no daemon uses part.
#![cfg_attr(not(feature = "daemon"), allow(dead_code))]

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Standard JSON-RPC error codes, and ours (-32000 and below).
pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// A registration the registry refused (collision, bad schema, reserved namespace).
pub(crate) const REGISTRATION_FAILED: i64 = -32001;
/// `code/cancel` named no running execution.
pub(crate) const NO_SUCH_EXECUTION: i64 = -32002;
/// `tools/describe` named no known tool.
pub(crate) const NO_SUCH_TOOL: i64 = -32003;
/// The daemon is shutting down.
pub(crate) const SHUTTING_DOWN: i64 = -32004;
/// `skills/save` refused the skill (its name, its syntax, its types); `skills/show` or
/// `skills/remove` named no skill.
pub(crate) const SKILL_REFUSED: i64 = -32005;

/// An error response's `error` object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    /// The error's `data`: what a client needs to act on it (a refused skill's diagnostics).
    pub(crate) data: Option<Value>,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), data: None }
    }
    pub(crate) fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
    pub(crate) fn params(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }
}

pub(crate) fn response(id: &Value, result: Result<Value, RpcError>) -> String {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(RpcError { code, message, data: None }) => {
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
        }
        Err(RpcError { code, message, data: Some(data) }) => {
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message, "data": data } })
        }
    }
    .to_string()
}

pub(crate) fn notification(method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "method": method, "params": params }).to_string()
}

pub(crate) fn request(id: u64, method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

/// One line from the peer, or why there is none.
pub(crate) enum Line {
    Text(String),
    /// The line was longer than the limit; it was read to its end and dropped.
    TooLong(usize),
    /// Not UTF-8.
    Invalid,
    Eof,
}

impl Line {
    /// The error to answer a line that cannot be a message with (too long, not UTF-8).
    pub(crate) fn framing_error(&self, max: usize) -> Option<RpcError> {
        match self {
            Line::TooLong(n) => Some(RpcError::new(
                INVALID_REQUEST,
                format!("message of {n} bytes is longer than the limit of {max} bytes"),
            )),
            Line::Invalid => Some(RpcError::new(PARSE_ERROR, "message is not UTF-8")),
            Line::Text(_) | Line::Eof => None,
        }
    }
}

/// Reads newline-terminated lines of at most `max` bytes without ever buffering more than
/// that: a longer line is consumed and reported, and the next line is read normally.
/// Cancel-safe: a read dropped part-way (in a `select!`) keeps its partial line for the next.
pub(crate) struct LineReader<R> {
    reader: R,
    max: usize,
    line: Vec<u8>,
    skipped: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub(crate) fn new(reader: R, max: usize) -> Self {
        LineReader { reader, max, line: Vec::new(), skipped: 0 }
    }

    /// The longest line accepted, in bytes.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) async fn next(&mut self) -> std::io::Result<Line> {
        loop {
            // No await between taking bytes from the reader and recording them here.
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                return Ok(if self.line.is_empty() && self.skipped == 0 { Line::Eof } else { self.finish() });
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let content = &chunk[..if done { take - 1 } else { take }];
            if self.skipped > 0 || self.line.len() + content.len() > self.max {
                self.skipped += self.line.len() + content.len();
                self.line.clear();
            } else {
                self.line.extend_from_slice(content);
            }
            self.reader.consume(take);
            if done {
                return Ok(self.finish());
            }
        }
    }

    fn finish(&mut self) -> Line {
        let mut line = std::mem::take(&mut self.line);
        let skipped = std::mem::take(&mut self.skipped);
        if skipped > 0 {
            return Line::TooLong(skipped);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match String::from_utf8(line) {
            Ok(s) => Line::Text(s),
            Err(_) => Line::Invalid,
        }
    }
}

/// The number after `"id":` in a line that is not valid JSON, if one is there: enough to tell
/// which of our requests a broken answer was meant for.
pub(crate) fn id_in(line: &str) -> Option<u64> {
    let mut rest = line;
    while let Some(at) = rest.find("\"id\"") {
        rest = &rest[at + 4..];
        let value = rest.trim_start().strip_prefix(':')?.trim_start();
        let value = value.strip_prefix('"').unwrap_or(value);
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(id) = digits.parse() {
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn the_id_of_a_broken_answer_is_found() {
        assert_eq!(super::id_in(r#"{"jsonrpc":"2.0","id": 7, "result": {oops"#), Some(7));
        assert_eq!(super::id_in(r#"{"id":"12","result":"#), Some(12));
        assert_eq!(super::id_in("not json at all"), None);
    }
}
