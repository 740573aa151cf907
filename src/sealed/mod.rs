//! Sandboxes in sealed worker processes ([`Isolation::Process`](crate::Isolation::Process)).
//!
//! Each sandbox thread of the engine has one worker: a child process running this same
//! binary, which seals itself before it runs anything (resource limits, new user, network and
//! mount namespaces where the kernel allows, Landlock with no filesystem or network access,
//! `no_new_privs`, and a seccomp-bpf allow-list whose every other system call kills it). The
//! worker holds QuickJS sandboxes and nothing else: tools, secrets and upstream connections stay
//! in the host, and the bridge with them. The sandbox asks the host for everything over a
//! socket pair (`Link` in the sandbox, the frames of `wire`); the host's sandbox thread answers
//! from the execution's bridge, so validation, approvals, privacy and the caps are the same
//! code whatever the isolation.
//!
//! A worker that dies (a crash, a forbidden system call, a program that will not stop) ends
//! only the execution it was running (`internal`, with the signal), the sessions it held lose
//! their sandboxes, and the next execution on that thread starts a new worker.

pub(crate) mod child;
mod seal;
pub(crate) mod v8;

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::bridge::{Bridge, Next, Settlement, Target};
use crate::error::{ErrorKind, ExecError};
use crate::limits::Limits;
use crate::outcome::{Outcome, Stats};
use crate::registry::Registry;
use crate::sandbox::wire::{
    self, Finished, FromWorker, RunSpec, ToWorker, WireFailure, WireNext, WireTarget,
};
use crate::sandbox::{abort_error, from_bridge, reference_note, Clock, RunJob};

/// The first argument that makes the binary a worker ([`serve_if_worker`]).
pub const WORKER_FLAG: &str = "--codemode-sandbox-worker";

/// How long a new worker may take to seal itself and say so.
const HELLO_WAIT: Duration = Duration::from_secs(10);

/// How long past its deadline a program's worker may take to stop before it is killed.
const GRACE: Duration = Duration::from_secs(1);

/// How often the host looks at a running execution's cancel flag.
const TICK: Duration = Duration::from_millis(10);

pub use crate::sandbox::wire::SealReport;

/// Runs the worker and exits, when the process was started as one (its first argument is
/// [`WORKER_FLAG`]); returns at once otherwise. A binary that builds an engine with
/// [`Isolation::Process`](crate::Isolation::Process) calls this first thing in `main`, before
/// it starts threads: the engine starts workers by running the binary again
/// ([`EngineBuilder::worker_program`](crate::EngineBuilder::worker_program)).
pub fn serve_if_worker() {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_none_or(|flag| flag != WORKER_FLAG) {
        return;
    }
    let (mut hooks, mut warm) = (false, 0);
    for arg in args {
        hooks |= arg == "--test-hooks";
        if let Some(n) = arg.to_str().and_then(|a| a.strip_prefix("--warm=")) {
            warm = n.parse().unwrap_or(0);
        }
    }
    let sock = child::socket();
    // One malloc arena for every thread: glibc reads /proc/sys/vm/overcommit_memory the first
    // time it shrinks a thread's own arena, which the seal would turn into a kill.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let mut report = seal::prepare();
    // The sandbox thread, with the stack the engine's sandbox threads have; sealed from its
    // first instruction on, with the main thread (waiting on it) sealed too.
    let worker =
        std::thread::Builder::new().stack_size(crate::sandbox::THREAD_STACK_BYTES).spawn(move || {
            let stock = child::Stock::start(hooks, warm);
            if let Err(message) = seal::seccomp() {
                let _ = wire::write(&sock, &FromWorker::Failed { message }, &[]);
                return;
            }
            report.seccomp = true;
            if wire::write(&sock, &FromWorker::Hello { seal: report }, &[]).is_ok() {
                child::serve(sock, &stock);
            }
        });
    let code = match worker.map(|w| w.join()) {
        Ok(Ok(())) => 0,
        _ => 1,
    };
    std::process::exit(code)
}

