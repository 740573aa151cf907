//! The engine: a registry, default limits and a pool of sandbox threads, built once and shared.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::bridge::{Bridge, CancelHandle};
use crate::error::{ErrorKind, ExecError};
use crate::limits::Limits;
use crate::outcome::CheckStatus;
use crate::outcome::{Outcome, SessionInfo};
use crate::privacy::Privacy;
use crate::registry::Registry;
use crate::sandbox::{resets_session, sandbox_bug, RunJob, Sandbox, ScriptCache, THREAD_STACK_BYTES};
use crate::session::{self, SessionFile, SessionLimits, SessionState, Sessions};
use crate::skills::{Skill, SkillError, SkillStore};
use crate::transpile;
use crate::typecheck::{Diagnostic, TypeCheck, TypeChecker};

/// The longest one type check may take, whatever the deadline: past it the checker is
/// replaced and the check fails.
const MAX_CHECK_TIME: Duration = Duration::from_secs(10);

/// The largest engine stack limit accepted; larger requests are clamped.
const MAX_ENGINE_STACK_BYTES: usize = 16 << 20;

/// How often an idle sandbox thread ends the sessions idle past their timeout (and the
/// executions paused past the approval timeout).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How long a paused execution waits for a decision by default.
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Approvals that expired, remembered so a late answer hears why, not "unknown".
const REMEMBERED_EXPIRIES: usize = 1024;

/// Runs agent programs. Build it once with [`Engine::builder`]; cloning is cheap (an `Arc`),
/// and every clone shares the same registry, pool and script cache. `Send + Sync`: call
/// [`Engine::execute`] from as many tasks as you like.
///
/// Costs: building starts one OS thread per worker, each keeping a few warm sandboxes
/// (a QuickJS runtime + context + prelude, a few hundred KiB each). Dropping the last clone
/// stops the threads once their current executions end.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// Swapped whole on change, so an execution keeps the tools it started with.
    registry: RwLock<Arc<Registry>>,
    limits: Limits,
    jobs: crossbeam_channel::Sender<Job>,
    /// Each sandbox thread's own queue: its sessions' programs, and which of their sandboxes to
    /// drop. A session's sandbox lives on one thread (a QuickJS runtime cannot move).
    own: Vec<crossbeam_channel::Sender<Own>>,
    cache: Arc<ScriptCache>,
    workers: usize,
    checker: Option<TypeChecker>,
    sessions: Sessions,
    privacy: Privacy,
    approval_timeout: Duration,
    isolation: Isolation,
    kind: EngineKind,
    #[cfg(target_os = "linux")]
    seal: Option<crate::sealed::SealReport>,
    /// Executions paused for approval, by approval id.
    paused: Mutex<HashMap<String, PausedRun>>,
    /// Approvals that expired, newest last.
    expired: Mutex<std::collections::VecDeque<String>>,
}

/// What a sandbox thread's own queue carries.
enum Own {
    Run(Box<Job>),
    /// The session with this id ended: drop its sandbox.
    Drop(u64),
    /// Decide on the call a paused execution waits on, and continue it.
    Resume(Box<ResumeJob>),
    /// The execution paused on this approval ended unresumed: drop its sandbox.
    DropPaused(String),
}

struct ResumeJob {
    approval: String,
    approve: bool,
    reason: Option<String>,
    reply: Reply,
    span: tracing::Span,
}

/// An outcome, and the sandbox thread it came from (where a paused execution stays).
type Reply = tokio::sync::oneshot::Sender<(Outcome, usize)>;

/// An execution paused for approval, as the engine keeps it until someone decides.
struct PausedRun {
    worker: usize,
    expires: Instant,
    cancel: CancelHandle,
    vault: Option<Arc<Mutex<crate::privacy::Vault>>>,
    typecheck: CheckStatus,
    session: Option<PausedSession>,
}

/// The session a paused execution belongs to, to finish its turn when it ends.
struct PausedSession {
    state: Arc<SessionState>,
    key: String,
    execution: u64,
    notice: Option<crate::outcome::SessionReset>,
    code: String,
    declared: Option<Vec<String>>,
}

/// Why [`Engine::resume`] could not continue an execution.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// No execution waits on this approval: it was decided already, or never existed.
    #[error("no execution waits on approval {0:?}: it was decided already, or the id is wrong")]
    Unknown(String),
    /// Nobody decided within the approval timeout, so the execution ended.
    #[error("approval {0:?} expired: nobody decided within the approval timeout, so its execution ended")]
    Expired(String),
    /// The session of the paused execution ended (closed, evicted or expired).
    #[error("the session of approval {0:?} ended, and its paused execution with it")]
    SessionEnded(String),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registry", &self.inner.registry)
            .field("limits", &self.inner.limits)
            .field("workers", &self.inner.workers)
            .field("checker", &self.inner.checker)
            .finish()
    }
}

struct Job {
    run: RunJob,
    reply: Reply,
    span: tracing::Span,
    /// The session whose sandbox runs it (the id its thread keeps the sandbox under).
    session: Option<u64>,
}

/// Builds an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    registry: Registry,
    limits: Limits,
    /// `None`: the engine's default for its kind.
    workers: Option<usize>,
    warm: usize,
    checker: Option<TypeChecker>,
    sessions: SessionLimits,
    privacy: Privacy,
    approval_timeout: Duration,
    isolation: Isolation,
    worker_program: Option<std::path::PathBuf>,
    kind: EngineKind,
    node: Option<std::path::PathBuf>,
    test_hooks: bool,
}

/// The JavaScript engine programs run in.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// QuickJS-ng, in this process or in sealed workers ([`Isolation`]): a sandbox costs tens
    /// of microseconds, and no JIT. The default.
    #[default]
    QuickJs,
    /// V8 (Linux), in Node.js processes the engine starts ([`EngineBuilder::node_program`]),
    /// each program in a fresh context of a pooled isolate with its own heap limit: a JIT for
    /// compute-heavy programs, at a higher cost per execution. See [`crate::sealed`].
    V8,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::QuickJs => "quickjs",
            EngineKind::V8 => "v8",
        })
    }
}

/// Where sandboxes run.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// On the engine's own threads, in the host's process: the fastest, and the default. A
    /// program reaches nothing but what the sandbox gives it, but a bug in the JS engine would
    /// be a bug in the host.
    #[default]
    Thread,
    /// In sealed worker processes, one per sandbox thread (Linux): the worker keeps no
    /// filesystem, network, or system calls beyond a short allow-list, and reaches tools only
    /// through the host. See [`crate::sealed`].
    Process,
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Thread => "thread",
            Isolation::Process => "process",
        })
    }
}

