//! What an execution returns.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ExecError;

/// Severity of a console line: the `console` method that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `console.log`
    Log,
    /// `console.info`
    Info,
    /// `console.warn`
    Warn,
    /// `console.error`
    Error,
    /// `console.debug`
    Debug,
}

impl LogLevel {
    pub(crate) fn parse(s: &str) -> LogLevel {
        match s {
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "debug" => LogLevel::Debug,
            _ => LogLevel::Log,
        }
    }

    /// Its name, as serialized: `log`, `info`, `warn`, `error`, `debug`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Log => "log",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Debug => "debug",
        }
    }
}

/// One captured console line, formatted like Node's `console.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Which console method wrote it.
    pub level: LogLevel,
    /// The formatted text.
    pub message: String,
}

/// What one execution cost and moved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Wall-clock time from the request to the outcome.
    #[serde(with = "micros_as_ms", rename = "duration_ms")]
    pub duration: Duration,
    /// Time the execution waited for a free sandbox thread; the deadline does not count it.
    #[serde(with = "micros_as_ms", rename = "queued_ms")]
    pub queued: Duration,
    /// Tool calls the program started.
    pub tool_calls: u32,
    /// Bytes of JSON that tools returned into the sandbox (they never reach the model).
    pub tool_result_bytes: u64,
    /// Bytes of the JSON result plus the log text (what reaches the model).
    pub returned_bytes: u64,
    /// True when the result was cut to fit `max_result_bytes`.
    pub result_truncated: bool,
    /// True when log lines were dropped to fit the log caps.
    pub logs_truncated: bool,
    /// What the type check did.
    pub typecheck: CheckStatus,
    /// Values replaced by tokens in what this execution returned (result, logs, error), by kind
    /// (`email`, `phone`, …), when privacy is on.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tokenized: std::collections::BTreeMap<String, u64>,
    /// Things the caller should know that are not errors (a check that could not run, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub(crate) tool_result_texts: TextSample,
}

/// What the type check did for one execution.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// `typecheck = "off"`, or the program never reached the check (a syntax error).
    #[default]
    NotChecked,
    /// The program type-checked.
    Passed,
    /// The compiler found errors: in `strict` mode the program did not run (`type_error`); in
    /// `warn` mode it ran and the outcome's `diagnostics` list them.
    Failed,
    /// The engine has no checker (TypeScript is not installed), or it failed on this program
    /// in `warn` mode; the program ran unchecked and `warnings` says why.
    Unavailable,
}

/// Token counts, o200k_base (the GPT-4o tokenizer), computed on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Tokens of all tool results, as JSON: what direct tool calling would put in context.
    pub tool_results: u64,
    /// Tokens of the result and logs: what code mode puts in context.
    pub returned: u64,
    /// True when the counts are not exact: estimated without the tokenizer
    /// ([`Outcome::estimated_tokens`], what reports carry unless asked for exact counts), or
    /// `tool_results` extrapolated from a sample (more than [`TOKEN_SAMPLE_BYTES`] of them).
    pub estimated: bool,
}

/// Bytes of tool-result text an outcome keeps for counting tokens later; beyond it the count
/// is extrapolated from the kept part.
pub const TOKEN_SAMPLE_BYTES: usize = 8 << 20;

/// The tool results of one execution, kept (up to a cap) so tokens can be counted only when asked.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextSample {
    texts: Vec<Arc<str>>,
    kept: usize,
}

impl TextSample {
    pub(crate) fn push(&mut self, text: &Arc<str>) {
        if self.kept + text.len() <= TOKEN_SAMPLE_BYTES {
            self.kept += text.len();
            self.texts.push(Arc::clone(text));
        }
    }
}

/// The result of one execution. `error` is `None` exactly when the program finished normally.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// The program's result as JSON (`null` when it returned nothing or failed).
    pub value: Value,
    /// Captured console lines, in order.
    pub logs: Vec<LogLine>,
    /// Why the execution failed, if it did.
    pub error: Option<ExecError>,
    /// Costs and sizes.
    pub stats: Stats,
    /// In `warn` mode, the type errors of a program that ran anyway. (In `strict` mode they are
    /// the `type_error`'s `diagnostics`, and the program did not run.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<crate::error::Diagnostic>,
    /// Advice that is not an error: a program that returned nothing while its last statement
    /// was an expression is told where to put `return`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Every tool call the program made, in order, when the execution was asked to record them
    /// ([`ExecuteOptions::audit`](crate::ExecuteOptions::audit)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallRecord>,
    /// The session the execution ran in, if it ran in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
    /// Set when the execution is not over: it waits for a person to decide on a call of a tool
    /// that needs approval ([`Engine::resume`](crate::Engine::resume) continues it). `logs`
    /// then hold what the program wrote so far, and the next outcome the lines after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
}

