//! The JS engine: QuickJS-ng through `rquickjs`. This module is the only place that names it;
//! everything the rest of the crate needs is [`Sandbox`] (a warm runtime + context + prelude),
//! [`Sandbox::run`] (one execution, start to outcome) and [`ScriptCache`].
//!
//! A sandbox serves exactly one execution and is then dropped, so nothing a program does (globals,
//! prototype edits, pending jobs, a heap that hit its limit) can reach the next one.

mod alloc;
mod cache;
mod convert;
mod errors;
mod host;
mod inspect;
mod json;
mod link;
mod prelude;
#[cfg(target_os = "linux")]
pub(crate) mod remote;
#[cfg(target_os = "linux")]
pub(crate) mod wire;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::context::intrinsic;
use rquickjs::module::{Declared, WriteOptions};
use rquickjs::promise::PromiseState;
use rquickjs::{
    Array, CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Persistent, Promise, Runtime,
    Value,
};

use crate::bridge::{Bridge, Next, Settlement, Target, ToolFailure};
use crate::error::{ErrorKind, ExecError};
use crate::limits::Limits;
use crate::outcome::Paused;
use crate::outcome::{LogLevel, LogLine, Outcome, Stats};
use crate::registry::Registry;
use crate::transpile::{self, Compiled, SCRIPT_NAME};

use self::alloc::{Budget, CountingAllocator};
pub(crate) use self::cache::{Script, ScriptCache};
use self::convert::{Overflow, Walker};
pub(crate) use self::errors::abort_error;
use self::errors::{describe_reason, internal_js, map_stack, pending_text};
use self::host::{host_functions, tool_result};
pub(crate) use self::link::{reference_note, Link};
use self::prelude::{load_prelude, prelude_bytecode};

/// The built-ins a program gets beyond the base objects. Chosen, not defaulted: typed arrays
/// (with `SharedArrayBuffer` and `Atomics`) and `DOMException` are left out. Agent glue code
/// rarely needs binary buffers, leaving out shared memory removes a whole class of timing and
/// blocking tricks, and the two together were about 60% of the cost of a fresh context here
/// (258 µs with every intrinsic against 88 µs with this set).
type SandboxIntrinsics = (
    intrinsic::Eval,
    intrinsic::Date,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::Promise,
    intrinsic::MapSet,
    intrinsic::Proxy,
    intrinsic::WeakRef,
    intrinsic::Performance,
);

/// Native stack of each sandbox thread. The engine's own stack limit (`Limits::stack_bytes`) is
/// kept well below it, so deep recursion is a JS `RangeError` and never a host overflow.
pub(crate) const THREAD_STACK_BYTES: usize = 32 << 20;

/// The program as JavaScript for an engine in another process (V8), which runs what this
/// process transpiled: from the cache, or transpiled now and cached. A session's program
/// comes transpiled for its session and is not cached.
pub(crate) fn compiled(
    code: &Arc<str>,
    compiled: Option<Compiled>,
    cache: &ScriptCache,
    session: bool,
) -> Result<Arc<Script>, ExecError> {
    if let Some(compiled) = compiled {
        let script = Arc::new(Script::new(Vec::new(), compiled));
        if !session {
            cache.put(Arc::clone(code), Arc::clone(&script));
        }
        return Ok(script);
    }
    if let Some(script) = cache.get(code) {
        return Ok(script);
    }
    let script = Arc::new(Script::new(Vec::new(), transpile::transpile(code)?));
    cache.put(Arc::clone(code), Arc::clone(&script));
    Ok(script)
}

/// The failure of a call whose handler returned JSON text that does not parse (`error`, where
/// it does not; `None` when only the engine refused it).
pub(crate) fn invalid_json(tool: &str, error: Option<serde_json::Error>) -> ToolFailure {
    let detail = error.map_or_else(|| "the sandbox could not parse it".to_string(), |e| e.to_string());
    ToolFailure {
        name: "ToolError",
        message: format!("{tool}: the tool returned invalid JSON: {detail}"),
        tool: tool.to_string(),
        code: Some("invalid_output".into()),
        path: None,
    }
}

/// An error another engine reported with its raw stack, at the agent's own positions.
pub(crate) fn map_error(e: &mut ExecError, compiled: &Compiled) {
    let Some(stack) = e.stack.take() else { return };
    let (stack, first) = map_stack(&stack, compiled);
    if let Some((line, column)) = first {
        e.line = Some(line);
        e.column = Some(column);
    }
    e.stack = Some(stack).filter(|s| !s.is_empty());
}

/// The error of an execution whose sandbox panicked.
pub(crate) fn sandbox_bug() -> ExecError {
    ExecError::new(ErrorKind::Internal, "the sandbox failed unexpectedly (a bug); the host is unaffected")
}

/// An execution that ended so leaves its session's sandbox unfit to run on: it is replaced.
pub(crate) fn resets_session(outcome: &Outcome) -> bool {
    outcome.error.as_ref().is_some_and(|e| {
        matches!(e.kind, ErrorKind::MemoryLimit | ErrorKind::Timeout | ErrorKind::Internal)
            || e.message.ends_with(SANDBOX_LOST)
    })
}

/// Ends the message of an execution that V8 could only stop by ending its isolate (a
/// cancelled loop, a limit passed in one): a session's sandbox went with it.
pub(crate) const SANDBOX_LOST: &str = " (its V8 isolate was ended to stop it, and its sandbox with it)";

