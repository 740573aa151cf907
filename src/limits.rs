//! Per-execution limits. Every limit is enforced preemptively: the program is stopped by the
//! host, whatever it catches.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one execution may use. Defaults are chosen for agent programs: seconds of glue code
/// over tool results, not long computations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock deadline, from the start of the execution (default 10 s). Enforced by the
    /// engine's interrupt handler, which QuickJS polls while running bytecode and inside regex
    /// matching, so `while (true) {}`, catastrophic regexes and long sorts end at the deadline.
    /// It does not interrupt one long native call that never polls (a single huge
    /// `String.prototype.repeat` finishes, or hits the memory limit, first).
    /// Waiting on tool calls also ends at the deadline; handlers still running are dropped. A
    /// handler's first poll runs on the sandbox thread (see [`ToolHandler`](crate::ToolHandler)),
    /// so a handler that computes for a long time before its first `.await` delays the deadline
    /// by that long.
    #[serde(with = "millis", rename = "timeout_ms")]
    pub timeout: Duration,
    /// Bytes the sandbox's heap may hold (default 64 MiB). Counted by the sandbox's own
    /// allocator; an allocation past it fails, and the run ends with `memory_limit` even if
    /// the program catches the out-of-memory error. Host-side buffers (tool results before they
    /// are parsed into the sandbox) are not counted.
    pub memory_bytes: usize,
    /// Bytes of native stack the engine may use (default 512 KiB). Deep recursion becomes a
    /// catchable `RangeError`; the sandbox thread's own stack is far larger, so the host never
    /// overflows.
    pub stack_bytes: usize,
    /// Tool calls one execution may start (default 1,000). The call past it ends the run with
    /// `tool_call_limit`.
    pub max_tool_calls: u32,
    /// Tool calls in flight at once (default 16). Further calls wait in order; they are not
    /// errors.
    pub max_concurrent_tool_calls: usize,
    /// Bytes of log text kept (default 64 KiB). Later lines are dropped and one marker line
    /// says how many.
    pub max_log_bytes: usize,
    /// Log lines kept (default 1,000), with the same marker.
    pub max_log_lines: usize,
    /// Bytes of the JSON result (default 256 KiB). A larger result is cut structurally: it stays
    /// valid JSON, and each cut is marked with a `"…"` string saying what was dropped.
    pub max_result_bytes: usize,
    /// Bytes of one tool call's JSON arguments (default 8 MiB). Larger arguments reject the
    /// call with a `TypeError`; the handler is not called.
    pub max_tool_argument_bytes: usize,
    /// Hard ceiling on everything the program tries to log (default 16 MiB). A log flood past
    /// it ends the run with `output_limit` instead of spinning until the deadline.
    pub max_output_bytes: usize,
    /// Whether the program is type-checked before it runs (default `strict`: a program with
    /// type errors does not run). Takes effect when the engine has a
    /// [`TypeChecker`](crate::TypeChecker); without one, programs run unchecked and
    /// `stats.typecheck` says so. A check costs a few milliseconds of the deadline.
    pub typecheck: TypeCheck,
    /// Bytes of program text accepted (default 1 MiB). A larger program is refused with
    /// `limit` before it is parsed: agent programs are a few kilobytes, and parsing costs host
    /// memory that no sandbox limit counts.
    pub max_program_bytes: usize,
}

/// The smallest memory limit accepted: below it no program can compile. A request asking for
/// less is refused with `limit` instead of failing in the compiler as "out of memory".
pub const MIN_MEMORY_BYTES: usize = 1 << 20;