/// The call an execution waits on a decision for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paused {
    /// What to answer with: [`Engine::resume`](crate::Engine::resume), the daemon's
    /// `code/resume`, MCP's `resume_execution`.
    pub approval: String,
    /// `namespace.tool`.
    pub tool: String,
    /// The arguments the program passed, after validation (private values tokenized when
    /// privacy is on).
    pub arguments: Value,
    /// When the call was made, as an RFC 3339 UTC timestamp.
    pub pending_since: String,
}

/// One tool call of an execution, as an audit sees it: what was called, with how much, and
/// what came of it. The arguments themselves are not kept (they may hold private data); their
/// SHA-256 tells whether two calls sent the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// `namespace.tool`.
    pub tool: String,
    /// Bytes of the arguments as JSON.
    pub argument_bytes: u64,
    /// SHA-256 of the arguments' JSON text, in hex.
    pub argument_sha256: String,
    /// When the call was made, in milliseconds after the execution started.
    pub started_ms: f64,
    /// How long it took; `None` when it had not finished as the execution ended.
    pub duration_ms: Option<f64>,
    /// `ok`, `error` (the tool failed, or its arguments did not validate) or `pending`.
    pub outcome: String,
    /// The error's code (`not_found`, `invalid_arguments`, …) when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Bytes of the result's JSON when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
    /// For a tool that needs approval: `pending`, `approved`, `rejected`, or `expired` (nobody
    /// decided within the approval timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// Where an execution of a session stands in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's name, as the caller gave it.
    pub id: String,
    /// This execution's number in the session, from 1; it starts again at 1 when the session
    /// starts again after it ended (`reset.reason` is `evicted` or `expired`).
    pub execution: u64,
    /// Set when the session lost state at this execution: what and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<SessionReset>,
}

/// Why a session lost state, and which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReset {
    /// `memory_limit`, `timeout` or `internal`: this execution ended so, its sandbox was
    /// replaced, declarations and globals are gone, stored values remain. `evicted` (too many
    /// live sessions, this one the least recently used) or `expired` (idle past the timeout):
    /// the session had ended before this execution, which starts it again empty.
    pub reason: String,
    /// The same, in a sentence.
    pub message: String,
}

impl Outcome {
    /// True when the program finished without error.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.paused.is_none()
    }

    /// This outcome with `earlier` lines first: what a caller that resumed a paused execution
    /// shows, the lines written before the pause and then the ones after.
    pub fn after_logs(mut self, mut earlier: Vec<LogLine>) -> Outcome {
        if !earlier.is_empty() {
            earlier.append(&mut self.logs);
            self.logs = earlier;
        }
        self
    }

    pub(crate) fn failed(error: ExecError) -> Outcome {
        Outcome { error: Some(error), ..Outcome::empty() }
    }

    /// No value, no logs, no error: what an outcome is before anything is filled in.
    pub(crate) fn empty() -> Outcome {
        Outcome {
            value: Value::Null,
            logs: Vec::new(),
            error: None,
            stats: Stats::default(),
            diagnostics: Vec::new(),
            hint: None,
            calls: Vec::new(),
            session: None,
            paused: None,
        }
    }

    /// Counts tokens with o200k_base. The first call in a process loads the tokenizer (about
    /// 70 ms), and counting costs about 8 ms per 100 KB of tool results: executions never pay
    /// for it unless a caller asks.
    #[cfg(feature = "tokens")]
    pub fn tokens(&self) -> Tokens {
        let bpe = tokenizer();
        self.count_with(|text| bpe.encode_ordinary(text).len(), false)
    }

    /// [`tokens`](Self::tokens) estimated by [`estimate_tokens`] in one pass over the text,
    /// without the tokenizer; `estimated` is true.
    pub fn estimated_tokens(&self) -> Tokens {
        self.count_with(estimate_tokens, true)
    }

    fn count_with(&self, count: impl Fn(&str) -> usize, estimate: bool) -> Tokens {
        let sample = &self.stats.tool_result_texts;
        let mut tool_results: u64 = sample.texts.iter().map(|t| count(t) as u64).sum();
        let sampled = (sample.kept as u64) < self.stats.tool_result_bytes;
        if sampled && sample.kept > 0 {
            tool_results = (tool_results as f64 * self.stats.tool_result_bytes as f64 / sample.kept as f64)
                .round() as u64;
        }
        let mut returned = count(&self.value.to_string()) as u64;
        for line in &self.logs {
            returned += count(&line.message) as u64;
        }
        Tokens { tool_results, returned, estimated: estimate || sampled }
    }

    /// The outcome as one JSON object: `ok`, `value`, `logs`, `error`, `stats` (with `tokens`
    /// estimated, see [`estimated_tokens`](Self::estimated_tokens)). This is the shape of
    /// `codemode run --json` and of the daemon's `code/execute` result.
    pub fn to_report(&self) -> Value {
        self.report(self.estimated_tokens())
    }

    /// [`to_report`](Self::to_report) with the exact token counts (o200k_base), at the cost
    /// [`tokens`](Self::tokens) says.
    #[cfg(feature = "tokens")]
    pub fn to_report_exact(&self) -> Value {
        self.report(self.tokens())
    }

    fn report(&self, tokens: Tokens) -> Value {
        let mut stats = serde_json::to_value(&self.stats).expect("stats serialize");
        stats["tokens"] = serde_json::to_value(tokens).expect("tokens serialize");
        let mut report = serde_json::json!({
            "ok": self.is_ok(),
            "value": self.value,
            "logs": self.logs,
            "error": self.error,
            "stats": stats,
        });
        if let Some(hint) = &self.hint {
            report["hint"] = Value::String(hint.clone());
        }
        if !self.diagnostics.is_empty() {
            report["diagnostics"] = serde_json::to_value(&self.diagnostics).expect("diagnostics serialize");
        }
        if !self.calls.is_empty() {
            report["calls"] = serde_json::to_value(&self.calls).expect("calls serialize");
        }
        if let Some(session) = &self.session {
            report["session"] = serde_json::to_value(session).expect("session serializes");
        }
        if let Some(paused) = &self.paused {
            report["paused"] = serde_json::to_value(paused).expect("paused serializes");
        }
        report
    }
}