/// Why the interrupt handler stopped the program.
#[derive(Default)]
struct Control {
    deadline: Cell<Option<Instant>>,
    cancel: RefCell<Option<Arc<AtomicBool>>>,
    abort: Cell<Option<ErrorKind>>,
    budget: Rc<Budget>,
    /// In a sealed worker: the channel whose host may send a cancellation while the program runs.
    #[cfg(target_os = "linux")]
    host: RefCell<Option<Rc<remote::Channel>>>,
}

impl Control {
    /// The reason to stop the program, if there is one now (and from now on).
    fn check(&self) -> Option<ErrorKind> {
        if self.abort.get().is_some() {
            return self.abort.get();
        }
        let kind = if self.budget.exceeded.get() {
            ErrorKind::MemoryLimit
        } else if self.cancelled() {
            ErrorKind::Cancelled
        } else if self.deadline.get().is_some_and(|d| Instant::now() >= d) {
            ErrorKind::Timeout
        } else {
            return None;
        };
        self.abort.set(Some(kind));
        Some(kind)
    }

    fn cancelled(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(host) = self.host.borrow().as_ref() {
            host.poll_cancel();
        }
        self.cancel.borrow().as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// The state of the execution in progress, reached from the host functions.
/// Unhandled rejections described and kept per run, and how many of them are logged.
const MAX_UNHANDLED: usize = 64;
const SHOWN_UNHANDLED: usize = 10;

struct Exec {
    bridge: Link,
    limits: Limits,
    logs: Vec<LogLine>,
    log_bytes: usize,
    logs_dropped: usize,
    /// A line was kept cut to fit the log.
    line_cut: bool,
    output_attempted: usize,
    /// Rejections not handled (yet), described; at most `MAX_UNHANDLED`.
    unhandled: Vec<(usize, Persistent<Value<'static>>)>,
    /// Further unhandled rejections, only counted: a program rejecting promises in a loop
    /// must not grow host memory or time.
    unhandled_more: usize,
    /// The program's own promise: its rejection is the run's error, not an unhandled one.
    main_promise: usize,
    /// The resolving functions of each tool call's promise, by call id.
    resolvers: HashMap<u64, Resolvers>,
}

/// `resolve` and `reject` of one tool call's promise, and the error made at the call (which
/// becomes the call's error if it fails, with the agent's stack).
struct Resolvers(Persistent<Function<'static>>, Persistent<Function<'static>>, Persistent<Value<'static>>);

impl Exec {
    /// Bytes a console line may take from the program's values: one more than the log has
    /// room for, so a line that would not fit is still recognised (and dropped), while the
    /// host never formats more than that.
    fn line_budget(&self) -> usize {
        let log = self.limits.max_log_bytes.saturating_sub(self.log_bytes);
        let output = self.limits.max_output_bytes.saturating_sub(self.output_attempted);
        log.min(output).saturating_add(1)
    }

    fn log(&mut self, level: LogLevel, message: String) -> Result<(), ErrorKind> {
        self.output_attempted += message.len();
        if self.output_attempted > self.limits.max_output_bytes {
            return Err(ErrorKind::OutputLimit);
        }
        self.keep(level, message);
        Ok(())
    }

    /// Keeps a line while the log has room, cutting one that is too long; counts it dropped
    /// otherwise. A tool's lines come here directly: a server flooding progress fills the log
    /// and is dropped, it does not end the program the way the program's own output would.
    fn keep(&mut self, level: LogLevel, message: String) {
        // Before any cut, so a cut never leaves part of a private value behind a token's place.
        let message = self.bridge.redact(message);
        let room = self.limits.max_log_bytes.saturating_sub(self.log_bytes);
        let message = if self.logs_dropped > 0 || self.logs.len() >= self.limits.max_log_lines {
            None
        } else if message.len() <= room {
            Some(message)
        } else if room >= MIN_CUT_LINE {
            // One line too long for what is left is kept, cut, rather than lost whole.
            self.line_cut = true;
            Some(cut_line(message, room, self.limits.max_log_bytes))
        } else {
            None
        };
        match message {
            Some(message) => {
                self.log_bytes += message.len();
                let line = LogLine { level, message };
                self.bridge.emit_log(&line);
                self.logs.push(line);
            }
            None => self.logs_dropped += 1,
        }
    }
}

/// The least room left in the log for which a line too long for it is kept, cut.
const MIN_CUT_LINE: usize = 1024;

/// `line` cut to `room` bytes, its end saying so.
fn cut_line(mut line: String, room: usize, cap: usize) -> String {
    let marker = format!("… [line cut at the log's {cap}-byte cap]");
    let mut end = room.saturating_sub(marker.len()).min(line.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.truncate(end);
    line.push_str(&marker);
    line
}

type ExecCell = Rc<RefCell<Option<Exec>>>;

/// A warm sandbox: runtime, context, prelude loaded, host functions installed.
pub(crate) struct Sandbox {
    // Persistent handles first: fields drop in order, and they must go before the runtime.
    /// A run paused for approval, waiting for [`Sandbox::resume`].
    suspended: Option<Suspended>,
    exports: Persistent<Object<'static>>,
    date_to_iso: Persistent<Function<'static>>,
    stack_getter: Option<Persistent<Function<'static>>>,
    /// Bytes of an uncaught error's message or stack kept: the run's result limit.
    error_max: Cell<usize>,
    context: Context,
    runtime: Runtime,
    control: Rc<Control>,
    exec: ExecCell,
    // Bytecode loaded without copying must outlive the runtime.
    _script: Option<Arc<Script>>,
    /// Programs it has run: more than one only for a session's sandbox.
    runs: u64,
}

impl Sandbox {
    /// Builds a sandbox with the prelude loaded. Costs about a context creation plus loading
    /// the prelude's bytecode.
    pub(crate) fn new() -> Result<Sandbox, ExecError> {
        let internal =
            |e: rquickjs::Error| ExecError::new(ErrorKind::Internal, format!("sandbox setup failed: {e}"));
        let prelude = prelude_bytecode().map_err(|e| ExecError::new(ErrorKind::Internal, e))?;
        let budget = Rc::new(Budget::default());
        budget.limit.set(usize::MAX);
        let runtime =
            Runtime::new_with_alloc(CountingAllocator::new(Rc::clone(&budget))).map_err(internal)?;
        let control = Rc::new(Control { budget, ..Control::default() });
        let exec: ExecCell = Rc::new(RefCell::new(None));
        {
            let control = Rc::clone(&control);
            runtime.set_interrupt_handler(Some(Box::new(move || control.check().is_some())));
        }
        {
            let exec = Rc::clone(&exec);
            runtime.set_host_promise_rejection_tracker(Some(Box::new(
                move |ctx: Ctx<'_>, promise: Value<'_>, reason: Value<'_>, handled: bool| {
                    let Ok(mut guard) = exec.try_borrow_mut() else { return };
                    let Some(exec) = guard.as_mut() else { return };
                    let key = unsafe { rquickjs::qjs::JS_VALUE_GET_PTR(promise.as_raw()) } as usize;
                    if handled {
                        // Keys are addresses, and a collected promise's address is reused: of
                        // the entries with this key only the newest can be this live promise.
                        match exec.unhandled.iter().rposition(|(k, _)| *k == key) {
                            Some(i) => drop(exec.unhandled.remove(i)),
                            None => exec.unhandled_more = exec.unhandled_more.saturating_sub(1),
                        }
                    } else if exec.unhandled.len() < MAX_UNHANDLED {
                        // Described at the end, and only the ones shown: a rejection's text can
                        // be as large as the heap.
                        exec.unhandled.push((key, Persistent::save(&ctx, reason)));
                    } else {
                        exec.unhandled_more += 1;
                    }
                },
            )));
        }
        let context = Context::builder().with::<SandboxIntrinsics>().build(&runtime).map_err(internal)?;
        let (exports, date_to_iso, stack_getter) = context
            .with(|ctx| -> rquickjs::Result<_> {
                let init = load_prelude(&ctx, prelude)?;
                let host = host_functions(&ctx, &control, &exec)?;
                let exports: Object = init.call((host,))?;
                // Built-ins the prelude captured before any program runs, so reading a result or an
                // error never calls a function the program could have replaced.
                let builtins: Object = exports.get("builtins")?;
                let date_to_iso: Function = builtins.get("dateToISOString")?;
                let stack_getter: Option<Function> = builtins.get("stackGetter")?;
                Ok((
                    Persistent::save(&ctx, exports),
                    Persistent::save(&ctx, date_to_iso),
                    stack_getter.map(|g| Persistent::save(&ctx, g)),
                ))
            })
            .map_err(internal)?;
        Ok(Sandbox {
            suspended: None,
            exports,
            date_to_iso,
            stack_getter,
            error_max: Cell::new(0),
            context,
            runtime,
            control,
            exec,
            _script: None,
            runs: 0,
        })
    }

    /// Gives programs `__codemodeSyscall(name)`, which makes a system call a sealed worker
    /// must not (`socket`, `openat`, `execve`) or spins where no interrupt reaches (`spin`):
    /// only for tests of the seal, in workers started with test hooks.
    #[cfg(target_os = "linux")]
    pub(crate) fn install_test_hooks(&self) {
        let _ = self.context.with(|ctx| -> rquickjs::Result<()> {
            let call = Function::new(ctx.clone(), |name: String| -> i64 {
                let path = c"/etc/hostname";
                let argv = [path.as_ptr(), std::ptr::null()];
                (unsafe {
                    match name.as_str() {
                        "socket" => libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as libc::c_long,
                        "openat" => libc::open(path.as_ptr(), libc::O_RDONLY) as libc::c_long,
                        "execve" => {
                            libc::execve(path.as_ptr(), argv.as_ptr(), std::ptr::null()) as libc::c_long
                        }
                        // Native code that never reaches the interrupt handler: only the host's
                        // kill stops it.
                        "spin" => loop {
                            std::hint::spin_loop();
                        },
                        _ => -1,
                    }
                }) as i64
            })?;
            ctx.globals().set("__codemodeSyscall", call)
        });
    }

    /// Runs one program to its outcome. Outside a session the sandbox must not run another:
    /// drop it (after the outcome is on its way, since freeing a runtime costs a full GC). A
    /// session's sandbox runs its next program with the globals the last one left.
    pub(crate) fn run(&mut self, job: RunJob) -> Outcome {
        let clock = job.clock();
        let RunJob { code, compiled, limits, bridge, cache, session, .. } = job;
        let names = Names::Registry(Arc::clone(bridge.registry()));
        self.start(Start { code, compiled, limits, link: Link::Local(bridge), cache, clock, session, names })
    }

    /// Runs one program whose host may be in this process or across a process boundary.
    pub(crate) fn start(&mut self, start: Start) -> Outcome {
        let Start { code, compiled, limits, link, cache, clock, session, names } = start;
        // A session's sandbox runs again: the last run's stop reason and timers must not carry over.
        self.control.abort.set(None);
        self.control.budget.exceeded.set(false);
        if self.runs > 0 {
            if let Err(e) = self.context.with(|ctx| -> rquickjs::Result<()> {
                let exports = self.exports.clone().restore(&ctx)?;
                exports.get::<_, Function>("reset")?.call::<_, ()>(())
            }) {
                return Outcome::failed(ExecError::new(
                    ErrorKind::Internal,
                    format!("the session's sandbox could not be reused: {e}"),
                ));
            }
        }
        self.runs += 1;
        self.control.deadline.set(Some(clock.deadline));
        *self.control.cancel.borrow_mut() = Some(link.cancel_flag());
        #[cfg(target_os = "linux")]
        {
            *self.control.host.borrow_mut() = match &link {
                Link::Remote(remote) => Some(Rc::clone(&remote.channel)),
                Link::Local(_) => None,
            };
        }
        let budget = &self.control.budget;
        let mut limit = budget.used.get().saturating_add(limits.memory_bytes);
        if let Some(cap) = session {
            // A session's heap is capped across its executions too; what an earlier one left
            // as garbage is not counted against this one.
            if budget.used.get() >= cap / 2 {
                self.runtime.run_gc();
            }
            limit = limit.min(cap);
        }
        budget.limit.set(limit);
        self.runtime.set_max_stack_size(limits.stack_bytes);
        self.error_max.set(limits.max_result_bytes);
        // Reference counting frees almost everything at once; the cycle collector only matters
        // for cyclic garbage, and in a short-lived sandbox running it every few hundred KiB of
        // allocation (QuickJS's default) mostly re-walks live data. Run it only past a quarter
        // of the memory budget.
        self.runtime.set_gc_threshold(limits.memory_bytes / 4);
        *self.exec.borrow_mut() = Some(Exec {
            bridge: link,
            limits: limits.clone(),
            logs: Vec::new(),
            log_bytes: 0,
            logs_dropped: 0,
            line_cut: false,
            output_attempted: 0,
            unhandled: Vec::new(),
            unhandled_more: 0,
            main_promise: 0,
            resolvers: HashMap::new(),
        });

        // A session's program is transpiled for it (its declarations made globals) and run as a
        // script: a module would stay in the runtime's module list for the session's life.
        let cached = if session.is_some() { None } else { cache.get(&code) };
        // Cached bytecode is loaded without copying: it must outlive the runtime.
        self._script = cached.clone();
        let cache = if session.is_some() { None } else { Some(&*cache) };
        let result = self.execute(&code, compiled, cached, cache, &names, &limits, clock.deadline);
        self.finish(result, Run { code, limits, clock })
    }

    /// Readies the sandbox for the thread calling, when it was made or used on another:
    /// QuickJS measures its stack limit from where the thread that made the runtime stood
    /// (rquickjs re-measures it only in its `parallel` build, which this crate does not use).
    #[cfg(target_os = "linux")]
    pub(crate) fn adopt(&self) {
        self.context.with(|ctx| {
            // SAFETY: the runtime is this sandbox's own and is in use on this thread only.
            unsafe { rquickjs::qjs::JS_UpdateStackTop(rquickjs::qjs::JS_GetRuntime(ctx.as_raw().as_ptr())) }
        });
    }

    /// Lets go of the worker's channel, which a run leaves behind for cancellations; true when
    /// the sandbox then holds nothing of the thread that ran it (no run paused or unfinished)
    /// and may be freed on another.
    #[cfg(target_os = "linux")]
    pub(crate) fn detach(&mut self) -> bool {
        *self.control.host.borrow_mut() = None;
        self.suspended.is_none() && self.exec.borrow().is_none()
    }

    /// Whether a run is paused in it, waiting for [`Sandbox::resume`].
    #[cfg(target_os = "linux")]
    pub(crate) fn is_paused(&self) -> bool {
        self.suspended.is_some()
    }

    /// Continues the run that paused for approval, with the decision on the call it waits on:
    /// the time it spent paused counts neither in its deadline nor in its duration.
    pub(crate) fn resume(&mut self, approve: bool, reason: Option<&str>) -> Outcome {
        let Some(Suspended { promise, script, mut run }) = self.suspended.take() else {
            return Outcome::failed(ExecError::new(
                ErrorKind::Internal,
                "no execution is paused in this sandbox",
            ));
        };
        run.clock.resume();
        self.control.deadline.set(Some(run.clock.deadline));
        self.exec.borrow_mut().as_mut().expect("a paused run keeps its state").bridge.decide(approve, reason);
        let result = self.context.with(|ctx| {
            let promise = promise.restore(&ctx).map_err(internal_js)?;
            self.drive(&ctx, promise, script, &run.limits, run.clock.deadline)
        });
        self.finish(result, run)
    }

    /// The outcome of a run that finished, failed, or paused for approval (then the sandbox
    /// keeps its state for [`Sandbox::resume`], and the outcome carries the logs so far).
    fn finish(&mut self, result: Result<Step, ExecError>, mut run: Run) -> Outcome {
        let result = match result {
            Ok(Step::Paused(promise, script)) => {
                let mut exec = self.exec.borrow_mut();
                let exec = exec.as_mut().expect("execution state present");
                let logs = std::mem::take(&mut exec.logs);
                let returned_bytes = logs.iter().map(|l| l.message.len()).sum::<usize>();
                let mut outcome = Outcome {
                    logs,
                    stats: Stats {
                        duration: run.clock.started.elapsed(),
                        queued: run.clock.waited,
                        returned_bytes: returned_bytes as u64,
                        ..Stats::default()
                    },
                    ..Outcome::empty()
                };
                if let Some(bridge) = exec.bridge.bridge() {
                    from_bridge(&mut outcome, bridge, &run.limits, true);
                }
                run.clock.pause();
                self.suspended = Some(Suspended { promise, script, run });
                return outcome;
            }
            Ok(Step::Done(returned)) => Ok(returned),
            Err(e) => Err(e),
        };
        let Run { code, limits, clock } = run;
        let mut exec = self.exec.borrow_mut().take().expect("execution state present");
        let (value, truncated, error, hint) = match result {
            Ok(r) => {
                let hint = if r.nothing { r.script.hint(&code) } else { None };
                (r.json, r.truncated, None, hint)
            }
            Err(e) => (serde_json::Value::Null, false, Some(e), None),
        };
        let mut logs = std::mem::take(&mut exec.logs);
        if exec.logs_dropped > 0 {
            logs.push(LogLine {
                level: LogLevel::Warn,
                message: format!(
                    "[codemode] {} more log line(s) dropped: the log is capped at {} lines and {} bytes",
                    exec.logs_dropped, limits.max_log_lines, limits.max_log_bytes
                ),
            });
        }
        let more = self.unhandled_lines(&exec, &limits, &mut logs);
        if more > 0 {
            logs.push(LogLine {
                level: LogLevel::Error,
                message: format!("[codemode] {more} more unhandled promise rejection(s) not shown"),
            });
        }
        let returned_bytes = value.to_string().len() + logs.iter().map(|l| l.message.len()).sum::<usize>();
        let stats = Stats {
            duration: clock.started.elapsed(),
            queued: clock.waited,
            returned_bytes: returned_bytes as u64,
            result_truncated: truncated,
            logs_truncated: exec.logs_dropped > 0 || exec.line_cut,
            ..Stats::default()
        };
        let mut outcome = Outcome { value, logs, error, stats, hint, ..Outcome::empty() };
        if let Some(bridge) = exec.bridge.bridge() {
            from_bridge(&mut outcome, bridge, &limits, false);
        }
        outcome
    }

    /// Logs the unhandled rejections within what the log caps leave (the lines the program
    /// wrote come first), and returns how many were not shown. After an interrupt, rejections
    /// are the interrupt's echo, not the program's, and none is reported.
    fn unhandled_lines(&self, exec: &Exec, limits: &Limits, logs: &mut Vec<LogLine>) -> usize {
        const PREFIX: &str = "Unhandled promise rejection: ";
        if self.control.abort.get().is_some() {
            return 0;
        }
        // The usual case: nothing to describe, so no engine work at the end of every run.
        if exec.unhandled.is_empty() {
            return exec.unhandled_more;
        }
        let mut room = limits.max_log_bytes.saturating_sub(exec.log_bytes);
        let mut lines = limits.max_log_lines.saturating_sub(logs.len());
        let mut shown = 0;
        let mut more = exec.unhandled_more;
        self.context.with(|ctx| {
            let texts = self.texts(&ctx);
            let builtins = self.builtins(&ctx);
            for (key, reason) in &exec.unhandled {
                if *key == exec.main_promise {
                    continue;
                }
                // Room for the prefix and a cut marker, or the line is only counted.
                let max = room.saturating_sub(PREFIX.len() + 32);
                if shown == SHOWN_UNHANDLED || lines == 0 || max == 0 {
                    more += 1;
                    continue;
                }
                let Ok(reason) = reason.clone().restore(&ctx) else { continue };
                let message =
                    format!("{PREFIX}{}", describe_reason(&ctx, &reason, &texts, builtins.as_ref(), max));
                room = room.saturating_sub(message.len());
                lines -= 1;
                shown += 1;
                logs.push(LogLine { level: LogLevel::Error, message });
            }
        });
        more
    }

    /// Bounded reads of program strings in this sandbox.
    fn texts<'js>(&self, ctx: &Ctx<'js>) -> convert::Texts<'js> {
        self.builtins(ctx).map(|b| b.texts()).unwrap_or_default()
    }

    /// The built-ins the prelude captured, as console formatting takes them.
    fn builtins<'js>(&self, ctx: &Ctx<'js>) -> Option<inspect::Builtins<'js>> {
        let exports = self.exports.clone().restore(ctx).ok()?;
        let holder: Value = exports.get("builtins").ok()?;
        Some(inspect::Builtins::new(ctx, holder))
    }

