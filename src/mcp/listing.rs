//! What rmcp's `Tool` does not keep: each tool's `execution.taskSupport`. A tool whose
//! support is `"required"` can only be called as an MCP task, which codemode does not speak
//! yet, so it is left out of the namespace and reported. rmcp parses `tools/list` into types
//! without that field, so for stdio servers the bytes are read on their way to rmcp ([`Tee`]),
//! and the lines that arrive while a listing is in flight are looked at; over streamable HTTP,
//! rmcp's client is wrapped ([`TappedHttp`]) and the events of a `tools/list` response stream
//! are looked at (a server that answers with one JSON body instead is asked once more, raw).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::http::{HeaderName, HeaderValue};
use futures_util::StreamExt;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, RequestParamsMeta};
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

/// Longest line looked at; a longer one (a huge tool result during a listing) is passed on
/// unread.
const MAX_LINE: usize = 16 << 20;

/// The task support of the tools of the listing in flight, shared by the reader and the
/// upstream.
#[derive(Default)]
pub(crate) struct Listing {
    active: AtomicBool,
    found: Mutex<HashMap<String, String>>,
    /// The scope an HTTP server last said a request lacked (a 403 `insufficient_scope`).
    wanted_scope: Mutex<Option<String>>,
    /// An HTTP server answered 401 since this was last taken.
    refused: AtomicBool,
}

impl Listing {
    /// A listing starts: what the last one found is forgotten.
    pub(crate) fn begin(&self) {
        self.found.lock().expect("listing lock").clear();
        self.active.store(true, Ordering::SeqCst);
    }