/// Why an engine could not be built.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A sandbox thread could not be started.
    #[error("could not start a sandbox thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The engine could not build a sandbox (the prelude did not load): a bug, not bad input.
    #[error("could not build a sandbox: {0}")]
    Sandbox(ExecError),
    /// A sealed worker process could not be started or could not seal itself.
    #[error("could not start a sealed sandbox process: {0}")]
    Worker(String),
    /// The V8 engine could not be started (Node.js is not installed, or not where it was
    /// said to be).
    #[error("could not start the V8 engine: {0}")]
    V8(String),
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            registry: Registry::new(),
            limits: Limits::default(),
            workers: None,
            warm: 4,
            checker: None,
            sessions: SessionLimits::default(),
            privacy: Privacy::default(),
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
            isolation: Isolation::Thread,
            worker_program: None,
            kind: EngineKind::QuickJs,
            node: None,
            test_hooks: false,
        }
    }
}

impl EngineBuilder {
    /// The tools programs can call.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }
    /// Limits used when an execution does not bring its own.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Sandbox threads (default: twice the number of cores; with the V8 engine, one per core).
    /// Each runs one program at a time and refills its warm set between programs; with more
    /// threads than cores, a program that arrives while one thread is building a sandbox finds
    /// another thread waiting. A V8 thread's Node.js process builds its next context itself and
    /// costs ~80 MiB: more of them than cores only spread the same work over colder caches.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }
    /// Warm sandboxes each thread keeps ready (default 4; 0 builds every sandbox on demand).
    /// A sealed worker keeps them itself, built (and the used ones freed) by a thread of its
    /// own at idle priority; a V8 process keeps one whatever the number above 0, built as
    /// soon as a run ends.
    pub fn warm_sandboxes(mut self, warm: usize) -> Self {
        self.warm = warm;
        self
    }

    /// Type-checks programs with this checker before they run (see [`Limits::typecheck`]).
    /// Without one, programs run unchecked and each outcome's `stats.warnings` says so.
    pub fn type_checker(mut self, checker: TypeChecker) -> Self {
        self.checker = Some(checker);
        self
    }

    /// Limits on sessions ([`Engine::session`]): how many live at once, how long one may idle,
    /// the heap and the store each may hold.
    pub fn sessions(mut self, limits: SessionLimits) -> Self {
        self.sessions = limits;
        self
    }

    /// Tokenizes private values in what programs return (see [`Privacy`]); off by default.
    pub fn privacy(mut self, privacy: Privacy) -> Self {
        self.privacy = privacy;
        self
    }

    /// How long an execution paused for approval ([`Tool::requiring_approval`](crate::Tool::requiring_approval))
    /// waits for a decision (default 15 minutes). Past it the execution ends, its sandbox is
    /// freed, and [`Engine::resume`] says it expired. Time paused never counts in the
    /// execution's own deadline.
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.approval_timeout = timeout;
        self
    }

    /// Where sandboxes run (default [`Isolation::Thread`]).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// The program started as a sealed worker ([`Isolation::Process`]): a binary that calls
    /// [`crate::sealed::serve_if_worker`] first thing in `main`. Default: the running
    /// executable.
    pub fn worker_program(mut self, program: impl Into<std::path::PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// The JavaScript engine (default [`EngineKind::QuickJs`]). [`EngineKind::V8`] needs
    /// [`EngineBuilder::node_program`].
    pub fn engine(mut self, kind: EngineKind) -> Self {
        self.kind = kind;
        self
    }

    /// The Node.js binary (22 or newer) that hosts the V8 engine: `codemode setup v8`
    /// installs a pinned one from npm ([`crate::NODE_VERSION`]).
    pub fn node_program(mut self, node: impl Into<std::path::PathBuf>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Starts workers with the hooks the seal's tests use. Not for production.
    #[doc(hidden)]
    pub fn worker_test_hooks(mut self, on: bool) -> Self {
        self.test_hooks = on;
        self
    }

    /// Starts the sandbox threads (and, with [`Isolation::Process`], their workers: the first
    /// is started here, so a worker that cannot seal itself fails the build).
    pub fn build(self) -> Result<Engine, BuildError> {
        // Fail here, not in the first execution, if a sandbox cannot be built at all.
        drop(Sandbox::new().map_err(BuildError::Sandbox)?);
        #[cfg(target_os = "linux")]
        let warm = self.warm;
        #[cfg(target_os = "linux")]
        let (command, mut first) = match (self.kind, self.isolation) {
            (EngineKind::V8, _) => {
                let Some(program) = self.node.clone() else {
                    return Err(BuildError::V8(
                        "no Node.js binary was named: run `codemode setup v8` to install the pinned one, \
                         or name one with EngineBuilder::node_program"
                            .into(),
                    ));
                };
                let command =
                    crate::sealed::WorkerCommand { program, hooks: self.test_hooks, warm, v8: true };
                let first = command.start().map_err(BuildError::V8)?;
                (Some(command), Some(first))
            }
            (EngineKind::QuickJs, Isolation::Thread) => (None, None),
            (EngineKind::QuickJs, Isolation::Process) => {
                let program = match self.worker_program.clone() {
                    Some(program) => program,
                    None => std::env::current_exe()
                        .map_err(|e| BuildError::Worker(format!("the running executable is unknown: {e}")))?,
                };
                let command =
                    crate::sealed::WorkerCommand { program, hooks: self.test_hooks, warm, v8: false };
                let first = command.start().map_err(BuildError::Worker)?;
                (Some(command), Some(first))
            }
        };
        #[cfg(not(target_os = "linux"))]
        if self.isolation == Isolation::Process {
            return Err(BuildError::Worker("sealed sandbox processes need Linux".into()));
        }
        #[cfg(not(target_os = "linux"))]
        if self.kind == EngineKind::V8 {
            return Err(BuildError::V8("the V8 engine needs Linux".into()));
        }
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let workers = self.workers.unwrap_or(if self.kind == EngineKind::V8 { cores } else { 2 * cores });
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (own, own_rx): (Vec<_>, Vec<_>) = (0..workers).map(|_| crossbeam_channel::unbounded()).unzip();
        let inner = Arc::new(Inner {
            registry: RwLock::new(Arc::new(self.registry)),
            limits: self.limits,
            jobs: tx,
            own,
            cache: Arc::new(ScriptCache::default()),
            workers,
            checker: self.checker,
            sessions: Sessions::new(self.sessions, workers),
            privacy: self.privacy,
            approval_timeout: self.approval_timeout,
            isolation: self.isolation,
            kind: self.kind,
            #[cfg(target_os = "linux")]
            seal: first.as_ref().map(|(_, seal)| seal.clone()),
            paused: Mutex::default(),
            expired: Mutex::default(),
        });
        for (i, own) in own_rx.into_iter().enumerate() {
            let rx = rx.clone();
            let engine = Arc::downgrade(&inner);
            #[cfg(target_os = "linux")]
            let pool = match &command {
                None => Pool::Thread(self.warm),
                // The worker keeps its own sandboxes warm; the thread, a handle on a live worker.
                Some(command) => Pool::Process(command.clone(), first.take(), self.warm.min(1)),
            };
            #[cfg(not(target_os = "linux"))]
            let pool = Pool::Thread(self.warm);
            thread::Builder::new()
                .name(format!("codemode-sandbox-{i}"))
                .stack_size(THREAD_STACK_BYTES)
                .spawn(move || worker(i, rx, own, pool, engine))?;
        }
        Ok(Engine { inner })
    }
}

/// One sandbox thread: serve jobs (its own queue first), refill the warm set whenever no job
/// is waiting, and keep the sandboxes of the sessions placed on it and of the executions paused
/// on it.
fn worker(
    index: usize,
    jobs: crossbeam_channel::Receiver<Job>,
    own: crossbeam_channel::Receiver<Own>,
    pool: Pool,
    engine: Weak<Inner>,
) {
    use crossbeam_channel::TryRecvError;
    let (warm, slots) = pool.start();
    let mut ready: Vec<Slot> = Vec::with_capacity(warm);
    let mut kept = Kept::default();
    loop {
        let job = match own.try_recv() {
            Ok(message) => kept.take(message),
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => match jobs.try_recv() {
                Ok(job) => Some(Work::Run(job)),
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    if ready.len() < warm {
                        if let Ok(sandbox) = slots.warm() {
                            ready.push(sandbox);
                            continue;
                        }
                    }
                    crossbeam_channel::select! {
                        recv(own) -> message => match message {
                            Ok(message) => kept.take(message),
                            Err(_) => return,
                        },
                        recv(jobs) -> job => match job {
                            Ok(job) => Some(Work::Run(job)),
                            Err(_) => return,
                        },
                        default(SWEEP_EVERY) => {
                            if let Some(engine) = engine.upgrade() {
                                engine.drop_sandboxes(engine.sessions.sweep());
                                engine.expire_approvals();
                            }
                            None
                        }
                    }
                }
            },
        };
        let (sandbox, session, reply, span, step) = match job {
            None => continue,
            Some(Work::Run(Job { run, reply, span, session })) => {
                let sandbox = match session.and_then(|id| kept.sessions.remove(&id)) {
                    Some(sandbox) => Ok(sandbox),
                    None => ready.pop().map_or_else(|| slots.fresh(), Ok),
                };
                (sandbox, session, reply, span, Step::Run(run))
            }
            Some(Work::Resume(job)) => {
                let ResumeJob { approval, approve, reason, reply, span } = *job;
                let Some((sandbox, session)) = kept.paused.remove(&approval) else {
                    let gone = ExecError::new(
                        ErrorKind::Internal,
                        "the paused execution is gone from its sandbox thread",
                    );
                    let _ = reply.send((Outcome::failed(gone), index));
                    continue;
                };
                (Ok(sandbox), session, reply, span, Step::Resume(approve, reason))
            }
        };
        // Left before the reply goes: a span still held here when the caller has its outcome
        // could close after a one-shot command has flushed its spans and be lost.
        let entered = span.entered();
        let mut sandbox = match sandbox {
            Ok(sandbox) => sandbox,
            Err(e) => {
                drop(entered);
                let _ = reply.send((Outcome::failed(e), index));
                continue;
            }
        };
        // A bug in the sandbox must cost one execution, not the thread.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match step {
            Step::Run(run) => sandbox.run(run),
            Step::Resume(approve, reason) => sandbox.resume(approve, reason.as_deref()),
        }));
        let (outcome, sound) = match ran {
            Ok(outcome) => (outcome, true),
            Err(_) => (Outcome::failed(sandbox_bug()), false),
        };
        let paused = outcome.paused.as_ref().filter(|_| sound).map(|p| p.approval.clone());
        let keep = session.filter(|_| sound && !resets_session(&outcome));
        drop(entered);
        let _ = reply.send((outcome, index));
        match (paused, keep) {
            (Some(approval), _) => drop(kept.paused.insert(approval, (sandbox, session))),
            (None, Some(id)) => drop(kept.sessions.insert(id, sandbox)),
            // Freeing the used runtime (a full GC) happens after the caller has its outcome.
            (None, None) => drop(sandbox),
        }
    }
}