    /// The program as a module ready to evaluate: loaded from cached bytecode, or compiled now
    /// (and its bytecode cached for the next run of the same source).
    fn module<'js>(
        &self,
        ctx: &Ctx<'js>,
        code: &Arc<str>,
        compiled: Option<Compiled>,
        cached: Option<Arc<Script>>,
        cache: &ScriptCache,
    ) -> Result<(Module<'js, Declared>, Arc<Script>), ExecError> {
        if let Some(script) = cached {
            // Bytecode we compiled ourselves, from this exact crate version.
            let module = unsafe { Module::load(ctx.clone(), &script.bytecode) }.map_err(internal_js)?;
            return Ok((module, script));
        }
        let compiled = match compiled {
            Some(compiled) => compiled,
            None => transpile::transpile(code)?,
        };
        let module = Module::declare(ctx.clone(), SCRIPT_NAME, compiled.js.as_str())
            .catch(ctx)
            .map_err(|e| self.caught_error(ctx, e, &compiled, ErrorKind::Syntax))?;
        let bytecode = module.write(WriteOptions::default()).map_err(|e| {
            ExecError::new(ErrorKind::Internal, format!("could not serialize the compiled program: {e}"))
        })?;
        let script = Arc::new(Script::new(bytecode, compiled));
        cache.put(Arc::clone(code), Arc::clone(&script));
        Ok((module, script))
    }

    #[allow(clippy::too_many_arguments, reason = "one run's inputs, passed through once")]
    fn execute(
        &self,
        code: &Arc<str>,
        compiled: Option<Compiled>,
        cached: Option<Arc<Script>>,
        cache: Option<&ScriptCache>,
        names: &Names,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<Step, ExecError> {
        let exec = &self.exec;
        self.context.with(|ctx| {
            // Nothing runs before the program compiles: syntax errors come first. (A session's
            // program, a script, compiles as it starts; swc has parsed it already.)
            let (module, script) = match cache {
                Some(cache) => {
                    let (module, script) = self.module(&ctx, code, compiled, cached, cache)?;
                    (Some(module), script)
                }
                None => {
                    let compiled = compiled.ok_or_else(|| {
                        ExecError::new(
                            ErrorKind::Internal,
                            "a session's program reached its sandbox untranspiled",
                        )
                    })?;
                    (None, Arc::new(Script::new(Vec::new(), compiled)))
                }
            };
            let exports = self.exports.clone().restore(&ctx).map_err(internal_js)?;
            let install: Function = exports.get("install").map_err(internal_js)?;
            // Positions follow `Registry::entries`: namespaces in order, then tools by JS name.
            let mut first = 0;
            names.each(|js_name, tools| {
                let count = tools.len();
                if js_name == crate::skills::NAMESPACE {
                    let install: Function = exports.get("installSkills").map_err(internal_js)?;
                    install.call::<_, ()>((js_name, tools)).map_err(internal_js)?;
                } else {
                    install.call::<_, ()>((js_name, tools, first)).map_err(internal_js)?;
                }
                first += count;
                Ok(())
            })?;
            let start: Function = exports.get("start").map_err(internal_js)?;

            let promise: Promise = (|| {
                let main: Value = match module {
                    Some(module) => module.eval()?.0.get("default")?,
                    None => {
                        let mut options = rquickjs::context::EvalOptions::default();
                        options.strict = true;
                        options.filename = Some(SCRIPT_NAME.into());
                        ctx.eval_with_options(script.compiled.js.as_str(), options)?
                    }
                };
                start.call((main, script.compiled.call_default))
            })()
            .catch(&ctx)
            .map_err(|e| self.abort_or(&ctx, e, &script.compiled, limits))?;
            if let Some(exec) = exec.borrow_mut().as_mut() {
                exec.main_promise = unsafe { rquickjs::qjs::JS_VALUE_GET_PTR(promise.as_raw()) } as usize;
            }

            self.drive(&ctx, promise, script, limits, deadline)
        })
    }

    /// Runs the event loop until the program's promise settles, the run is stopped, or nothing
    /// can happen until someone decides on a call awaiting approval.
    fn drive<'js>(
        &self,
        ctx: &Ctx<'js>,
        promise: Promise<'js>,
        script: Arc<Script>,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<Step, ExecError> {
        let exec = &self.exec;
        let control = &self.control;
        let ctx = ctx.clone();
        let exports = self.exports.clone().restore(&ctx).map_err(internal_js)?;
        let fire: Function = exports.get("fire").map_err(internal_js)?;
        let tool_error: Function = exports.get("toolError").map_err(internal_js)?;
        let mut jobs = 0u32;
        loop {
            while ctx.execute_pending_job() {
                jobs = jobs.wrapping_add(1);
                // A chain of tiny jobs may never reach the engine's interrupt poll.
                if control.abort.get().is_some() || (jobs.is_multiple_of(1024) && control.check().is_some()) {
                    break;
                }
            }
            if let Some(kind) = control.check() {
                return Err(abort_error(kind, limits));
            }
            match promise.state() {
                PromiseState::Resolved => {
                    let value: Value = promise
                        .result()
                        .and_then(Result::ok)
                        .unwrap_or_else(|| Value::new_undefined(ctx.clone()));
                    let date_to_iso = self.date_to_iso.clone().restore(&ctx).ok();
                    let walker = Walker::new(
                        ctx.clone(),
                        limits.max_result_bytes,
                        Overflow::Cut,
                        date_to_iso,
                        self.texts(&ctx),
                    );
                    return walker
                        .convert(&value)
                        .map(|c| {
                            Step::Done(Returned {
                                json: c.json,
                                truncated: c.truncated,
                                nothing: value.is_undefined(),
                                script: Arc::clone(&script),
                            })
                        })
                        .map_err(|m| ExecError::new(ErrorKind::InvalidResult, m));
                }
                PromiseState::Rejected => {
                    let reason: Value = match promise.result::<Value>() {
                        Some(Err(rquickjs::Error::Exception)) => ctx.catch(),
                        Some(Ok(v)) => v,
                        _ => Value::new_undefined(ctx.clone()),
                    };
                    return Err(self.exception_error(&ctx, reason, &script.compiled));
                }
                PromiseState::Pending => {}
            }
            let next = exec.borrow_mut().as_mut().expect("execution state").bridge.next(deadline);
            match next {
                Next::Settle(id, settlement) => {
                    let resolvers = match settlement {
                        Settlement::Timer => None,
                        _ => exec.borrow_mut().as_mut().and_then(|e| e.resolvers.remove(&id)),
                    };
                    let settle = |ok: bool, value| -> rquickjs::Result<()> {
                        let Some(Resolvers(resolve, reject, _)) = &resolvers else { return Ok(()) };
                        let f = if ok { resolve } else { reject };
                        f.clone().restore(&ctx)?.call::<(Value,), ()>((value,))
                    };
                    let reject = |failure: ToolFailure| {
                        let spec =
                            ctx.json_parse(serde_json::to_string(&failure).expect("failure serializes"))?;
                        let site = match &resolvers {
                            Some(Resolvers(_, _, site)) => site.clone().restore(&ctx)?,
                            None => Value::new_undefined(ctx.clone()),
                        };
                        settle(false, tool_error.call::<_, Value>((spec, site))?)
                    };
                    let delivered = match settlement {
                        Settlement::Value { json, tool } => match tool_result(&ctx, &json) {
                            Ok(v) => settle(true, v),
                            Err(_) => {
                                if let Some(kind) = control.check() {
                                    return Err(abort_error(kind, limits));
                                }
                                // Only a handler's own JSON text can be malformed; say where.
                                let error = serde_json::from_str::<serde::de::IgnoredAny>(&json).err();
                                reject(invalid_json(&tool, error))
                            }
                        },
                        Settlement::Error(failure) => reject(failure),
                        Settlement::Timer => fire.call::<_, ()>((id as f64,)),
                    };
                    if let Err(e) = delivered.catch(&ctx) {
                        // A timer callback threw: the program fails as it would in Node.
                        return Err(self.abort_or(&ctx, e, &script.compiled, limits));
                    }
                }
                Next::Log(line) => {
                    exec.borrow_mut().as_mut().expect("execution state").keep(line.level, line.message);
                }
                Next::Idle => {
                    return Err(ExecError::new(
                        ErrorKind::Deadlock,
                        "the program is waiting on a promise that can never settle: no tool call or timer is pending",
                    ));
                }
                Next::Paused => return Ok(Step::Paused(Persistent::save(&ctx, promise), script)),
                Next::TimedOut => return Err(abort_error(ErrorKind::Timeout, limits)),
                Next::Cancelled => return Err(abort_error(ErrorKind::Cancelled, limits)),
            }
        }
    }

    /// An error raised while running: the interrupt handler's reason when it stopped the
    /// program, else the program's own exception.
    fn abort_or<'js>(
        &self,
        ctx: &Ctx<'js>,
        e: CaughtError<'js>,
        compiled: &Compiled,
        limits: &Limits,
    ) -> ExecError {
        match self.control.check() {
            Some(kind) => abort_error(kind, limits),
            None => self.caught_error(ctx, e, compiled, ErrorKind::Exception),
        }
    }

    /// A caught JS error as an [`ExecError`] at the agent's own line and column.
    fn caught_error<'js>(
        &self,
        ctx: &Ctx<'js>,
        e: CaughtError<'js>,
        compiled: &Compiled,
        kind: ErrorKind,
    ) -> ExecError {
        let value = match e {
            CaughtError::Exception(ex) => ex.into_value(),
            CaughtError::Value(v) => v,
            CaughtError::Error(e) => return ExecError::new(ErrorKind::Internal, e.to_string()),
        };
        let mut err = self.exception_error(ctx, value, compiled);
        err.kind = kind;
        err
    }

    fn exception_error<'js>(&self, ctx: &Ctx<'js>, reason: Value<'js>, compiled: &Compiled) -> ExecError {
        let max = self.error_max.get();
        if !reason.is_object() {
            // As a console shows it: `Uncaught Symbol(why)`, `Uncaught 10n`, never a host address.
            let text = match self.builtins(ctx) {
                Some(builtins) => inspect::primitive(ctx, &reason, &builtins, max),
                None => String::from("a value"),
            };
            let mut e = ExecError::new(ErrorKind::Exception, format!("Uncaught {text}"));
            e.name = Some("Error".into());
            return e;
        }
        // Reading a Proxy would run its traps, program code, on the host's account.
        if reason.as_object().is_some_and(|o| o.is_proxy()) {
            let mut e = ExecError::new(ErrorKind::Exception, "Uncaught Proxy (its traps are not run)");
            e.name = Some("Error".into());
            return e;
        }
        let getter = self.stack_getter.clone().and_then(|g| g.restore(ctx).ok());
        let texts = self.texts(ctx);
        let (name, message, stack) = convert::error_parts(ctx, &reason, getter.as_ref(), &texts, max);
        let mut err = ExecError::new(ErrorKind::Exception, message);
        // A tool call's error: which tool, and the handler's code.
        let own_string = |key: &str| {
            convert::own_data_property(ctx, &reason, key)
                .filter(Value::is_string)
                .map(|v| texts.read(&v, 1024))
        };
        err.tool = own_string("tool");
        err.code = own_string("code").filter(|_| err.tool.is_some());
        // `sheet is not defined` for the namespace `sheets`.
        if name == "ReferenceError" {
            let note = err.message.strip_suffix(" is not defined").and_then(|undefined| {
                let exec = self.exec.try_borrow().ok()?;
                exec.as_ref()?.bridge.reference_note(undefined)
            });
            if let Some(note) = note {
                err.message.push_str(&note);
            }
        }
        if let Some((stack, first)) = stack.map(|s| map_stack(&s, compiled)) {
            if let Some((line, column)) = first {
                err = err.at(line, column);
            }
            err.stack = Some(stack).filter(|s| !s.is_empty());
        }
        err.name = Some(name);
        err
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A paused run's state holds engine values (its promise, its calls' resolvers): they
        // must go before the runtime does.
        self.suspended = None;
        self.exec.borrow_mut().take();
    }
}

