//! The worker's side: a sealed process that runs programs in QuickJS sandboxes and reaches its
//! host only through its socket.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, ExecError};
use crate::outcome::Outcome;
use crate::sandbox::remote::{Channel, Remote};
use crate::sandbox::wire::{Finished, FromWorker, RunSpec, ToWorker};
use crate::sandbox::{resets_session, sandbox_bug, Clock, Link, Names, Sandbox, ScriptCache, Start};

/// The descriptor the host hands the worker its end of the socket on.
pub(crate) const SOCKET_FD: i32 = 3;

/// Serves runs until the host closes the socket. Called on the worker's sandbox thread, after
/// the seal.
pub(crate) fn serve(sock: UnixStream, stock: &Stock) {
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
    // Sandboxes kept between runs by the host's id (a session's, a paused run's), and whether
    // they belong to a session.
    let mut kept: HashMap<u64, (Sandbox, bool)> = HashMap::new();
    loop {
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
                    None => stock.take(),
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
        } else if sound {
            stock.discard(sandbox);
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

/// Used sandboxes waiting for the builder to free them; past this many the serving thread
/// frees its own (a builder starved by a busy machine must not hoard memory).
const USED: usize = 2;

/// The worker's sandboxes for fresh runs. A warm worker has a thread of its own, the builder,
/// that builds them ahead and frees the used ones at idle priority (`SCHED_IDLE`): the half
/// millisecond of QuickJS work each fresh run costs (making a runtime and a context, loading
/// the prelude, and freeing them all after) runs only on a core nothing else wants, and a
/// run, a host thread or a caller woken meanwhile takes the core at once. Done on the serving
/// thread after each outcome, that work competed at equal priority with the next runs of the
/// other workers on the same cores: back to back, the median execution took two to three
/// times as long. Without a builder (a cold worker, or one whose builder has failed) the serving
/// thread builds each run's sandbox as it starts and frees it after the outcome.
pub(crate) struct Stock {
    shelf: Mutex<Shelf>,
    /// The sandboxes get the test hooks.
    hooks: bool,
    /// Ready sandboxes the builder keeps: the engine's warm count.
    warm: usize,
    /// Wakes the builder: a sandbox was taken, or one was left to free.
    wake: Condvar,
    builder: AtomicBool,
}

#[derive(Default)]
struct Shelf {
    ready: Vec<Moved>,
    used: Vec<Moved>,
}

/// A sandbox handed between the serving thread and the builder.
struct Moved(Sandbox);

// SAFETY: a sandbox's runtime, context and reference-counted state are reached only through
// the sandbox, so moving it moves all of them. A newly built one has never met the worker's
// channel; a used one has let go of it (`Sandbox::detach`) before it moves. One thread holds
// it at a time, handed over under the shelf's lock, and the one receiving it re-measures its
// stack limit (`Sandbox::adopt`) before it runs or frees anything in it.
unsafe impl Send for Moved {}

impl Stock {
    /// Called on the serving thread before the seal: the first sandbox is built here, and a
    /// warm worker's builder builds its own first before this returns. The allocator probes
    /// the machine (NUMA nodes under /sys) the first time it maps memory, and sets up each
    /// thread's heap on its first allocation, which the seal could refuse afterwards.
    pub(crate) fn start(hooks: bool, warm: usize) -> Arc<Stock> {
        let first = fresh(hooks).ok();
        let stock = Arc::new(Stock {
            shelf: Mutex::new(Shelf { ready: first.map(Moved).into_iter().collect(), used: Vec::new() }),
            hooks,
            warm,
            wake: Condvar::new(),
            builder: AtomicBool::new(warm > 0),
        });
        if warm > 0 {
            let (started, ready) = mpsc::channel();
            let shared = Arc::clone(&stock);
            let spawned = std::thread::Builder::new().name("codemode-builder".into()).spawn(move || {
                build(&shared, started);
                shared.builder.store(false, Ordering::Relaxed);
            });
            match spawned {
                Ok(_) => drop(ready.recv()),
                Err(_) => stock.builder.store(false, Ordering::Relaxed),
            }
        }
        stock
    }

    fn shelf(&self) -> MutexGuard<'_, Shelf> {
        self.shelf.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A sandbox for a fresh run: a ready one, or one built now.
    fn take(&self) -> Result<Sandbox, ExecError> {
        let Some(Moved(sandbox)) = self.shelf().ready.pop() else { return fresh(self.hooks) };
        self.wake.notify_one();
        sandbox.adopt();
        Ok(sandbox)
    }

    /// Frees a sandbox whose run has ended: the builder does, when there is one and it keeps
    /// up; otherwise this thread, after a nap (see `wire::NAP`).
    fn discard(&self, mut sandbox: Sandbox) {
        if self.builder.load(Ordering::Relaxed) && sandbox.detach() {
            let mut shelf = self.shelf();
            if shelf.used.len() < USED {
                shelf.used.push(Moved(sandbox));
                drop(shelf);
                self.wake.notify_one();
                return;
            }
        }
        std::thread::sleep(crate::sandbox::wire::NAP);
        drop(sandbox);
    }
}

/// The builder: keeps the warm count of sandboxes built and frees the used ones, at idle
/// priority.
fn build(stock: &Stock, started: mpsc::Sender<()>) {
    let idle = libc::sched_param { sched_priority: 0 };
    // SAFETY: sets the calling thread's own policy; SCHED_IDLE takes priority 0 and needs no
    // privilege. Refused, the builder runs at normal priority, as the serving thread would.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) };
    let make = || fresh(stock.hooks).ok().map(Moved);
    let Some(first) = make() else { return };
    stock.shelf().ready.push(first);
    drop(started);
    loop {
        let (used, short) = {
            let mut shelf = stock.shelf();
            while shelf.ready.len() >= stock.warm && shelf.used.is_empty() {
                shelf = stock.wake.wait(shelf).unwrap_or_else(PoisonError::into_inner);
            }
            (std::mem::take(&mut shelf.used), shelf.ready.len() < stock.warm)
        };
        for Moved(sandbox) in used {
            sandbox.adopt();
            drop(sandbox);
        }
        if short {
            let Some(sandbox) = make() else { return };
            stock.shelf().ready.push(sandbox);
        }
    }
}

/// A sandbox built now, with the test hooks when the worker was started with them.
fn fresh(hooks: bool) -> Result<Sandbox, ExecError> {
    let sandbox = Sandbox::new()?;
    if hooks {
        sandbox.install_test_hooks();
    }
    Ok(sandbox)
}