/// How a sandbox thread gets its sandboxes.
#[allow(clippy::large_enum_variant, reason = "one per sandbox thread, moved into it once")]
enum Pool {
    /// In this process, keeping this many warm.
    Thread(usize),
    /// In a sealed worker process (the first one maybe started already), which keeps its own
    /// sandbox warm; this thread keeps this many handles on it, replacing a worker that died.
    #[cfg(target_os = "linux")]
    Process(crate::sealed::WorkerCommand, Option<(crate::sealed::Worker, crate::sealed::SealReport)>, usize),
}

/// What makes a sandbox thread's sandboxes, once the thread runs.
enum Slots {
    Thread,
    #[cfg(target_os = "linux")]
    Process(std::rc::Rc<std::cell::RefCell<crate::sealed::Host>>),
}

impl Pool {
    /// The warm sandboxes the thread keeps itself, and its maker.
    fn start(self) -> (usize, Slots) {
        match self {
            Pool::Thread(warm) => (warm, Slots::Thread),
            #[cfg(target_os = "linux")]
            Pool::Process(command, first, warm) => {
                let host = crate::sealed::Host::new(command, first);
                // Started now rather than at the first execution; a failure is reported then.
                let _ = host.borrow_mut().ensure();
                (warm, Slots::Process(host))
            }
        }
    }
}

impl Slots {
    /// A sandbox built now, to keep warm.
    fn warm(&self) -> Result<Slot, ExecError> {
        match self {
            Slots::Thread => Sandbox::new().map(Slot::Thread),
            #[cfg(target_os = "linux")]
            // The worker builds its own (as soon as a run ends, while this thread replies): here
            // only a worker that died is replaced, before a job needs it.
            Slots::Process(host) => {
                host.borrow_mut().ensure()?;
                Ok(Slot::Process(crate::sealed::Sandbox::new(host)))
            }
        }
    }

    /// A sandbox for a job waiting now (a worker builds it as the job starts, in one step).
    fn fresh(&self) -> Result<Slot, ExecError> {
        match self {
            Slots::Thread => Sandbox::new().map(Slot::Thread),
            #[cfg(target_os = "linux")]
            Slots::Process(host) => Ok(Slot::Process(crate::sealed::Sandbox::new(host))),
        }
    }
}

/// A sandbox, in this process or in a sealed worker.
#[allow(clippy::large_enum_variant, reason = "held one at a time, never moved in bulk")]
enum Slot {
    Thread(Sandbox),
    #[cfg(target_os = "linux")]
    Process(crate::sealed::Sandbox),
}

impl Slot {
    fn run(&mut self, job: RunJob) -> Outcome {
        match self {
            Slot::Thread(sandbox) => sandbox.run(job),
            #[cfg(target_os = "linux")]
            Slot::Process(sandbox) => sandbox.run(job),
        }
    }

    fn resume(&mut self, approve: bool, reason: Option<&str>) -> Outcome {
        match self {
            Slot::Thread(sandbox) => sandbox.resume(approve, reason),
            #[cfg(target_os = "linux")]
            Slot::Process(sandbox) => sandbox.resume(approve, reason),
        }
    }
}

