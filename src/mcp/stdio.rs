//! The MCP server's stdio transport, bounded like the daemon's connections (the same
//! [`Outbox`] and [`LineReader`]): rmcp's own writes each response from a task of its own, so a
//! client that sends and never reads would grow the server without limit. Here responses wait
//! in a counted queue; past `max_unsent_bytes` unread, or `max_in_flight` requests running,
//! the next request is not read until the client catches up; past twice `max_unsent_bytes`
//! the transport ends (rmcp then cancels the client's running programs).

use std::collections::HashMap;
use std::future::Future;

use rmcp::model::{ClientNotification, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::RoleServer;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

use crate::flow::{InFlight, Outbox};
use crate::rpc::{self, Line, LineReader, RpcError};

/// Line-delimited JSON-RPC over a reader and a writer, with bounded output.
pub(super) struct BoundedLines<R> {
    reader: LineReader<BufReader<R>>,
    /// Taken by `close`, which lets the writer finish.
    out: Option<Outbox>,
    writer: Option<tokio::task::JoinHandle<()>>,
    /// The client's requests whose responses are not yet queued.
    running: HashMap<RequestId, InFlight>,
}

impl<R: AsyncRead + Unpin + Send> BoundedLines<R> {
    pub(super) fn new<W>(reader: R, writer: W, bounds: &super::server::McpConfig) -> Self
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, writer) = Outbox::new(writer, bounds.max_unsent_bytes, bounds.max_in_flight);
        BoundedLines {
            reader: LineReader::new(BufReader::new(reader), bounds.max_line_bytes),
            out: Some(out),
            writer: Some(writer),
            running: HashMap::new(),
        }
    }

    fn refuse(&self, e: RpcError) {
        if let Some(out) = &self.out {
            out.send(rpc::response(&Value::Null, Err(e)));
        }
    }
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub(super) enum Overflowed {
    #[error("the client left more than {0} bytes of responses unread; the connection is closed")]
    Unread(usize),
    #[error("the transport is closed")]
    Closed,
}

impl<R: AsyncRead + Unpin + Send> rmcp::transport::Transport<RoleServer> for BoundedLines<R> {
    type Error = Overflowed;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Overflowed>> + Send + 'static {
        let answered = match &item {
            JsonRpcMessage::Response(r) => Some(&r.id),
            JsonRpcMessage::Error(e) => e.id.as_ref(),
            _ => None,
        };
        if let Some(id) = answered {
            self.running.remove(id);
        }
        let Some(out) = &self.out else {
            return std::future::ready(Err(Overflowed::Closed));
        };
        let queued = match serde_json::to_string(&item) {
            Ok(line) => out.send(line),
            // rmcp's own types always serialize; were one not to, the message is lost, not
            // the connection.
            Err(e) => {
                tracing::error!(error = %e, "an MCP message could not be serialized");
                true
            }
        };
        let result = if queued { Ok(()) } else { Err(Overflowed::Unread(2 * out.max_unsent())) };
        std::future::ready(result)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let out = self.out.as_ref()?;
            if !out.room().await {
                tracing::warn!("{}", Overflowed::Unread(2 * out.max_unsent()));
                return None;
            }
            let read = tokio::select! {
                read = self.reader.next() => read,
                () = out.overflowed() => continue,
            };
            let line = match read {
                Ok(Line::Eof) | Err(_) => return None,
                Ok(Line::Text(t)) => t,
                Ok(other) => {
                    if let Some(e) = other.framing_error(self.reader.max()) {
                        self.refuse(e);
                    }
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let message: RxJsonRpcMessage<RoleServer> = match serde_json::from_str(&line) {
                Ok(m) => m,
                Err(e) => {
                    let code = if serde_json::from_str::<Value>(&line).is_ok() {
                        rpc::INVALID_REQUEST
                    } else {
                        rpc::PARSE_ERROR
                    };
                    self.refuse(RpcError::new(code, format!("not an MCP message: {e}")));
                    continue;
                }
            };
            match &message {
                JsonRpcMessage::Request(r) => {
                    self.running.insert(r.id.clone(), out.begin());
                }
                // A cancelled request gets no response: it no longer counts.
                JsonRpcMessage::Notification(n) => {
                    if let ClientNotification::CancelledNotification(c) = &n.notification {
                        if let Some(id) = &c.params.request_id {
                            self.running.remove(id);
                        }
                    }
                }
                _ => {}
            }
            return Some(message);
        }
    }

    /// Lets the writer deliver what is queued: a one-shot `codemode mcp` must not exit with
    /// its last responses unwritten. A client that is not reading gets 5 s.
    async fn close(&mut self) -> Result<(), Overflowed> {
        self.out = None;
        self.running.clear();
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
        }
        Ok(())
    }
}