/// How a sandbox thread starts its worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCommand {
    /// This binary (a sealed QuickJS worker), or Node.js (the V8 host).
    pub(crate) program: PathBuf,
    pub(crate) hooks: bool,
    /// Sandboxes the worker keeps built for the next runs (the engine's warm pool, where the
    /// sandboxes are; the V8 host keeps one when this is above 0).
    pub(crate) warm: usize,
    /// The worker is the V8 host (`js/v8/host.js` run by `program`), not a QuickJS one.
    pub(crate) v8: bool,
}

/// A running worker.
pub(crate) struct Worker {
    process: std::process::Child,
    sock: UnixStream,
    /// Where the V8 host's main thread hears of the run it must stop (`Stop`), while an
    /// isolate reads everything else from `sock` itself. A QuickJS worker has one
    /// socket for everything.
    control: Option<UnixStream>,
    reader: wire::Reader,
    /// The registry whose names the worker has, so they are sent only when they change.
    names: Weak<Registry>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl WorkerCommand {
    /// Starts a worker and waits until it has sealed itself (the engine's builder starts the
    /// first this way, so a worker that cannot seal itself fails the build).
    pub(crate) fn start(&self) -> Result<(Worker, SealReport), String> {
        if self.v8 {
            return v8::start(self);
        }
        let (sock, theirs) = UnixStream::pair().map_err(|e| format!("could not make a socket pair: {e}"))?;
        let fd = theirs.as_raw_fd();
        let mut command = Command::new(&self.program);
        command.arg(WORKER_FLAG);
        if self.hooks {
            command.arg("--test-hooks");
        }
        if self.warm > 0 {
            command.arg(format!("--warm={}", self.warm));
        }
        // Nothing of the host's environment (its secrets among it) reaches the worker.
        command.env_clear().stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls run between fork and exec.
        unsafe { command.pre_exec(move || sockets_to_child(&[fd])) };
        let process = command
            .spawn()
            .map_err(|e| format!("could not start the worker {}: {e}", self.program.display()))?;
        drop(theirs);
        let mut worker =
            Worker { process, sock, control: None, reader: wire::Reader::default(), names: Weak::new() };
        let _ = worker.sock.set_read_timeout(Some(HELLO_WAIT));
        let hello = worker.reader.read::<FromWorker>(&worker.sock);
        let _ = worker.sock.set_read_timeout(None);
        match hello {
            Ok((FromWorker::Hello { seal }, _)) => Ok((worker, seal)),
            Ok((FromWorker::Failed { message }, _)) => {
                Err(format!("the worker could not seal itself: {message}"))
            }
            Ok(_) => Err("the worker said something else than hello".into()),
            Err(e) => {
                let status = ended(&mut worker.process);
                Err(format!(
                    "the worker {} did not start ({e}; {status}); a binary that runs sandboxes in sealed \
                     processes calls codemode::sealed::serve_if_worker() first thing in main",
                    self.program.display()
                ))
            }
        }
    }
}

/// Between fork and exec: the child's ends of its socket pairs become descriptors
/// [`child::SOCKET_FD`], [`child::SOCKET_FD`] + 1, …, kept open across exec
/// (async-signal-safe calls only).
fn sockets_to_child(fds: &[i32]) -> io::Result<()> {
    const MAX: usize = 2;
    // (No assertion: nothing may panic between fork and exec. The callers pass one or two.)
    let fds = &fds[..fds.len().min(MAX)];
    // Copied above the targets first: one end's number may be another's target.
    let mut high = [0; MAX];
    for (i, fd) in fds.iter().enumerate() {
        high[i] = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, child::SOCKET_FD + MAX as i32) };
        if high[i] < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for (i, fd) in high[..fds.len()].iter().enumerate() {
        // dup2 leaves the copy open across exec.
        if unsafe { libc::dup2(*fd, child::SOCKET_FD + i as i32) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How a process ended, once it has (waiting briefly for it).
fn ended(process: &mut std::process::Child) -> String {
    for _ in 0..100 {
        match process.try_wait() {
            Ok(Some(status)) => return describe(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return format!("its status is unknown: {e}"),
        }
    }
    let _ = process.kill();
    process.wait().map_or_else(|e| format!("its status is unknown: {e}"), describe)
}

fn describe(status: std::process::ExitStatus) -> String {
    match status.signal() {
        Some(signal) => format!("killed by signal {signal} ({})", signal_name(signal)),
        None => format!("exited with status {}", status.code().unwrap_or(-1)),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSYS => "SIGSYS: a system call outside its seccomp allow-list",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        _ => "another signal",
    }
}

/// A sandbox thread's worker: started when the thread starts, and again after one dies.
pub(crate) struct Host {
    command: WorkerCommand,
    worker: Option<Worker>,
    /// Counts workers started, so a sandbox kept in a dead one is known to be gone.
    generation: u64,
    next_sandbox: u64,
}

impl Host {
    pub(crate) fn new(command: WorkerCommand, first: Option<(Worker, SealReport)>) -> Rc<RefCell<Host>> {
        let generation = u64::from(first.is_some());
        Rc::new(RefCell::new(Host { command, worker: first.map(|(w, _)| w), generation, next_sandbox: 0 }))
    }

    /// Starts the worker if there is none.
    pub(crate) fn ensure(&mut self) -> Result<(), ExecError> {
        if self.worker.is_none() {
            let (worker, _) = self.command.start().map_err(|why| ExecError::new(ErrorKind::Internal, why))?;
            self.worker = Some(worker);
            self.generation += 1;
        }
        Ok(())
    }
}

/// A sandbox in a worker, as the host's sandbox thread holds it.
pub(crate) struct Sandbox {
    host: Rc<RefCell<Host>>,
    id: u64,
    /// The worker it lives in, once built or run.
    generation: Option<u64>,
    /// It has run a program (so it may hold a session's state).
    ran: bool,
    /// The worker keeps it (a session's, or a paused run's), until told to drop it.
    kept: bool,
    paused: Option<Paused>,
    /// The V8 host's run: the JavaScript it was sent, to map its errors back to the agent's
    /// positions.
    script: Option<(Arc<crate::sandbox::Script>, Arc<str>)>,
}

/// A run paused for approval: the host keeps its bridge.
struct Paused {
    bridge: Bridge,
    limits: Limits,
    clock: Clock,
}

/// Why serving a run ended without its outcome.
enum Lost {
    /// The worker died, or broke the protocol (then it was killed).
    Died(String),
    /// The program did not stop by its deadline and its worker was killed.
    Stuck,
}

impl Sandbox {
    pub(crate) fn new(host: &Rc<RefCell<Host>>) -> Sandbox {
        let id = {
            let mut host = host.borrow_mut();
            host.next_sandbox += 1;
            host.next_sandbox
        };
        Sandbox {
            host: Rc::clone(host),
            id,
            generation: None,
            ran: false,
            kept: false,
            paused: None,
            script: None,
        }
    }

    pub(crate) fn run(&mut self, job: RunJob) -> Outcome {
        let clock = job.clock();
        let RunJob { code, compiled, limits, bridge, session, cache, .. } = job;
        let mut host = self.host.borrow_mut();
        // V8 runs the JavaScript the host made, and the host maps its errors back.
        let (compiled, script) = if host.command.v8 {
            match crate::sandbox::compiled(&code, compiled, &cache, session.is_some()) {
                Ok(script) => (Some(script.compiled.clone()), Some((script, Arc::clone(&code)))),
                Err(e) => return Outcome::failed(e),
            }
        } else {
            (compiled, None)
        };
        self.script = script;
        if let Err(e) = host.ensure() {
            return Outcome::failed(e);
        }
        if self.generation.is_some_and(|g| g != host.generation) {
            if self.ran {
                return Outcome::failed(ExecError::new(
                    ErrorKind::Internal,
                    "the worker process that held this session's sandbox ended, and its state with it",
                ));
            }
            // Built in a worker that has died since: the new one builds it as it runs.
            self.kept = false;
        }
        self.generation = Some(host.generation);
        let worker = host.worker.as_mut().expect("a worker was started");
        let registry = bridge.registry();
        let names = match worker.names.upgrade() {
            Some(sent) if Arc::ptr_eq(&sent, registry) => None,
            _ => {
                worker.names = Arc::downgrade(registry);
                Some(
                    registry
                        .namespaces()
                        .map(|(js, ns)| (js.to_string(), ns.tools.keys().cloned().collect()))
                        .collect(),
                )
            }
        };
        let spec = RunSpec {
            sandbox: self.id,
            code: code.to_string(),
            compiled,
            limits: limits.clone(),
            deadline_in: clock.deadline.saturating_duration_since(Instant::now()),
            session,
            names,
            redact: bridge.redacts(),
            stream: bridge.streams(),
            ran: self.ran,
        };
        let sent = wire::write(&worker.sock, &ToWorker::Run(Box::new(spec)), &[]);
        drop(host);
        self.ran = true;
        if sent.is_err() {
            return self.lost(Lost::Died(String::new()), &limits);
        }
        self.kept = session.is_some();
        self.serve(bridge, limits, clock)
    }

    pub(crate) fn resume(&mut self, approve: bool, reason: Option<&str>) -> Outcome {
        let Some(Paused { mut bridge, limits, mut clock }) = self.paused.take() else {
            return Outcome::failed(ExecError::new(
                ErrorKind::Internal,
                "no execution is paused in this sandbox",
            ));
        };
        bridge.decide(approve, reason);
        clock.resume();
        let sent = {
            let host = self.host.borrow();
            match host.worker.as_ref().filter(|_| self.generation == Some(host.generation)) {
                Some(worker) => {
                    let deadline_in = clock.deadline.saturating_duration_since(Instant::now());
                    let resume = ToWorker::Resume { sandbox: self.id, deadline_in };
                    wire::write(&worker.sock, &resume, &[]).is_ok()
                }
                None => false,
            }
        };
        if !sent {
            return self.lost(Lost::Died(String::new()), &limits);
        }
        self.serve(bridge, limits, clock)
    }

    /// Answers the worker's questions from the bridge until the run ends or pauses.
    fn serve(&mut self, mut bridge: Bridge, limits: Limits, mut clock: Clock) -> Outcome {
        let finished = {
            let mut host = self.host.borrow_mut();
            let worker = host.worker.as_mut().expect("a worker serves this run");
            answer(worker, &mut bridge, &clock, &limits, self.script.is_some())
        };
        let finished = match finished {
            Ok(finished) => finished,
            Err(lost) => return self.lost(lost, &limits),
        };
        let Finished {
            value,
            logs,
            mut error,
            mut hint,
            returned_bytes,
            result_truncated,
            logs_truncated,
            paused,
            nothing,
        } = finished;
        if let Some((script, code)) = &self.script {
            if let Some(e) = error.as_mut() {
                crate::sandbox::map_error(e, &script.compiled);
            } else if nothing {
                hint = script.hint(code);
            }
        }
        let stats = Stats {
            duration: clock.started.elapsed(),
            queued: clock.waited,
            returned_bytes,
            result_truncated,
            logs_truncated,
            ..Stats::default()
        };
        let mut outcome = Outcome { value, logs, error, stats, hint, ..Outcome::empty() };
        from_bridge(&mut outcome, &mut bridge, &limits, paused);
        if paused {
            clock.pause();
            self.kept = true;
            self.paused = Some(Paused { bridge, limits, clock });
        }
        outcome
    }

    /// The outcome of a run whose worker is gone; the next run starts a new worker.
    fn lost(&mut self, lost: Lost, limits: &Limits) -> Outcome {
        let mut host = self.host.borrow_mut();
        let status = host.worker.take().map(|mut w| ended(&mut w.process)).unwrap_or_default();
        self.kept = false;
        Outcome::failed(match lost {
            Lost::Died(why) => ExecError::new(
                ErrorKind::Internal,
                format!(
                    "the sandbox's worker process ended during the execution ({status}{why}); the host is \
                     unaffected and the next execution gets a new worker"
                ),
            ),
            Lost::Stuck => {
                let mut e = abort_error(ErrorKind::Timeout, limits);
                e.message.push_str(" (the program did not stop, so its worker process was killed)");
                e
            }
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.kept {
            return;
        }
        if let Ok(host) = self.host.try_borrow() {
            if let Some(worker) = host.worker.as_ref().filter(|_| self.generation == Some(host.generation)) {
                let _ = wire::write(&worker.sock, &ToWorker::Drop { sandbox: self.id }, &[]);
            }
        }
    }
}

/// Serves one run: each question of the worker answered from `bridge`, a cancellation passed
/// on, and a worker past its deadline (plus [`GRACE`]) killed.
fn answer(
    worker: &mut Worker,
    bridge: &mut Bridge,
    clock: &Clock,
    limits: &Limits,
    check_json: bool,
) -> Result<Finished, Lost> {
    let Worker { sock, control, reader, .. } = worker;
    let cancel = bridge.cancel_flag();
    let mut cancel_sent = false;
    // Only the V8 host has a control socket. Its main thread learns of a cancellation or of
    // the deadline from it, and is told again at each tick while the program says nothing: a
    // run it had not yet seen start when first told is stopped too.
    let v8 = control.is_some();
    let (sock, control) = (&*sock, control.as_ref().unwrap_or(sock));
    let died = |e: io::Error| Lost::Died(format!("; {e}"));
    // The first frame of a run waits on the program itself (all of it, when it calls nothing)
    // and the host sleeps for it: a look would take a core from the worker that is building
    // its next sandbox meanwhile, which on two cores slowed back-to-back runs by a quarter. Every
    // later frame follows one the host just read or answered, within microseconds.
    let mut look = Duration::ZERO;
    loop {
        // Past the look, sleep in ticks: a cancellation is passed on, a worker past its
        // deadline is told (V8) and then killed.
        let mut here = reader.spin(sock, look).map_err(died)?;
        look = wire::SPIN;
        while !here {
            let now = Instant::now();
            let hard = clock.deadline + GRACE;
            if now >= hard {
                return Err(Lost::Stuck);
            }
            if v8 && now >= clock.deadline {
                wire::write(control, &ToWorker::Stop { timeout: true, sent: monotonic_ns() }, &[])
                    .map_err(died)?;
            }
            let until = if v8 && now < clock.deadline { clock.deadline } else { hard };
            let wait = if cancel_sent && !v8 { until - now } else { TICK.min(until - now) };
            here = readable(sock, wait);
            if !here && (!cancel_sent || v8) && cancel.load(Ordering::Relaxed) {
                let stop = if v8 {
                    ToWorker::Stop { timeout: false, sent: monotonic_ns() }
                } else {
                    ToWorker::Cancel
                };
                wire::write(control, &stop, &[]).map_err(died)?;
                cancel_sent = true;
            }
        }
        let (question, _) = reader.read::<FromWorker>(sock).map_err(died)?;
        let (answer, body): (ToWorker, Vec<u8>) = match question {
            FromWorker::Done(finished) => return Ok(*finished),
            FromWorker::Stopped { kind, logs, message, logs_truncated, lost } => {
                let mut error = match message {
                    Some(message) => ExecError::new(kind, message),
                    None => abort_error(kind, limits),
                };
                if lost {
                    error.message.push_str(crate::sandbox::SANDBOX_LOST);
                }
                let returned_bytes = logs.iter().map(|l| l.message.len() as u64).sum();
                return Ok(Finished {
                    value: serde_json::Value::Null,
                    logs,
                    error: Some(error),
                    hint: None,
                    returned_bytes,
                    result_truncated: false,
                    logs_truncated,
                    paused: false,
                    nothing: false,
                });
            }
            FromWorker::Call { id, target, args } => {
                let target = match &target {
                    WireTarget::Tool(index) => Target::Tool(*index),
                    WireTarget::Builtin(name) => Target::Builtin(name.as_str()),
                };
                // Past the limit the worker has stopped the program already.
                let numbered = bridge.call(target, args).unwrap_or(id);
                if numbered != id {
                    return Err(Lost::Died("; it numbered a call out of turn".into()));
                }
                continue;
            }
            FromWorker::Timer { id, delay } => {
                if bridge.timer(delay) != id {
                    return Err(Lost::Died("; it numbered a timer out of turn".into()));
                }
                continue;
            }
            FromWorker::ClearTimer { id } => {
                bridge.clear_timer(id);
                continue;
            }
            FromWorker::Log { line } => {
                bridge.emit_log(&line);
                continue;
            }
            FromWorker::Next => {
                let mut next = bridge.next(clock.deadline);
                // V8 reads a result with JSON.parse, whose message would not say where a
                // handler's text went wrong: it is checked here, as QuickJS's reader does.
                if check_json {
                    if let Next::Settle(_, settlement @ Settlement::Value { .. }) = &mut next {
                        let Settlement::Value { json, tool } = &*settlement else { unreachable!() };
                        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(json) {
                            *settlement = Settlement::Error(crate::sandbox::invalid_json(tool, Some(e)));
                        }
                    }
                }
                wire_next(next)
            }
            FromWorker::Redact { text } => (ToWorker::Text { text: Some(bridge.redact(text)) }, Vec::new()),
            FromWorker::UnknownTool { namespace, name } => {
                let text = crate::suggest::unknown_tool(bridge.registry(), &namespace, &name);
                (ToWorker::Text { text: Some(text) }, Vec::new())
            }
            FromWorker::Skill { name } => {
                let js = bridge.registry().skill(&name).map(|s| s.js.to_string());
                (ToWorker::Text { text: js }, Vec::new())
            }
            FromWorker::Note { undefined } => {
                (ToWorker::Text { text: reference_note(bridge.registry(), &undefined) }, Vec::new())
            }
            FromWorker::Hello { .. } | FromWorker::Failed { .. } => {
                return Err(Lost::Died("; it broke the protocol".into()));
            }
        };
        wire::write(sock, &answer, &body).map_err(died)?;
    }
}

/// The monotonic clock in nanoseconds, as Node's `process.hrtime.bigint()` reads it.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn wire_next(next: Next) -> (ToWorker, Vec<u8>) {
    let (next, body) = match next {
        Next::Settle(id, Settlement::Value { json, tool }) => {
            (WireNext::Value { id, tool: tool.to_string() }, json.as_bytes().to_vec())
        }
        Next::Settle(id, Settlement::Error(failure)) => (
            WireNext::Error {
                id,
                failure: WireFailure {
                    type_error: failure.name == "TypeError",
                    message: failure.message,
                    tool: failure.tool,
                    code: failure.code,
                    path: failure.path,
                },
            },
            Vec::new(),
        ),
        Next::Settle(id, Settlement::Timer) => (WireNext::Timer { id }, Vec::new()),
        Next::Log(line) => (WireNext::Log { line }, Vec::new()),
        Next::Idle => (WireNext::Idle, Vec::new()),
        Next::Paused => (WireNext::Paused, Vec::new()),
        Next::TimedOut => (WireNext::TimedOut, Vec::new()),
        Next::Cancelled => (WireNext::Cancelled, Vec::new()),
    };
    (ToWorker::Next { next }, body)
}

/// Waits up to `wait` for the worker to say something (or hang up).
fn readable(sock: &UnixStream, wait: Duration) -> bool {
    let mut poll = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    loop {
        let n = unsafe { libc::poll(&mut poll, 1, ms) };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return n > 0;
        }
    }
}