/// The sandboxes a sandbox thread keeps between jobs.
#[derive(Default)]
struct Kept {
    /// Sessions' sandboxes, by session id.
    sessions: HashMap<u64, Slot>,
    /// Paused executions' sandboxes by approval id, with their session's id.
    paused: HashMap<String, (Slot, Option<u64>)>,
}

impl Kept {
    /// Handles a message of the thread's own queue; the work in it, if any.
    fn take(&mut self, message: Own) -> Option<Work> {
        match message {
            Own::Drop(id) => drop(self.sessions.remove(&id)),
            Own::DropPaused(approval) => drop(self.paused.remove(&approval)),
            Own::Run(job) => return Some(Work::Run(*job)),
            Own::Resume(job) => return Some(Work::Resume(job)),
        }
        None
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one lives on the thread's stack per job; boxing would cost an allocation per execution"
)]
enum Work {
    Run(Job),
    Resume(Box<ResumeJob>),
}

#[allow(
    clippy::large_enum_variant,
    reason = "one lives on the thread's stack per job; boxing would cost an allocation per execution"
)]
enum Step {
    Run(RunJob),
    Resume(bool, Option<String>),
}

impl Inner {
    /// Tells sandbox threads to drop the sandboxes of sessions that ended.
    fn drop_sandboxes(&self, ended: Vec<crate::session::SandboxOf>) {
        for (worker, id) in ended {
            let _ = self.own[worker].send(Own::Drop(id));
        }
    }

    /// Ends the executions paused past the approval timeout.
    fn expire_approvals(&self) {
        let now = Instant::now();
        let mut paused = self.paused.lock().expect("paused lock");
        let ids: Vec<String> =
            paused.iter().filter(|(_, p)| p.expires <= now).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if let Some(run) = paused.remove(&id) {
                self.end_paused(&id, run, true);
            }
        }
    }

    /// Ends a paused execution that will not be resumed: its sandbox goes, and its session may
    /// run programs again. An expired one is remembered, so a late answer hears why.
    fn end_paused(&self, approval: &str, run: PausedRun, expired: bool) {
        let _ = self.own[run.worker].send(Own::DropPaused(approval.to_string()));
        if let Some(session) = run.session {
            let mut progress = session.state.state.lock().expect("session lock");
            if progress.paused.as_deref() == Some(approval) {
                progress.paused = None;
            }
        }
        if !expired {
            return;
        }
        let mut expired = self.expired.lock().expect("expired lock");
        if expired.len() == REMEMBERED_EXPIRIES {
            expired.pop_front();
        }
        expired.push_back(approval.to_string());
    }
}

/// A session of an [`Engine`] ([`Engine::session`]): a name, and the engine that keeps it.
/// Cheap to clone; clones are the same session.
#[derive(Debug, Clone)]
pub struct Session {
    engine: Engine,
    key: String,
}

impl Session {
    /// Its name.
    pub fn id(&self) -> &str {
        &self.key
    }

    /// Runs a program in this session ([`Engine::execute`] with [`ExecuteOptions::session`]).
    pub async fn execute(&self, code: &str, mut options: ExecuteOptions) -> Outcome {
        options.session = Some(self.key.clone());
        self.engine.execute(code, options).await
    }

    /// Ends the session: its sandbox and stored values go; a later execution under its name
    /// starts a new one. True if it was live.
    pub fn close(&self) -> bool {
        self.engine.close_session(&self.key)
    }
}

/// An [`Engine`] that may have been dropped; see [`Engine::downgrade`].
#[derive(Debug, Clone)]
pub struct WeakEngine(Weak<Inner>);

impl WeakEngine {
    /// The engine, while any clone of it is alive.
    pub fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

/// Per-execution settings.
#[derive(Clone, Default)]
pub struct ExecuteOptions {
    /// Limits for this execution instead of the engine's.
    pub limits: Option<Limits>,
    /// Cancels the execution when triggered.
    pub cancel: Option<CancelToken>,
    /// Tools for this execution instead of the engine's (the daemon gives each client the
    /// engine's tools plus its own). Namespaces are installed per execution, so this costs
    /// nothing extra.
    pub registry: Option<Registry>,
    /// Called with each console line the execution keeps, as it is written (the daemon streams
    /// them). Runs on the sandbox thread: it must be quick and must not block.
    pub on_log: Option<LogSink>,
    /// The client the execution runs for, which upstream servers' sampling, elicitation and
    /// roots requests are forwarded to while one of their tools runs for it. Without one
    /// they are refused.
    pub client: Option<Arc<dyn crate::bridge::ClientRequests>>,
    /// Runs the program in this session ([`Engine::session`]): it sees what the session's
    /// earlier programs declared, and `codemode.store`/`load` keep values between them.
    pub session: Option<String>,
    /// Records every tool call in [`Outcome::calls`]: tool, the arguments' size and SHA-256,
    /// timing and outcome (costs a serialization and a hash of each call's arguments).
    pub audit: bool,
}

pub use crate::outcome::LogSink;

impl std::fmt::Debug for ExecuteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecuteOptions")
            .field("limits", &self.limits)
            .field("cancel", &self.cancel)
            .field("registry", &self.registry)
            .field("on_log", &self.on_log.as_ref().map(|_| "Fn(&LogLine)"))
            .field("client", &self.client.as_ref().map(|_| "dyn ClientRequests"))
            .field("session", &self.session)
            .field("audit", &self.audit)
            .finish()
    }
}

/// Cancels executions from anywhere: [`CancelToken::cancel`] ends every execution started with
/// this token with `cancelled` (a program stuck in a loop is interrupted too).
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<TokenInner>,
}

#[derive(Debug, Default)]
struct TokenInner {
    cancelled: AtomicBool,
    handles: Mutex<Vec<CancelHandle>>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Cancels every execution using this token, now and later.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        for h in self.inner.handles.lock().expect("cancel lock").iter() {
            h.cancel();
        }
    }
    /// True once [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }
    fn attach(&self, handle: CancelHandle) {
        let mut handles = self.inner.handles.lock().expect("cancel lock");
        // A long-lived token (one per daemon connection, say) must not pile up finished runs.
        handles.retain(CancelHandle::is_live);
        handles.push(handle.clone());
        drop(handles);
        if self.is_cancelled() {
            handle.cancel();
        }
    }
}

/// Cancels the execution if its future is dropped before the outcome arrives.
struct CancelOnDrop(Option<CancelHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.cancel();
        }
    }
}

