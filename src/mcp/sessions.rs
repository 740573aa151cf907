//! The MCP HTTP server's sessions, bounded: at most `max_sessions` live at once (a new one
//! past that is refused), and a session with no open request or stream for `session_idle` is
//! closed. rmcp's own [`LocalSessionManager`] does the protocol; this wraps it to count, cap
//! and expire, and to cancel a request whose HTTP response was abandoned (the client went
//! away) instead of letting its program run to its deadline.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification,
    JsonRpcMessage, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError,
};
use rmcp::transport::streamable_http_server::session::{ServerSseMessage, SessionId, SessionManager};

/// What `GET /` reports about the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStats {
    /// Sessions open now.
    pub live: usize,
    /// Requests and streams open now, over all sessions.
    pub open_requests: usize,
    /// The most that may be open at once.
    pub max: usize,
    /// How long a session may stay idle before it is closed, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Sessions opened since the server started.
    pub created: u64,
    /// Session openings refused because `max` were live.
    pub refused: u64,
    /// Sessions closed for being idle.
    pub expired: u64,
    /// Sessions the client closed (`DELETE`) or whose worker ended.
    pub closed: u64,
    /// Requests cancelled because their client stopped waiting for the response.
    pub abandoned: u64,
}

/// rmcp's session manager with a cap, idle expiry and counts.
pub(super) struct Sessions {
    inner: Arc<LocalSessionManager>,
    state: Arc<Mutex<State>>,
    max: usize,
    idle: Duration,
    /// Requests one session may have open at once.
    max_in_flight: usize,
}

struct State {
    live: HashMap<SessionId, Activity>,
    /// Openings under way, counted against the cap before their id exists.
    opening: usize,
    counts: Counts,
}

/// What happened to sessions since the server started (the rest of [`SessionStats`] is read
/// from the live sessions and the settings).
#[derive(Default)]
struct Counts {
    created: u64,
    refused: u64,
    expired: u64,
    closed: u64,
    abandoned: u64,
}