/// `time` as an RFC 3339 UTC timestamp with milliseconds (`2026-12-01T19:41:53.123Z`).
pub(crate) fn rfc3339(time: std::time::SystemTime) -> String {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// An estimate of [`count_tokens`] from one pass over the bytes, without the tokenizer: runs of
/// letters, digits and punctuation are counted the way o200k_base's pre-tokenizer splits them
/// (a word with its leading space, up to three digits, a run of punctuation), with long runs
/// split at the lengths o200k's vocabulary typically covers. BENCHMARKS.md records its error
/// against the exact count.
pub fn estimate_tokens(text: &str) -> usize {
    #[derive(PartialEq, Clone, Copy)]
    enum Run {
        None,
        Letters,
        Digits,
        Punct,
        Space,
    }
    let mut tokens = 0usize;
    let mut run = Run::None;
    let mut len = 0usize;
    let close = |run: Run, len: usize| match run {
        Run::None => 0,
        Run::Letters => len.div_ceil(LETTERS_PER_TOKEN),
        Run::Digits => len.div_ceil(3),
        Run::Punct => len.div_ceil(PUNCT_PER_TOKEN),
        // Spaces attach to the next word; a run of them (indentation) is one token.
        Run::Space => usize::from(len > 1),
    };
    for &b in text.as_bytes() {
        let kind = match b {
            b'a'..=b'z' | b'A'..=b'Z' => Run::Letters,
            b'0'..=b'9' => Run::Digits,
            b' ' | b'\t' => Run::Space,
            b'\n' | b'\r' => {
                tokens += close(run, len);
                run = Run::None;
                len = 0;
                tokens += 1;
                continue;
            }
            // Past ASCII: one token per character of a non-Latin script, roughly; a UTF-8
            // continuation byte adds nothing.
            0x80..=0xBF => continue,
            0xC0.. => {
                tokens += close(run, len);
                run = Run::None;
                len = 0;
                tokens += 1;
                continue;
            }
            _ => Run::Punct,
        };
        if kind == run {
            len += 1;
        } else {
            // A single space before a word is part of that word.
            if !(run == Run::Space && len == 1 && kind == Run::Letters) {
                tokens += close(run, len);
            }
            run = kind;
            len = 1;
        }
    }
    tokens + close(run, len)
}

const LETTERS_PER_TOKEN: usize = 8;
const PUNCT_PER_TOKEN: usize = 3;

/// Tokens of `text` under o200k_base (the GPT-4o tokenizer). The first call in a process loads
/// the tokenizer (about 70 ms).
#[cfg(feature = "tokens")]
pub fn count_tokens(text: &str) -> usize {
    tokenizer().encode_ordinary(text).len()
}

#[cfg(feature = "tokens")]
fn tokenizer() -> &'static tiktoken_rs::CoreBPE {
    static BPE: std::sync::OnceLock<tiktoken_rs::CoreBPE> = std::sync::OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().expect("o200k_base ships inside tiktoken-rs"))
}

mod micros_as_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_micros() as f64) / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        f64::deserialize(d).map(|ms| Duration::from_micros((ms * 1000.0) as u64))
    }
}

/// A receiver of console lines while a program runs; see [`ExecuteOptions::on_log`](crate::ExecuteOptions::on_log).
pub type LogSink = std::sync::Arc<dyn Fn(&LogLine) + Send + Sync>;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = |ms: u64| super::rfc3339(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_764_618_113_419), "2025-12-01T19:41:53.419Z");
        // A leap day, and the last millisecond of a year.
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_704_067_199_999), "2023-12-31T23:59:59.999Z");
    }
}