/// Where a run's event loop stopped without an error.
enum Step {
    Done(Returned),
    /// Waiting for a decision on a call: the program's promise, to continue it.
    Paused(Persistent<Promise<'static>>, Arc<Script>),
}

/// What a run needs to finish, kept while it is paused.
struct Run {
    code: Arc<str>,
    limits: Limits,
    clock: Clock,
}

/// A run's times: when it started and its deadline, which stop while it is paused for approval
/// (the time it spends paused counts neither in its deadline nor in its duration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub(crate) started: Instant,
    /// The wait for a free sandbox thread, which the deadline does not count.
    pub(crate) waited: Duration,
    pub(crate) deadline: Instant,
    /// Set while paused: when it paused, and the time it had left.
    paused: Option<(Instant, Duration)>,
}

impl Clock {
    pub(crate) fn new(started: Instant, waited: Duration, deadline: Instant) -> Clock {
        Clock { started, waited, deadline, paused: None }
    }

    pub(crate) fn pause(&mut self) {
        let now = Instant::now();
        self.paused = Some((now, self.deadline.saturating_duration_since(now)));
    }

    pub(crate) fn resume(&mut self) {
        if let Some((at, left)) = self.paused.take() {
            let now = Instant::now();
            self.started += now.saturating_duration_since(at);
            self.deadline = now + left;
        }
    }
}

