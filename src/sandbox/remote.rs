//! The remote end of a sandbox's [`Link`](super::Link): in a sealed worker process, what the
//! sandbox asks its host goes over the worker's socket ([`super::wire`]).

use std::cell::{Cell, RefCell};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wire::{self, FromWorker, Reader, ToWorker, WireNext, WireTarget};
use crate::bridge::{Next, Settlement, Target, ToolFailure};
use crate::error::ErrorKind;
use crate::outcome::LogLine;

/// How often a running program's interrupt handler looks for a cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(2);

/// The worker's end of the socket, as the sandbox's [`Link`] uses it.
pub(crate) struct Channel {
    pub(crate) sock: UnixStream,
    pub(crate) reader: RefCell<Reader>,
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) redact: Cell<bool>,
    pub(crate) stream: Cell<bool>,
    pub(crate) polled: Cell<Instant>,
}

impl Channel {
    pub(crate) fn send(&self, message: &FromWorker) {
        if wire::write(&self.sock, message, &[]).is_err() {
            host_gone();
        }
    }

    /// Asks the host and waits for its answer. A `Cancel` that crossed the question is noted.
    fn ask(&self, message: &FromWorker) -> (ToWorker, Vec<u8>) {
        self.send(message);
        let mut reader = self.reader.borrow_mut();
        if reader.spin(&self.sock, wire::SPIN).is_err() {
            host_gone();
        }
        loop {
            match reader.read::<ToWorker>(&self.sock) {
                Ok((ToWorker::Cancel, _)) => self.cancelled.store(true, Ordering::Relaxed),
                Ok(answer) => return answer,
                Err(_) => host_gone(),
            }
        }
    }

    fn text(&self, message: &FromWorker) -> Option<String> {
        match self.ask(message) {
            (ToWorker::Text { text }, _) => text,
            _ => host_gone(),
        }
    }

    pub(crate) fn clear_timer(&self, id: u64) {
        self.send(&FromWorker::ClearTimer { id });
    }

    pub(crate) fn next(&self) -> Next {
        let (next, body) = match self.ask(&FromWorker::Next) {
            (ToWorker::Next { next }, body) => (next, body),
            _ => host_gone(),
        };
        match next {
            WireNext::Value { id, tool } => {
                let json = match String::from_utf8(body) {
                    Ok(json) => json,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                Next::Settle(id, Settlement::Value { json: Arc::from(json), tool: Arc::from(tool) })
            }
            WireNext::Error { id, failure } => Next::Settle(
                id,
                Settlement::Error(ToolFailure {
                    name: if failure.type_error { "TypeError" } else { "ToolError" },
                    message: failure.message,
                    tool: failure.tool,
                    code: failure.code,
                    path: failure.path,
                }),
            ),
            WireNext::Timer { id } => Next::Settle(id, Settlement::Timer),
            WireNext::Log { line } => Next::Log(line),
            WireNext::Idle => Next::Idle,
            WireNext::Paused => Next::Paused,
            WireNext::TimedOut => Next::TimedOut,
            WireNext::Cancelled => Next::Cancelled,
        }
    }

    pub(crate) fn redact(&self, text: String) -> String {
        if !self.redact.get() {
            return text;
        }
        self.text(&FromWorker::Redact { text }).unwrap_or_default()
    }

    pub(crate) fn emit_log(&self, line: &LogLine) {
        if self.stream.get() {
            self.send(&FromWorker::Log { line: line.clone() });
        }
    }

    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancelled)
    }

    pub(crate) fn unknown_tool(&self, namespace: &str, name: &str) -> String {
        let ask = FromWorker::UnknownTool { namespace: namespace.into(), name: name.into() };
        self.text(&ask).unwrap_or_default()
    }

    pub(crate) fn skill(&self, name: &str) -> Option<Arc<str>> {
        self.text(&FromWorker::Skill { name: name.into() }).map(Arc::from)
    }

    pub(crate) fn reference_note(&self, undefined: &str) -> Option<String> {
        self.text(&FromWorker::Note { undefined: undefined.into() })
    }

    /// Reads a `Cancel` the host sent while the program runs, at most every [`CANCEL_POLL`]:
    /// called from the interrupt handler, so it must stay cheap.
    pub(crate) fn poll_cancel(&self) {
        let now = Instant::now();
        if now.saturating_duration_since(self.polled.get()) < CANCEL_POLL {
            return;
        }
        self.polled.set(now);
        let mut reader = self.reader.borrow_mut();
        match reader.ready(&self.sock) {
            Ok(false) => {}
            Ok(true) => match reader.read::<ToWorker>(&self.sock) {
                Ok((ToWorker::Cancel, _)) => self.cancelled.store(true, Ordering::Relaxed),
                _ => host_gone(),
            },
            Err(_) => host_gone(),
        }
    }
}

/// One run's side of the channel. Calls and timers are sent without waiting for an answer: the
/// host's bridge numbers them in the order they come, as this does, and the call limit is the
/// one answer a call could have, which is known here (the host checks both).
pub(crate) struct Remote {
    pub(crate) channel: Rc<Channel>,
    next_id: u64,
    calls: u32,
    max_calls: u32,
}

impl Remote {
    pub(crate) fn new(channel: Rc<Channel>, max_calls: u32) -> Remote {
        Remote { channel, next_id: 1, calls: 0, max_calls }
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn call(&mut self, target: Target<'_>, args: Result<Value, String>) -> Result<u64, ErrorKind> {
        let id = self.fresh_id();
        let counts = target.counts();
        let target = match target {
            Target::Tool(index) => WireTarget::Tool(index),
            Target::Builtin(name) => WireTarget::Builtin(name.to_string()),
            // Made by the bridge itself, on the host's side; never by a program.
            Target::Entry(_) => WireTarget::Tool(usize::MAX),
        };
        // Sent even past the limit, so both sides keep numbering alike.
        self.channel.send(&FromWorker::Call { id, target, args });
        if counts {
            self.calls += 1;
            if self.calls > self.max_calls {
                return Err(ErrorKind::ToolCallLimit);
            }
        }
        Ok(id)
    }

    pub(crate) fn timer(&mut self, delay: Duration) -> u64 {
        let id = self.fresh_id();
        self.channel.send(&FromWorker::Timer { id, delay });
        id
    }
}

/// The host went away or broke the protocol: nothing here is worth keeping.
pub(crate) fn host_gone() -> ! {
    std::process::exit(0)
}