impl Limits {
    /// Why these limits cannot run any program, if they cannot.
    pub(crate) fn impossible(&self) -> Option<String> {
        (self.memory_bytes < MIN_MEMORY_BYTES).then(|| {
            format!(
                "a memory limit of {} bytes is below the {MIN_MEMORY_BYTES} bytes any program needs (memory_mb must be at least 1)",
                self.memory_bytes
            )
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            stack_bytes: 512 << 10,
            max_tool_calls: 1_000,
            max_concurrent_tool_calls: 16,
            max_log_bytes: 64 << 10,
            max_log_lines: 1_000,
            max_result_bytes: 256 << 10,
            max_tool_argument_bytes: 8 << 20,
            max_output_bytes: 16 << 20,
            typecheck: TypeCheck::Strict,
            max_program_bytes: 1 << 20,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Some of the limits, in the units people write (`codemode.toml`'s `[limits]`, the daemon's
/// per-execution `limits`): unset fields leave the base as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    /// Wall-clock deadline, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Sandbox memory, in MiB.
    pub memory_mb: Option<usize>,
    /// Tool calls per execution.
    pub max_tool_calls: Option<u32>,
    /// Tool calls in flight at once.
    pub max_concurrent_tool_calls: Option<usize>,
    /// Bytes of console output kept.
    pub max_log_bytes: Option<usize>,
    /// Bytes of the JSON result.
    pub max_result_bytes: Option<usize>,
    /// `"strict"`, `"warn"` or `"off"`. A choice, not a limit: tightening takes it as given.
    pub typecheck: Option<TypeCheck>,
}

impl LimitsPatch {
    /// `base` with this patch's values.
    pub fn apply(&self, base: &Limits) -> Limits {
        self.merge(base, |_, v| v)
    }

    /// `base` with this patch's values where they are lower: a patch can tighten, not loosen.
    pub fn tighten(&self, base: &Limits) -> Limits {
        self.merge(base, std::cmp::min)
    }

    fn merge(&self, base: &Limits, pick: fn(u128, u128) -> u128) -> Limits {
        let mut l = base.clone();
        // Every field fits in u128, so one `pick` serves all of them.
        let set = |slot: u128, v: Option<u128>| v.map_or(slot, |v| pick(slot, v));
        l.timeout = Duration::from_millis(
            set(l.timeout.as_millis(), self.timeout_ms.map(u128::from)).min(u64::MAX as u128) as u64,
        );
        l.memory_bytes = set(l.memory_bytes as u128, self.memory_mb.map(|mb| (mb as u128) << 20))
            .min(usize::MAX as u128) as usize;
        l.max_tool_calls = set(l.max_tool_calls.into(), self.max_tool_calls.map(u128::from)) as u32;
        l.max_concurrent_tool_calls =
            set(l.max_concurrent_tool_calls as u128, self.max_concurrent_tool_calls.map(|v| v as u128))
                as usize;
        l.max_log_bytes = set(l.max_log_bytes as u128, self.max_log_bytes.map(|v| v as u128)) as usize;
        l.max_result_bytes =
            set(l.max_result_bytes as u128, self.max_result_bytes.map(|v| v as u128)) as usize;
        l.typecheck = self.typecheck.unwrap_or(l.typecheck);
        l
    }
}

impl From<&Limits> for LimitsPatch {
    fn from(l: &Limits) -> Self {
        LimitsPatch {
            timeout_ms: Some(l.timeout.as_millis().min(u64::MAX as u128) as u64),
            memory_mb: Some(l.memory_bytes >> 20),
            max_tool_calls: Some(l.max_tool_calls),
            max_concurrent_tool_calls: Some(l.max_concurrent_tool_calls),
            max_log_bytes: Some(l.max_log_bytes),
            max_result_bytes: Some(l.max_result_bytes),
            typecheck: Some(l.typecheck),
        }
    }
}

/// Whether programs are type-checked before they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TypeCheck {
    /// A program with type errors does not run: its outcome is a `type_error` with the
    /// diagnostics. The default.
    #[default]
    Strict,
    /// The program runs; the diagnostics come back beside its result.
    Warn,
    /// No check.
    Off,
}

impl std::str::FromStr for TypeCheck {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(TypeCheck::Strict),
            "warn" => Ok(TypeCheck::Warn),
            "off" => Ok(TypeCheck::Off),
            other => Err(format!("typecheck must be \"strict\", \"warn\" or \"off\", not {other:?}")),
        }
    }
}