/// A run paused for approval.
struct Suspended {
    promise: Persistent<Promise<'static>>,
    script: Arc<Script>,
    run: Run,
}

/// The tool namespaces a program sees: its registry's, or (in a sealed worker, which has no
/// registry) their names as the host sent them.
pub(crate) enum Names {
    Registry(Arc<Registry>),
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    List(Arc<Vec<(String, Vec<String>)>>),
}

impl Names {
    /// Namespaces in order, each with its tools' JS names in order: the order
    /// [`Registry::entries`] numbers tools in.
    pub(crate) fn each(
        &self,
        mut f: impl FnMut(&str, Vec<&str>) -> Result<(), ExecError>,
    ) -> Result<(), ExecError> {
        match self {
            Names::Registry(registry) => {
                for (js_name, ns) in registry.namespaces() {
                    f(js_name, ns.tools.keys().map(String::as_str).collect())?;
                }
            }
            Names::List(list) => {
                for (js_name, tools) in list.iter() {
                    f(js_name, tools.iter().map(String::as_str).collect())?;
                }
            }
        }
        Ok(())
    }
}

/// One run as a sandbox takes it, wherever its host is.
pub(crate) struct Start {
    pub(crate) code: Arc<str>,
    pub(crate) compiled: Option<Compiled>,
    pub(crate) limits: Limits,
    pub(crate) link: Link,
    pub(crate) cache: Arc<ScriptCache>,
    pub(crate) clock: Clock,
    pub(crate) session: Option<usize>,
    pub(crate) names: Names,
}

