//! The worker's side: a sealed process that runs programs in QuickJS sandboxes and reaches its
//! host only through its socket.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, ExecError};
use crate::outcome::Outcome;
use crate::sandbox::remote::{Channel, Remote};
use crate::sandbox::wire::{Finished, FromWorker, RunSpec, ToWorker};
use crate::sandbox::{resets_session, sandbox_bug, Clock, Link, Names, Sandbox, ScriptCache, Start};

/// The descriptor the host hands the worker its end of the socket on.
pub(crate) const SOCKET_FD: i32 = 3;

/// Options of the worker, from its command line.
pub(crate) struct Options {
    pub(crate) hooks: bool,
    /// Keep a sandbox built for the next run.
    pub(crate) warm: bool,
}

/// Serves runs until the host closes the socket. Called on the worker's sandbox thread, after
/// the seal.
pub(crate) fn serve(sock: UnixStream, options: &Options, first: Option<Sandbox>) {
    let channel = Rc::new(Channel {
        sock,
        reader: RefCell::default(),
        cancelled: Arc::new(AtomicBool::new(false)),
        redact: Cell::new(false),
        stream: Cell::new(false),
        polled: Cell::new(Instant::now()),
    });
    let cache = Arc::new(ScriptCache::default());
    let mut names: Arc<Vec<(String, Vec<String>)>> = Arc::default();
    let fresh = |hooks: bool| -> Result<Sandbox, ExecError> {
        let sandbox = Sandbox::new()?;
        if hooks {
            sandbox.install_test_hooks();
        }
        Ok(sandbox)
    };
    // The sandbox for the next fresh run: the one built before the seal, then one built as
    // soon as a run ends, while the host reads its outcome and replies (asked for by a frame
    // instead, it would cost the host's thread a round trip, and a run arriving meanwhile
    // would wait behind it all the same).
    let mut ready: Option<Sandbox> = first.inspect(|sandbox| {
        if options.hooks {
            sandbox.install_test_hooks();
        }
    });
    // Sandboxes kept between runs by the host's id (a session's, a paused run's), and whether
    // they belong to a session.
    let mut kept: HashMap<u64, (Sandbox, bool)> = HashMap::new();
    loop {
        if options.warm && ready.is_none() {
            ready = fresh(options.hooks).ok();
        }
        let message = match channel.reader.borrow_mut().read::<ToWorker>(&channel.sock) {
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
                    ..
                } = *spec;
                if let Some(sent) = sent {
                    names = Arc::new(sent);
                }
                channel.redact.set(redact);
                channel.stream.set(stream);
                let sandbox = match kept.remove(&id) {
                    Some((sandbox, _)) => Ok(sandbox),
                    None => ready.take().map_or_else(|| fresh(options.hooks), Ok),
                };
                let now = Instant::now();
                let max_calls = limits.max_tool_calls;
                let start = Start {
                    code: Arc::from(code),
                    compiled,
                    limits,
                    link: Link::Remote(Remote::new(Rc::clone(&channel), max_calls)),
                    cache: Arc::clone(&cache),
                    clock: Clock::new(now, Duration::ZERO, now + deadline_in),
                    session,
                    names: Names::List(Arc::clone(&names)),
                };
                (id, session.is_some(), sandbox, Some(start))
            }
            ToWorker::Resume { sandbox: id, .. } => match kept.remove(&id) {
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
            ToWorker::Cancel | ToWorker::Stop { .. } => continue,
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
            Err(_) => (Outcome::failed(sandbox_bug()), false),
        };
        // The host's bridge knows which call it waits on; here, only that it waits.
        let paused = sound && sandbox.is_paused();
        let keep = sound && (paused || (session && !resets_session(&outcome)));
        channel.send(&FromWorker::Done(Box::new(finished(outcome, paused))));
        if keep {
            kept.insert(id, (sandbox, session));
        } else {
            // Freeing it and building the next follow at once.
            std::thread::sleep(crate::sandbox::wire::NAP);
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
        nothing: false,
    }
}

/// The worker's end of the socket, where the host put it.
pub(crate) fn socket() -> UnixStream {
    unsafe { UnixStream::from_raw_fd(SOCKET_FD) }
}