impl Engine {
    /// A builder with default limits, one worker per core and an empty registry.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The tools this engine serves now. A snapshot: a later [`Engine::update_registry`]
    /// makes a new registry and leaves this one as it is.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.inner.registry.read().expect("registry lock"))
    }

    /// Changes the engine's tools, all or nothing: `change` edits a copy, which replaces the
    /// registry only when it returns `Ok`. Executions already running keep the tools they
    /// started with; the next ones see the change. Upstream MCP servers whose tool list
    /// changes re-register through this.
    pub fn update_registry<T, E>(&self, change: impl FnOnce(&mut Registry) -> Result<T, E>) -> Result<T, E> {
        let mut current = self.inner.registry.write().expect("registry lock");
        let mut next = Registry::clone(&current);
        let out = change(&mut next)?;
        *current = Arc::new(next);
        Ok(out)
    }

    /// A handle that does not keep the engine alive (its threads stop when the last
    /// [`Engine`] is dropped, whoever holds a `WeakEngine`).
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// How many sandbox threads it runs.
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Where its sandboxes run. V8 always runs in processes of its own: [`Isolation::Process`].
    pub fn isolation(&self) -> Isolation {
        match self.inner.kind {
            EngineKind::V8 => Isolation::Process,
            EngineKind::QuickJs => self.inner.isolation,
        }
    }

    /// The JavaScript engine programs run in.
    pub fn kind(&self) -> EngineKind {
        self.inner.kind
    }

    /// With [`Isolation::Process`] or V8: what sealing the first worker achieved.
    #[cfg(target_os = "linux")]
    pub fn seal(&self) -> Option<&crate::sealed::SealReport> {
        self.inner.seal.as_ref()
    }

    /// The default limits of its executions.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The prompt helper ([`crate::prompt`]) for this engine's tools and limits; it promises a
    /// type check only when this engine has a checker.
    pub fn prompt(&self, session: bool) -> String {
        self.prompt_for(&self.registry(), session)
    }

    /// The prompt helper for another view of the tools (a daemon client's, with its own
    /// tools), under this engine's limits and privacy.
    pub fn prompt_for(&self, registry: &Registry, session: bool) -> String {
        let mut limits = self.inner.limits.clone();
        if self.inner.checker.is_none() {
            limits.typecheck = TypeCheck::Off;
        }
        let text = crate::prompt::prompt(registry, &limits, session);
        match self.inner.privacy.prompt_line() {
            Some(line) => text.replacen("\nNamespaces:\n", &format!("{line}\nNamespaces:\n"), 1),
            None => text,
        }
    }

    /// Runs one TypeScript program and returns its outcome. Never panics on bad input: every
    /// failure is in [`Outcome::error`]. Must be awaited inside a tokio runtime, whose tasks run
    /// the tool handlers; the program itself runs on a sandbox thread, never on the runtime's.
    /// Dropping the future cancels the execution.
    pub async fn execute(&self, code: &str, mut options: ExecuteOptions) -> Outcome {
        match options.session.take() {
            Some(key) => self.execute_in_session(&key, code, options).await,
            None => self.run(code, options, None).await.0,
        }
    }

    /// A session named `key`: its programs share one sandbox, so what one declares at its top
    /// level (or puts on `globalThis`) the next ones see, as in a REPL, and `codemode.store`
    /// keeps JSON values that outlive even that sandbox. It starts with its first execution and
    /// ends when closed ([`Session::close`]), idle past [`SessionLimits::idle_timeout`], or
    /// evicted to make room for another past [`SessionLimits::max_sessions`]; the next
    /// execution after an end the caller did not ask for says so in [`Outcome::session`].
    /// Programs of one session run one at a time, in order.
    pub fn session(&self, key: impl Into<String>) -> Session {
        Session { engine: self.clone(), key: key.into() }
    }

    /// Ends the session `key` now; true if it was live.
    pub fn close_session(&self, key: &str) -> bool {
        let ended = self.inner.sessions.close(key);
        let live = ended.is_some();
        self.inner.drop_sandboxes(ended.into_iter().collect());
        live
    }

    /// The names of the live sessions, sorted.
    pub fn sessions(&self) -> Vec<String> {
        self.inner.sessions.live()
    }

    async fn execute_in_session(&self, key: &str, code: &str, options: ExecuteOptions) -> Outcome {
        let (state, ended) = match self.inner.sessions.open(key) {
            Ok(opened) => opened,
            Err(why) => return Outcome::failed(ExecError::new(ErrorKind::Limit, why)),
        };
        self.inner.drop_sandboxes(ended);
        let _turn = state.turn.lock().await;
        let (execution, notice, files) = {
            let mut progress = state.state.lock().expect("session lock");
            if let Some(approval) = &progress.paused {
                return Outcome::failed(ExecError::new(
                    ErrorKind::Limit,
                    format!(
                        "this session has an execution paused on approval {approval}: decide on it (approve \
                         or reject) before running another program in this session"
                    ),
                ));
            }
            progress.executions += 1;
            progress.last_used = Some(Instant::now());
            (progress.executions, progress.notice.take(), progress.files.clone())
        };
        let (mut outcome, declared) = self.run(code, options, Some((&state, files))).await;
        let session = PausedSession {
            state: Arc::clone(&state),
            key: key.to_string(),
            execution,
            notice,
            code: code.to_string(),
            declared,
        };
        self.session_outcome(session, &mut outcome);
        outcome
    }

    /// Ends a session's turn with `outcome`: the session learns what the program declared (or
    /// loses its state, after a reset), and the outcome says where it stands in the session. A
    /// paused outcome leaves the session waiting on its approval instead.
    fn session_outcome(&self, mut session: PausedSession, outcome: &mut Outcome) {
        let state = Arc::clone(&session.state);
        if let Some(paused) = &outcome.paused {
            state.state.lock().expect("session lock").paused = Some(paused.approval.clone());
            let reset = session.notice.take();
            outcome.session =
                Some(SessionInfo { id: session.key.clone(), execution: session.execution, reset });
            if let Some(run) = self.inner.paused.lock().expect("paused lock").get_mut(&paused.approval) {
                run.session = Some(session);
            }
            return;
        }
        let reset = resets_session(outcome).then(|| {
            let kind = outcome.error.as_ref().map_or("internal", |e| e.kind.code());
            session::reset(
                kind,
                format!(
                    "the execution ended with {kind}, so the session's sandbox was replaced: the declarations \
                     and globals of its earlier programs are gone; values kept with codemode.store remain"
                ),
            )
        });
        {
            let mut progress = state.state.lock().expect("session lock");
            progress.last_used = Some(Instant::now());
            progress.paused = None;
            if reset.is_some() {
                progress.files.clear();
            } else if let Some(names) = session.declared {
                progress.declared(state.id, transpile::without_bom(&session.code), names);
            }
        }
        outcome.session = Some(SessionInfo {
            id: session.key,
            execution: session.execution,
            reset: reset.or(session.notice),
        });
        // Ended while this program waited or ran (closed, or evicted under load): its thread was
        // told to drop the sandbox before the program kept it again, so tell it once more.
        if !self.inner.sessions.is_live(&state) {
            self.inner.drop_sandboxes(vec![(state.worker, state.id)]);
        }
    }

    /// Continues the execution paused on `approval` (its outcome's [`Outcome::paused`]):
    /// approved, the call goes to its tool; rejected, it throws a `ToolError` whose code is
    /// `rejected` (with `reason` in its message) where the program made it, which the program
    /// may catch. Returns the execution's next outcome, which may pause again at a later call.
    /// Dropping the future cancels the execution.
    pub async fn resume(
        &self,
        approval: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Outcome, ResumeError> {
        self.resume_with(approval, approve, reason, None).await
    }

    /// [`Engine::resume`], with a token that cancels the resumed execution (as
    /// [`ExecuteOptions::cancel`] does for [`Engine::execute`]).
    pub async fn resume_with(
        &self,
        approval: &str,
        approve: bool,
        reason: Option<&str>,
        cancel: Option<&CancelToken>,
    ) -> Result<Outcome, ResumeError> {
        let run = self.inner.paused.lock().expect("paused lock").remove(approval);
        let Some(mut run) = run else {
            let expired = self.inner.expired.lock().expect("expired lock").iter().any(|a| a == approval);
            return Err(if expired {
                ResumeError::Expired(approval.into())
            } else {
                ResumeError::Unknown(approval.into())
            });
        };
        if run.expires <= Instant::now() {
            self.inner.end_paused(approval, run, true);
            return Err(ResumeError::Expired(approval.into()));
        }
        let state = run.session.as_ref().map(|s| Arc::clone(&s.state));
        if state.as_ref().is_some_and(|state| !self.inner.sessions.is_live(state)) {
            self.inner.end_paused(approval, run, false);
            return Err(ResumeError::SessionEnded(approval.into()));
        }
        let _turn = match &state {
            Some(state) => Some(state.turn.lock().await),
            None => None,
        };
        let span = tracing::info_span!(
            "resume",
            approve,
            outcome = tracing::field::Empty,
            tool_calls = tracing::field::Empty,
            tool_result_bytes = tracing::field::Empty,
            returned_bytes = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job = ResumeJob {
            approval: approval.into(),
            approve,
            reason: reason.map(str::to_string),
            reply,
            span: span.clone(),
        };
        if let Some(token) = cancel {
            token.attach(run.cancel.clone());
        }
        let mut guard = CancelOnDrop(Some(run.cancel.clone()));
        if self.inner.own[run.worker].send(Own::Resume(Box::new(job))).is_err() {
            guard.0 = None;
            return Ok(Outcome::failed(ExecError::new(
                ErrorKind::Internal,
                "the sandbox threads have stopped",
            )));
        }
        let (mut outcome, worker) = outcome.instrument(span.clone()).await.unwrap_or_else(|_| {
            let stopped =
                ExecError::new(ErrorKind::Internal, "a sandbox thread stopped during the execution");
            (Outcome::failed(stopped), run.worker)
        });
        guard.0 = None;
        outcome.stats.typecheck = run.typecheck;
        if let Some(vault) = &run.vault {
            self.tokenize(&mut outcome, vault);
        }
        let session = run.session.take();
        if let Some(paused) = &outcome.paused {
            run.worker = worker;
            run.expires = Instant::now() + self.inner.approval_timeout;
            self.inner.paused.lock().expect("paused lock").insert(paused.approval.clone(), run);
        }
        if let Some(session) = session {
            self.session_outcome(session, &mut outcome);
        }
        record_outcome(&span, &outcome);
        Ok(outcome)
    }

    /// One execution, in a session's sandbox when `session` is given (with the session's
    /// earlier programs for the type check): its outcome, and for a session's program that
    /// reached its sandbox the names its top level declared.
    async fn run(
        &self,
        code: &str,
        options: ExecuteOptions,
        session: Option<(&Arc<SessionState>, Vec<Arc<SessionFile>>)>,
    ) -> (Outcome, Option<Vec<String>>) {
        let span = tracing::info_span!(
            "execute",
            code_bytes = code.len(),
            session = session.is_some(),
            outcome = tracing::field::Empty,
            tool_calls = tracing::field::Empty,
            tool_result_bytes = tracing::field::Empty,
            returned_bytes = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let (outcome, declared) = self.run_in_span(code, options, session).instrument(span.clone()).await;
        record_outcome(&span, &outcome);
        (outcome, declared)
    }

    async fn run_in_span(
        &self,
        code: &str,
        options: ExecuteOptions,
        session: Option<(&Arc<SessionState>, Vec<Arc<SessionFile>>)>,
    ) -> (Outcome, Option<Vec<String>>) {
        let code = transpile::without_bom(code);
        let (mut run, cancel) = match self.prepare(code, options) {
            Ok(prepared) => prepared,
            Err(why) => return (Outcome::failed(ExecError::new(ErrorKind::Internal, why)), None),
        };
        if let Some(why) = refused(code, &run.limits) {
            return (Outcome::failed(ExecError::new(ErrorKind::Limit, why)), None);
        }
        let mut guard = CancelOnDrop(Some(cancel));
        let mut declared = None;
        let mut files = Vec::new();
        let mut target = None;
        // Only with privacy on: an execution without it pays nothing for it.
        let vault = (!self.inner.privacy.is_off())
            .then(|| session.as_ref().map_or_else(Default::default, |(state, _)| Arc::clone(&state.vault)));
        if let Some(vault) = &vault {
            run.bridge.set_privacy(self.inner.privacy.clone(), Arc::clone(vault));
        }
        if let Some((state, earlier)) = session {
            match transpile::transpile_session(code) {
                Ok((compiled, names)) => {
                    run.compiled = Some(compiled);
                    declared = Some(names);
                }
                Err(error) => {
                    guard.0 = None;
                    return (Outcome::failed(error), None);
                }
            }
            let limits = &self.inner.sessions.limits;
            run.session = Some(limits.memory_bytes);
            run.bridge.set_session(Arc::clone(state), limits.store_bytes);
            files = earlier;
            target = Some((state.worker, state.id));
        }
        let checked = match self.check_before_run(&mut run, files).await {
            Ok(checked) => checked,
            Err(error) => {
                let mut outcome = Outcome::failed(error);
                outcome.stats.duration = run.started.elapsed();
                outcome.stats.typecheck =
                    if outcome.error.as_ref().is_some_and(|e| e.kind == ErrorKind::TypeError) {
                        CheckStatus::Failed
                    } else {
                        CheckStatus::NotChecked
                    };
                guard.0 = None;
                return (outcome, None);
            }
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        run.queued = Some(Instant::now());
        // The sandbox thread enters the execution's span: tool calls are its children.
        let job = Job { run, reply, span: tracing::Span::current(), session: target.map(|(_, id)| id) };
        let sent = match target {
            Some((worker, _)) => self.inner.own[worker].send(Own::Run(Box::new(job))).is_ok(),
            None => self.inner.jobs.send(job).is_ok(),
        };
        if !sent {
            guard.0 = None;
            return (
                Outcome::failed(ExecError::new(ErrorKind::Internal, "the sandbox threads have stopped")),
                None,
            );
        }
        let outcome = outcome.await;
        let cancel = guard.0.take().expect("the execution's cancel handle");
        let (mut outcome, worker) = outcome.unwrap_or_else(|_| {
            let stopped =
                ExecError::new(ErrorKind::Internal, "a sandbox thread stopped during the execution");
            (Outcome::failed(stopped), 0)
        });
        outcome.stats.typecheck = checked.status;
        outcome.stats.warnings.extend(checked.warning);
        outcome.diagnostics = checked.diagnostics;
        if let Some(vault) = &vault {
            self.tokenize(&mut outcome, vault);
        }
        if let Some(paused) = &outcome.paused {
            let run = PausedRun {
                worker,
                expires: Instant::now() + self.inner.approval_timeout,
                cancel,
                vault,
                typecheck: checked.status,
                session: None,
            };
            self.inner.paused.lock().expect("paused lock").insert(paused.approval.clone(), run);
        }
        (outcome, declared)
    }

    /// Type-checks `code` against this engine's tools, as an execution would before running
    /// it: the compiler's errors at the agent's positions (empty when it type-checks). A
    /// program that does not parse is a `syntax` error; an engine without a checker, or a
    /// checker that failed on this program, a `type_error` saying so.
    pub async fn check(&self, code: &str) -> Result<Vec<Diagnostic>, ExecError> {
        let code = transpile::without_bom(code);
        if let Some(why) = refused(code, &self.inner.limits) {
            return Err(ExecError::new(ErrorKind::Limit, why));
        }
        let Some(checker) = &self.inner.checker else {
            transpile::transpile(code)?;
            return Err(ExecError::new(ErrorKind::TypeError, NO_CHECKER));
        };
        let compiled = transpile::transpile(code)?;
        let checked =
            check_with(checker, code, &compiled, &self.registry(), Vec::new(), MAX_CHECK_TIME).await;
        checked.map_err(|e| ExecError::new(ErrorKind::TypeError, e.to_string()))
    }

    /// Type-checks a saved program against this engine's tools and skills (with `skill` in
    /// place of a saved one of its name): `input` is its `Input`, and what it returns must be
    /// its `Output`. The compiler's errors at the skill's own positions; empty when it checks.
    /// Without a checker, or when the checker fails, a `type_error` saying so.
    pub async fn check_skill(&self, skill: &Skill) -> Result<Vec<Diagnostic>, ExecError> {
        let Some(checker) = &self.inner.checker else {
            return Err(ExecError::new(ErrorKind::TypeError, NO_CHECKER));
        };
        let mut registry = Registry::clone(&self.registry());
        registry.add_skill(skill.clone());
        let (code, shift) = skill.check_source();
        let compiled = transpile::transpile(&code)?;
        let mut diagnostics = check_with(checker, &code, &compiled, &registry, Vec::new(), MAX_CHECK_TIME)
            .await
            .map_err(|e| ExecError::new(ErrorKind::TypeError, e.to_string()))?;
        // The wrapper's head sits on the first line and its `}` after the last.
        let last = skill.source().lines().count().max(1) as u32;
        for d in &mut diagnostics {
            if d.line == 1 {
                d.column = d.column.saturating_sub(shift as u32).max(1);
            }
            d.line = d.line.min(last);
        }
        Ok(diagnostics)
    }

    /// Adds a saved program to this engine's tools (replacing one of its name), checked first
    /// as the engine's limits ask: `strict` refuses it when it has type errors or the checker
    /// fails on it; `warn` adds it and returns its diagnostics; `off`, or an engine without a
    /// checker, adds it unchecked. Programs that start afterwards can call it.
    pub async fn add_skill(&self, skill: Skill) -> Result<Vec<Diagnostic>, SkillError> {
        let diagnostics = self.skill_diagnostics(&skill).await?;
        self.put_skill(skill);
        Ok(diagnostics)
    }

    /// Adds a skill unchecked: one just checked, or one this engine had (the daemon puts back
    /// the version it had when a new one could not be saved).
    pub(crate) fn put_skill(&self, skill: Skill) {
        self.change_skills(|r| drop(r.add_skill(skill)));
    }

    /// Removes the saved program `name` from this engine's tools; false when it had none.
    pub fn remove_skill(&self, name: &str) -> bool {
        let mut removed = false;
        self.change_skills(|r| removed = r.remove_skill(name));
        removed
    }

    /// Loads every skill of `store` into this engine's tools, then checks each against the
    /// tools and the other skills as [`Engine::add_skill`] does. Returns what was left out, and
    /// why: a file that is not a valid skill, and (in `strict` mode) a skill that no longer
    /// type-checks — then the others are checked again without it. In `warn` mode a skill with
    /// type errors is loaded and returned too. Fails only when the directory cannot be read.
    pub async fn load_skills(&self, store: &SkillStore) -> Result<Vec<(String, SkillError)>, SkillError> {
        let mut problems = Vec::new();
        let mut loaded = Vec::new();
        for stored in store.load()? {
            match stored.skill {
                Ok(skill) => loaded.push(skill),
                Err(e) => problems.push((stored.name, e)),
            }
        }
        self.change_skills(|r| loaded.iter().for_each(|s| drop(r.add_skill(s.clone()))));
        loop {
            let mut removed = false;
            for skill in &loaded {
                if self.registry().skill(skill.name()).is_none() {
                    continue;
                }
                match self.skill_diagnostics(skill).await {
                    Ok(diagnostics) if diagnostics.is_empty() => {}
                    // `warn`: kept, and this pass is the only one.
                    Ok(diagnostics) => {
                        let name = skill.name().to_string();
                        problems.push((name.clone(), SkillError::TypeErrors { name, diagnostics }));
                    }
                    Err(e) => {
                        self.change_skills(|r| r.leave_out_skill(skill.name(), e.to_string()));
                        removed = true;
                        problems.push((skill.name().to_string(), e));
                    }
                }
            }
            if !removed {
                break;
            }
        }
        Ok(problems)
    }

    fn change_skills(&self, change: impl FnOnce(&mut Registry)) {
        let _ = self.update_registry(|r| {
            change(r);
            Ok::<_, std::convert::Infallible>(())
        });
    }

    /// The diagnostics [`Engine::add_skill`] adds a skill with, or why it refuses it.
    async fn skill_diagnostics(&self, skill: &Skill) -> Result<Vec<Diagnostic>, SkillError> {
        let mode = self.inner.limits.typecheck;
        if mode == TypeCheck::Off || self.inner.checker.is_none() {
            return Ok(Vec::new());
        }
        let name = skill.name().to_string();
        match self.check_skill(skill).await {
            Ok(diagnostics) if diagnostics.is_empty() || mode == TypeCheck::Warn => Ok(diagnostics),
            Ok(diagnostics) => Err(SkillError::TypeErrors { name, diagnostics }),
            Err(_) if mode == TypeCheck::Warn => Ok(Vec::new()),
            Err(e) => Err(SkillError::Unchecked { name, message: e.message }),
        }
    }

    /// The type check an execution's limits ask for. In `strict` mode a program with type
    /// errors (or one the checker failed on) is refused here; the program is transpiled here
    /// too, so syntax errors come first and the sandbox does not transpile it again.
    async fn check_before_run(
        &self,
        run: &mut RunJob,
        session: Vec<Arc<SessionFile>>,
    ) -> Result<Checked, ExecError> {
        let mode = run.limits.typecheck;
        if mode == TypeCheck::Off {
            return Ok(Checked::default());
        }
        let Some(checker) = &self.inner.checker else {
            return Ok(Checked {
                status: CheckStatus::Unavailable,
                warning: Some(NO_CHECKER.into()),
                ..Checked::default()
            });
        };
        let deadline = run.started + run.limits.timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        let compiled = match run.compiled.take() {
            Some(compiled) => compiled,
            None => transpile::transpile(&run.code)?,
        };
        let result = check_with(
            checker,
            &run.code,
            &compiled,
            run.bridge.registry(),
            session,
            left.min(MAX_CHECK_TIME),
        )
        .instrument(tracing::info_span!("typecheck"))
        .await;
        run.compiled = Some(compiled);
        let result = result.map(|mut diagnostics| {
            for d in &mut diagnostics {
                crate::suggest::explain_left_out_skill(run.bridge.registry(), &mut d.message);
            }
            diagnostics
        });
        match result {
            Ok(diagnostics) if diagnostics.is_empty() => {
                Ok(Checked { status: CheckStatus::Passed, ..Checked::default() })
            }
            Ok(diagnostics) if mode == TypeCheck::Strict => Err(type_error(diagnostics)),
            Ok(diagnostics) => Ok(Checked { status: CheckStatus::Failed, diagnostics, warning: None }),
            Err(_) if Instant::now() >= deadline => Err(ExecError::new(
                ErrorKind::Timeout,
                format!(
                    "the program ran past its {} ms deadline while it was type-checked",
                    run.limits.timeout.as_millis()
                ),
            )),
            Err(e) if mode == TypeCheck::Strict => Err(ExecError::new(ErrorKind::TypeError, e.to_string())),
            Err(e) => Ok(Checked {
                status: CheckStatus::Unavailable,
                warning: Some(e.to_string()),
                ..Checked::default()
            }),
        }
    }

    /// Private values in what goes back to the model replaced by their tokens. Log lines were
    /// tokenized as they were written (they may have been streamed); this catches the lines the
    /// run added at its end (unhandled rejections).
    fn tokenize(&self, outcome: &mut Outcome, vault: &Mutex<crate::privacy::Vault>) {
        let privacy = &self.inner.privacy;
        let mut vault = vault.lock().expect("vault lock");
        let counts = &mut outcome.stats.tokenized;
        vault.tokenize_json(privacy, &mut outcome.value, counts);
        for line in &mut outcome.logs {
            line.message = vault.tokenize(privacy, &line.message, counts);
        }
        if let Some(paused) = &mut outcome.paused {
            vault.tokenize_json(privacy, &mut paused.arguments, counts);
        }
        if let Some(error) = &mut outcome.error {
            error.message = vault.tokenize(privacy, &error.message, counts);
            if let Some(stack) = &mut error.stack {
                *stack = vault.tokenize(privacy, stack, counts);
            }
        }
    }

    /// Everything an execution needs before it reaches a sandbox thread; the clock starts here.
    pub(crate) fn prepare(
        &self,
        code: &str,
        options: ExecuteOptions,
    ) -> Result<(RunJob, CancelHandle), &'static str> {
        let started = Instant::now();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Err("Engine::execute must be awaited inside a tokio runtime");
        };
        let mut limits = options.limits.unwrap_or_else(|| self.inner.limits.clone());
        limits.stack_bytes = limits.stack_bytes.min(MAX_ENGINE_STACK_BYTES);
        let registry = options.registry.map(Arc::new).unwrap_or_else(|| self.registry());
        let mut bridge = Bridge::new(registry, handle, &limits);
        bridge.set_log_sink(options.on_log);
        bridge.set_client(options.client);
        bridge.set_audit(options.audit);
        let cancel = bridge.cancel_handle();
        if let Some(token) = &options.cancel {
            token.attach(cancel.clone());
        }
        let run = RunJob {
            code: Arc::from(code),
            compiled: None,
            limits,
            bridge,
            cache: Arc::clone(&self.inner.cache),
            started,
            queued: None,
            session: None,
        };
        Ok((run, cancel))
    }
}

/// Checks `code` (which transpiled to `compiled`) against `registry`'s declarations and its
/// session's earlier programs within `timeout`.
async fn check_with(
    checker: &TypeChecker,
    code: &str,
    compiled: &transpile::Compiled,
    registry: &Registry,
    session: Vec<Arc<SessionFile>>,
    timeout: Duration,
) -> Result<Vec<Diagnostic>, crate::CheckError> {
    checker.check(code, compiled.call_default, registry.declarations_text(), session, timeout).await
}

const NO_CHECKER: &str =
    "not type-checked: this engine has no TypeScript checker (`codemode setup` installs one)";

/// What the check before a run found, for its outcome.
#[derive(Default)]
struct Checked {
    status: CheckStatus,
    diagnostics: Vec<Diagnostic>,
    warning: Option<String>,
}

/// The `type_error` of a program the compiler refused: located at the first error, whose text
/// leads the message.
fn type_error(diagnostics: Vec<Diagnostic>) -> ExecError {
    let first = &diagnostics[0];
    let more = match diagnostics.len() {
        1 => String::new(),
        n => format!(" (and {} more type error{})", n - 1, if n > 2 { "s" } else { "" }),
    };
    let message = format!("TS{}: {}{more} — nothing ran", first.code, first.message);
    let mut error = ExecError::new(ErrorKind::TypeError, message).at(first.line, first.column);
    error.diagnostics = diagnostics;
    error
}

/// Why a request cannot run at all under `limits`, before anything is parsed.
/// An execution's span learns how it ended and its sizes (never values, which may be private).
fn record_outcome(span: &tracing::Span, outcome: &Outcome) {
    if span.is_disabled() {
        return;
    }
    let ended = match (&outcome.error, &outcome.paused) {
        (Some(error), _) => error.kind.code(),
        (None, Some(_)) => "paused",
        (None, None) => "ok",
    };
    span.record("outcome", ended);
    span.record("tool_calls", outcome.stats.tool_calls);
    span.record("tool_result_bytes", outcome.stats.tool_result_bytes);
    span.record("returned_bytes", outcome.stats.returned_bytes);
    if outcome.error.is_some() {
        span.record("otel.status_code", "ERROR");
    }
}

fn refused(code: &str, limits: &Limits) -> Option<String> {
    if code.len() > limits.max_program_bytes {
        return Some(format!(
            "the program is {} bytes, more than the {} bytes accepted (max_program_bytes)",
            code.len(),
            limits.max_program_bytes
        ));
    }
    limits.impossible()
}