/// Fills in what the bridge knows: the calls and their bytes, the call a paused run waits on,
/// the calls still pending when a run timed out or was cancelled. One place for a sandbox in
/// this process and for the host of a sealed one.
pub(crate) fn from_bridge(outcome: &mut Outcome, bridge: &mut Bridge, limits: &Limits, paused: bool) {
    if let Some(e) =
        outcome.error.as_mut().filter(|e| matches!(e.kind, ErrorKind::Timeout | ErrorKind::Cancelled))
    {
        e.pending = bridge.pending();
        e.message.push_str(&pending_text(&e.pending));
    }
    let stats = &mut outcome.stats;
    stats.tool_calls = bridge.calls().min(limits.max_tool_calls);
    stats.tool_result_bytes = bridge.tool_result_bytes;
    stats.tool_result_texts = bridge.samples.clone();
    if paused {
        let awaiting = bridge.awaiting().expect("a paused run waits on a call");
        outcome.paused = Some(Paused {
            approval: awaiting.approval.clone(),
            tool: awaiting.tool().to_string(),
            arguments: awaiting.args.clone(),
            pending_since: crate::outcome::rfc3339(awaiting.at),
        });
        stats.tokenized = bridge.tokenized.clone();
        outcome.calls = bridge.calls_so_far();
    } else {
        stats.tokenized = std::mem::take(&mut bridge.tokenized);
        outcome.calls = bridge.take_calls();
    }
}

