//! The worker's side: a sealed process that runs programs in QuickJS sandboxes and reaches its
//! host only through [`Channel`].

use std::cell::Cell;
use std::collections::HashMap;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wire::{self, Finished, FromWorker, RunSpec, ToWorker, WireNext, WireTarget};
use crate::bridge::{Next, Settlement, Target, ToolFailure};
use crate::error::{ErrorKind, ExecError};
use crate::outcome::{LogLine, Outcome};
use crate::sandbox::{Clock, Link, Names, Sandbox, ScriptCache, Start};

/// The descriptor the host hands the worker its end of the socket on.
pub(crate) const SOCKET_FD: i32 = 3;

/// How often a running program's interrupt handler looks for a cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(2);

/// The worker's end of the socket, as the sandbox's [`Link`] uses it.
pub(crate) struct Channel {
    sock: UnixStream,
    cancelled: Arc<AtomicBool>,
    redact: Cell<bool>,
    stream: Cell<bool>,
    polled: Cell<Instant>,
}

impl Channel {
    fn send(&self, message: &FromWorker) {
        if wire::write(&self.sock, message, &[]).is_err() {
            host_gone();
        }
    }

    /// Asks the host and waits for its answer. A `Cancel` that crossed the question is noted.
    fn ask(&self, message: &FromWorker) -> (ToWorker, Vec<u8>) {
        self.send(message);
        loop {
            match wire::read::<ToWorker>(&self.sock) {
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

    pub(crate) fn call(&self, target: Target<'_>, args: Result<Value, String>) -> Result<u64, ErrorKind> {
        let target = match target {
            Target::Tool(index) => WireTarget::Tool(index),
            Target::Builtin(name) => WireTarget::Builtin(name.to_string()),
            // Made by the bridge itself, on the host's side; never by a program.
            Target::Entry(_) => WireTarget::Tool(usize::MAX),
        };
        match self.ask(&FromWorker::Call { target, args }) {
            (ToWorker::Called { stop: Some(kind), .. }, _) => Err(kind),
            (ToWorker::Called { id, stop: None }, _) => Ok(id),
            _ => host_gone(),
        }
    }

    pub(crate) fn timer(&self, delay: Duration) -> u64 {
        match self.ask(&FromWorker::Timer { delay }) {
            (ToWorker::Timer { id }, _) => id,
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
        let mut byte = 0u8;
        let waiting = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if waiting > 0 {
            match wire::read::<ToWorker>(&self.sock) {
                Ok((ToWorker::Cancel, _)) => self.cancelled.store(true, Ordering::Relaxed),
                _ => host_gone(),
            }
        } else if waiting == 0 {
            host_gone();
        }
    }
}

/// The host went away or broke the protocol: nothing here is worth keeping.
fn host_gone() -> ! {
    std::process::exit(0)
}

/// Options of the worker, from its command line.
pub(crate) struct Options {
    pub(crate) warm: usize,
    pub(crate) hooks: bool,
}

/// Serves runs until the host closes the socket. Called on the worker's sandbox thread, after
/// the seal.
pub(crate) fn serve(sock: UnixStream, options: &Options, first: Option<Sandbox>) {
    let channel = Rc::new(Channel {
        sock,
        cancelled: Arc::new(AtomicBool::new(false)),
        redact: Cell::new(false),
        stream: Cell::new(false),
        polled: Cell::new(Instant::now()),
    });
    let cache = Arc::new(ScriptCache::default());
    let mut names: Arc<Vec<(String, Vec<String>)>> = Arc::default();
    let mut ready: Vec<Sandbox> = Vec::new();
    if let Some(sandbox) = first {
        if options.hooks {
            sandbox.install_test_hooks();
        }
        ready.push(sandbox);
    }
    // Sandboxes the host may come back to (a session's, a paused run's), and whether they
    // belong to a session.
    let mut kept: HashMap<u64, (Sandbox, bool)> = HashMap::new();
    let fresh = |hooks: bool| -> Result<Sandbox, ExecError> {
        let sandbox = Sandbox::new()?;
        if hooks {
            sandbox.install_test_hooks();
        }
        Ok(sandbox)
    };
    loop {
        if ready.len() < options.warm && !readable(&channel.sock) {
            if let Ok(sandbox) = fresh(options.hooks) {
                ready.push(sandbox);
                continue;
            }
        }
        let message = match wire::read::<ToWorker>(&channel.sock) {
            Ok((message, _)) => message,
            Err(_) => return,
        };
        let (id, session, sandbox, step) = match message {
            ToWorker::Run(spec) => {
                let RunSpec {
                    sandbox: id,
                    code,
                    compiled,
                    limits,
                    deadline_in,
                    session,
                    names: sent,
                    redact,
                    stream,
                } = *spec;
                if let Some(sent) = sent {
                    names = Arc::new(sent);
                }
                channel.redact.set(redact);
                channel.stream.set(stream);
                let sandbox = match kept.remove(&id) {
                    Some((sandbox, _)) => Ok(sandbox),
                    None => ready.pop().map_or_else(|| fresh(options.hooks), Ok),
                };
                let now = Instant::now();
                let start = Start {
                    code: Arc::from(code),
                    compiled,
                    limits,
                    link: Link::Remote(Rc::clone(&channel)),
                    cache: Arc::clone(&cache),
                    clock: Clock::new(now, Duration::ZERO, now + deadline_in),
                    session,
                    names: Names::List(Arc::clone(&names)),
                };
                (id, session.is_some(), sandbox, Some(start))
            }
            ToWorker::Resume { sandbox: id } => match kept.remove(&id) {
                Some((sandbox, session)) => (id, session, Ok(sandbox), None),
                None => {
                    let gone =
                        ExecError::new(ErrorKind::Internal, "the paused execution is gone from its worker");
                    (id, false, Err(gone), None)
                }
            },
            ToWorker::Drop { sandbox } => {
                kept.remove(&sandbox);
                continue;
            }
            // Meant for a run that has ended.
            ToWorker::Cancel => continue,
            _ => return,
        };
        channel.cancelled.store(false, Ordering::Relaxed);
        let mut sandbox = match sandbox {
            Ok(sandbox) => sandbox,
            Err(e) => {
                channel.send(&FromWorker::Done(Box::new(finished(Outcome::failed(e), false))));
                continue;
            }
        };
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match step {
            Some(start) => sandbox.start(start),
            None => sandbox.resume(true, None),
        }));
        let (outcome, sound) = match ran {
            Ok(outcome) => (outcome, true),
            Err(_) => (Outcome::failed(crate::engine::sandbox_bug()), false),
        };
        // The host's bridge knows which call it waits on; here, only that it waits.
        let paused = sound && sandbox.is_paused();
        let keep = sound && (paused || (session && !crate::engine::resets_session(&outcome)));
        channel.send(&FromWorker::Done(Box::new(finished(outcome, paused))));
        if keep {
            kept.insert(id, (sandbox, session));
        }
    }
}

fn finished(outcome: Outcome, paused: bool) -> Finished {
    Finished {
        value: outcome.value,
        logs: outcome.logs,
        error: outcome.error,
        hint: outcome.hint,
        returned_bytes: outcome.stats.returned_bytes,
        result_truncated: outcome.stats.result_truncated,
        logs_truncated: outcome.stats.logs_truncated,
        paused,
    }
}

/// Whether a frame is waiting (so the worker serves it before warming another sandbox).
fn readable(sock: &UnixStream) -> bool {
    let mut poll =
        libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(sock), events: libc::POLLIN, revents: 0 };
    unsafe { libc::poll(&mut poll, 1, 0) > 0 }
}

/// The worker's end of the socket, where the host put it.
pub(crate) fn socket() -> UnixStream {
    unsafe { UnixStream::from_raw_fd(SOCKET_FD) }
}