    /// The listing ended: each tool's `execution.taskSupport`, by tool name, for the tools
    /// that declare one.
    pub(crate) fn end(&self) -> HashMap<String, String> {
        self.active.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.found.lock().expect("listing lock"))
    }

    /// Whether the server answered 401 since the last time this was asked.
    pub(crate) fn take_refused(&self) -> bool {
        self.refused.swap(false, Ordering::SeqCst)
    }

    /// The scope the server last said a request lacked, once.
    pub(crate) fn take_wanted_scope(&self) -> Option<String> {
        self.wanted_scope.lock().expect("listing lock").take()
    }

    fn look_at(&self, line: &[u8]) {
        // Cheap test first: most lines are not a listing.
        if !contains(line, b"\"taskSupport\"") {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(line) else { return };
        let Some(tools) = message.pointer("/result/tools").and_then(Value::as_array) else { return };
        let mut found = self.found.lock().expect("listing lock");
        for tool in tools {
            let name = tool.get("name").and_then(Value::as_str);
            let support = tool.pointer("/execution/taskSupport").and_then(Value::as_str);
            if let (Some(name), Some(support)) = (name, support) {
                found.insert(name.to_string(), support.to_string());
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A server's output on its way to rmcp, whose lines are looked at while a listing is in
/// flight.
pub(crate) struct Tee<R> {
    inner: R,
    lines: Lines,
}

/// Where the reader is in the server's lines.
struct Lines {
    listing: Arc<Listing>,
    line: Vec<u8>,
    /// The current line is being kept (it began while a listing was in flight).
    keeping: bool,
    at_line_start: bool,
}

impl<R> Tee<R> {
    pub(crate) fn new(inner: R, listing: Arc<Listing>) -> Self {
        Tee { inner, lines: Lines { listing, line: Vec::new(), keeping: false, at_line_start: true } }
    }
}

impl Lines {
    fn see(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.at_line_start {
                self.keeping = self.listing.active.load(Ordering::SeqCst);
                self.at_line_start = false;
            }
            let (part, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if self.keeping {
                if self.line.len() + part.len() > MAX_LINE {
                    self.keeping = false;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if ended {
                if self.keeping {
                    self.listing.look_at(&self.line);
                }
                self.line.clear();
                self.at_line_start = true;
                rest = &rest[part.len() + 1..];
            } else {
                rest = &[];
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tee<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.lines.see(&buf.filled()[before..]);
        }
        polled
    }
}

/// rmcp's streamable HTTP client, with the answers to `tools/list` looked at on their way.
#[derive(Clone)]
pub(crate) struct TappedHttp {
    inner: reqwest::Client,
    listing: Arc<Listing>,
}

impl TappedHttp {
    pub(crate) fn new(listing: Arc<Listing>) -> Self {
        TappedHttp { inner: reqwest::Client::default(), listing }
    }

    /// Taps `response` when it answers a `tools/list`. An event stream is looked at as it
    /// passes; a JSON body rmcp has already parsed (losing the field), so the same listing is
    /// asked for once more and its raw body looked at: listing changes nothing on a server.
    async fn tap(
        &self,
        response: Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>,
        again: Option<RawPost>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        match &response {
            Err(StreamableHttpError::InsufficientScope(e)) => {
                if let Some(scope) = e.get_required_scope() {
                    *self.listing.wanted_scope.lock().expect("listing lock") = Some(scope.to_string());
                }
            }
            Err(StreamableHttpError::AuthRequired(_)) => self.listing.refused.store(true, Ordering::SeqCst),
            _ => {}
        }
        let Some(again) = again else { return response };
        match response? {
            StreamableHttpPostResponse::Sse(events, session) => {
                let listing = Arc::clone(&self.listing);
                let events = events.inspect(move |event| {
                    if let Some(data) = event.as_ref().ok().and_then(|e| e.data.as_deref()) {
                        listing.look_at(data.as_bytes());
                    }
                });
                Ok(StreamableHttpPostResponse::Sse(events.boxed(), session))
            }
            json @ StreamableHttpPostResponse::Json(..) => {
                if let Err(e) = again.send(&self.inner, &self.listing).await {
                    tracing::debug!(error = %e, "tools/list asked again for its task support, in vain");
                }
                Ok(json)
            }
            other => Ok(other),
        }
    }
}

/// A `tools/list` request as rmcp posted it, to post once more.
struct RawPost {
    uri: Arc<str>,
    body: Vec<u8>,
    session_id: Option<Arc<str>>,
    auth_header: Option<String>,
    headers: HashMap<HeaderName, HeaderValue>,
}

impl RawPost {
    fn of(
        uri: &Arc<str>,
        message: &ClientJsonRpcMessage,
        session_id: &Option<Arc<str>>,
        auth_header: &Option<String>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) -> Option<RawPost> {
        let JsonRpcMessage::Request(request) = message else { return None };
        if !matches!(request.request, ClientRequest::ListToolsRequest(_)) {
            return None;
        }
        Some(RawPost {
            uri: Arc::clone(uri),
            body: serde_json::to_vec(message).ok()?,
            session_id: session_id.clone(),
            auth_header: auth_header.clone(),
            headers: headers.clone(),
        })
    }

    async fn send(self, client: &reqwest::Client, listing: &Listing) -> Result<(), reqwest::Error> {
        let mut request = client
            .post(self.uri.as_ref())
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.body);
        if let Some(token) = self.auth_header {
            request = request.bearer_auth(token);
        }
        if let Some(session) = self.session_id {
            request = request.header("mcp-session-id", session.as_ref());
        }
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await?.error_for_status()?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_LINE {
                return Ok(());
            }
            body.extend_from_slice(&chunk);
        }
        // One JSON body, or the `data:` lines of an event stream.
        for line in body.split(|&b| b == b'\n') {
            listing.look_at(line.strip_prefix(b"data:").unwrap_or(line).trim_ascii());
        }
        Ok(())
    }
}

/// A `tools/call` that carries the trace context in `_meta` (SEP-414) carries it as the W3C
/// headers too, for the HTTP layers in front of the server (proxies, gateways) that trace.
fn with_trace_headers(
    message: &ClientJsonRpcMessage,
    mut headers: HashMap<HeaderName, HeaderValue>,
) -> HashMap<HeaderName, HeaderValue> {
    let JsonRpcMessage::Request(request) = message else { return headers };
    let ClientRequest::CallToolRequest(call) = &request.request else { return headers };
    let context = [("traceparent", call.params.traceparent()), ("tracestate", call.params.tracestate())];
    for (name, value) in context {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

impl StreamableHttpClient for TappedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let headers = with_trace_headers(&message, headers);
        let again = RawPost::of(&uri, &message, &session_id, &auth_header, &headers);
        let response = self.inner.post_message(uri, message, session_id, auth_header, headers).await;
        self.tap(response, again).await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let headers = with_trace_headers(&message, headers);
        let again = RawPost::of(&uri, &message, &session_id, &auth_header, &headers);
        let response = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await;
        self.tap(response, again).await
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl std::future::Future<Output = Result<(), StreamableHttpError<Self::Error>>> + Send + '_ {
        self.inner.delete_session(uri, session_id, auth_header, headers)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl std::future::Future<Output = Result<BoxedSseResponse, StreamableHttpError<Self::Error>>> + Send + '_
    {
        self.inner.get_stream(uri, session_id, last_event_id, auth_header, headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl std::future::Future<Output = Result<BoxedSseResponse, StreamableHttpError<Self::Error>>> + Send + '_
    {
        self.inner.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            headers,
            max_sse_event_size,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_of_a_listing_in_flight_are_read() {
        let listing = Arc::new(Listing::default());
        let mut tee = Tee::new(tokio::io::empty(), Arc::clone(&listing)).lines;
        let list = br#"{"result":{"tools":[{"name":"a","execution":{"taskSupport":"required"}},{"name":"b"}]},"id":2}"#;
        tee.see(list);
        tee.see(b"\n");
        assert!(listing.end().is_empty(), "no listing was in flight");
        listing.begin();
        // Split anywhere, as reads split it.
        let (one, two) = list.split_at(17);
        tee.see(one);
        tee.see(two);
        tee.see(b"\n{\"other\":1}\n");
        assert_eq!(listing.end(), HashMap::from([("a".to_string(), "required".to_string())]));
    }
}