/// What a program that finished returned.
struct Returned {
    json: serde_json::Value,
    truncated: bool,
    /// It returned `undefined`: no `return`, or a bare one.
    nothing: bool,
    /// The program it ran.
    script: Arc<Script>,
}

/// Inputs of one run, as prepared by the engine.
pub(crate) struct RunJob {
    pub(crate) code: Arc<str>,
    /// The program already transpiled (when it was type-checked first), else `None`.
    pub(crate) compiled: Option<Compiled>,
    pub(crate) limits: Limits,
    pub(crate) bridge: Bridge,
    pub(crate) cache: Arc<ScriptCache>,
    pub(crate) started: Instant,
    /// When the job was sent to the sandbox threads, so the wait for one is not charged.
    pub(crate) queued: Option<Instant>,
    /// For a session's program: the heap its sandbox may hold in all (`compiled` is then the
    /// session's transpilation, and the script cache is not used).
    pub(crate) session: Option<usize>,
}

impl RunJob {
    /// The run's clock from now: the deadline counts the time before the queue (the type
    /// check) and the run, not the wait for a free sandbox thread, so a burst of executions
    /// does not time out in line.
    pub(crate) fn clock(&self) -> Clock {
        let waited = self.queued.map_or(Duration::ZERO, |q| Instant::now().saturating_duration_since(q));
        Clock::new(self.started, waited, self.started + waited + self.limits.timeout)
    }
}