struct Activity {
    /// Requests and streams of the session open now; it is never idle while one is.
    open: usize,
    last: Instant,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum SessionsError {
    #[error("{0} MCP sessions are open, the most this server allows ([mcp] max_sessions); close one (DELETE /mcp) or wait for an idle one to expire")]
    Full(usize),
    #[error("this MCP session has {0} requests open, the most it may ([mcp] max_in_flight); wait for one to finish")]
    Busy(usize),
    #[error(transparent)]
    Inner(#[from] LocalSessionManagerError),
}

impl Sessions {
    pub(super) fn new(max: usize, idle: Duration, max_in_flight: usize) -> Self {
        let mut inner = LocalSessionManager::default();
        // Expiry is ours: rmcp's keep-alive would also close a session whose one request is
        // a long, silent program.
        inner.session_config.keep_alive = None;
        Sessions {
            inner: Arc::new(inner),
            state: Arc::new(Mutex::new(State {
                live: HashMap::new(),
                opening: 0,
                counts: Counts::default(),
            })),
            max,
            idle,
            max_in_flight,
        }
    }

    pub(super) fn stats(&self) -> SessionStats {
        let state = self.state.lock().expect("sessions lock");
        let c = &state.counts;
        SessionStats {
            live: state.live.len(),
            open_requests: state.live.values().map(|a| a.open).sum(),
            max: self.max,
            idle_timeout_ms: u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX),
            created: c.created,
            refused: c.refused,
            expired: c.expired,
            closed: c.closed,
            abandoned: c.abandoned,
        }
    }

    /// Whether a new session is refused now (and if so, counts the refusal).
    pub(super) fn refuses_new(&self) -> bool {
        let mut state = self.state.lock().expect("sessions lock");
        let full = state.live.len() + state.opening >= self.max;
        if full {
            state.counts.refused += 1;
        }
        full
    }

    /// Closes the sessions idle for longer than the timeout; runs until the server stops.
    pub(super) async fn expire_idle(self: Arc<Self>) {
        let period = (self.idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        loop {
            tokio::time::sleep(period).await;
            let idle: Vec<SessionId> = {
                let mut state = self.state.lock().expect("sessions lock");
                let expired: Vec<SessionId> = state
                    .live
                    .iter()
                    .filter(|(_, a)| a.open == 0 && a.last.elapsed() >= self.idle)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &expired {
                    state.live.remove(id);
                }
                state.counts.expired += expired.len() as u64;
                expired
            };
            for id in idle {
                tracing::info!(session = %id, "MCP session closed after {} ms idle", self.idle.as_millis());
                let _ = self.inner.close_session(&id).await;
            }
        }
    }

    /// Marks the session busy until the returned guard is dropped.
    fn enter(&self, id: &SessionId, request: Option<RequestId>) -> Busy {
        if let Some(a) = self.state.lock().expect("sessions lock").live.get_mut(id) {
            a.open += 1;
            a.last = Instant::now();
        }
        Busy {
            state: Arc::clone(&self.state),
            inner: Arc::clone(&self.inner),
            id: id.clone(),
            unanswered: request,
        }
    }
}

/// One open request or stream of a session.
struct Busy {
    state: Arc<Mutex<State>>,
    inner: Arc<LocalSessionManager>,
    id: SessionId,
    /// The request whose response has not been seen yet.
    unanswered: Option<RequestId>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("sessions lock");
        if let Some(a) = state.live.get_mut(&self.id) {
            a.open = a.open.saturating_sub(1);
            a.last = Instant::now();
        }
        // The response stream was dropped before its response: the client is gone, so its
        // request (a running program) is cancelled as if it had sent notifications/cancelled.
        let (Some(request), Ok(runtime)) = (self.unanswered.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        state.counts.abandoned += 1;
        drop(state);
        let inner = Arc::clone(&self.inner);
        let id = self.id.clone();
        let cancel = ClientNotification::CancelledNotification(CancelledNotification::new(
            CancelledNotificationParam::new(
                Some(request),
                Some("the client closed the response stream".into()),
            ),
        ));
        runtime.spawn(async move {
            let _ = inner.accept_message(&id, JsonRpcMessage::notification(cancel)).await;
        });
    }
}

/// A session's response stream, keeping it busy while open.
struct Tracked<S> {
    stream: Pin<Box<S>>,
    busy: Busy,
}

impl<S: Stream<Item = ServerSseMessage>> Stream for Tracked<S> {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServerSseMessage>> {
        let item = self.stream.as_mut().poll_next(cx);
        if let Poll::Ready(Some(m)) = &item {
            let answered = match m.message.as_deref() {
                Some(JsonRpcMessage::Response(r)) => Some(&r.id),
                Some(JsonRpcMessage::Error(e)) => e.id.as_ref(),
                _ => None,
            };
            if answered.is_some() && answered == self.busy.unanswered.as_ref() {
                self.busy.unanswered = None;
            }
        }
        item
    }
}

impl SessionManager for Sessions {
    type Error = SessionsError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), SessionsError> {
        {
            let mut state = self.state.lock().expect("sessions lock");
            if state.live.len() + state.opening >= self.max {
                state.counts.refused += 1;
                return Err(SessionsError::Full(self.max));
            }
            state.opening += 1;
        }
        let created = self.inner.create_session().await;
        let mut state = self.state.lock().expect("sessions lock");
        state.opening -= 1;
        let (id, transport) = created?;
        state.live.insert(id.clone(), Activity { open: 0, last: Instant::now() });
        state.counts.created += 1;
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, SessionsError> {
        let _busy = self.enter(id, None);
        Ok(self.inner.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, SessionsError> {
        Ok(self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), SessionsError> {
        {
            let mut state = self.state.lock().expect("sessions lock");
            if state.live.remove(id).is_some() {
                state.counts.closed += 1;
            }
        }
        Ok(self.inner.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, SessionsError> {
        let request = match &message {
            JsonRpcMessage::Request(r) => Some(r.id.clone()),
            _ => None,
        };
        let open = self.state.lock().expect("sessions lock").live.get(id).map_or(0, |a| a.open);
        if open >= self.max_in_flight {
            return Err(SessionsError::Busy(self.max_in_flight));
        }
        // Counted once the stream exists: a request refused here was never running.
        let stream = self.inner.create_stream(id, message).await?;
        Ok(Tracked { stream: Box::pin(stream), busy: self.enter(id, request) })
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), SessionsError> {
        let _busy = self.enter(id, None);
        Ok(self.inner.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, SessionsError> {
        let stream = self.inner.create_standalone_stream(id).await?;
        Ok(Tracked { stream: Box::pin(stream), busy: self.enter(id, None) })
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, SessionsError> {
        let stream = self.inner.resume(id, last_event_id).await?;
        Ok(Tracked { stream: Box::pin(stream), busy: self.enter(id, None) })
    }
}
