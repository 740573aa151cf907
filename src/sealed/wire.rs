//! The frames between the host and a sealed worker, over one Unix socket pair: a JSON header
//! and a body of raw bytes, which carries a tool's JSON text as it is (no escaping, no parse on
//! the way). The worker asks and the host answers, one question at a time; the only frame the
//! host sends unasked is `Cancel`.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorKind, ExecError};
use crate::limits::Limits;
use crate::outcome::LogLine;
use crate::transpile::Compiled;

/// The largest frame either side accepts. A worker is not trusted: a frame past this ends it.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Host → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum ToWorker {
    Run(Box<RunSpec>),
    /// Go on with the paused run of this sandbox: the host has decided on its call.
    Resume {
        sandbox: u64,
    },
    /// Forget this sandbox (a session ended, or a paused execution will not go on).
    Drop {
        sandbox: u64,
    },
    /// Stop the running program: sent unasked, read by the worker's interrupt handler.
    Cancel,
    /// Answer to `Call`: the call's id, or why the run must stop.
    Called {
        id: u64,
        stop: Option<ErrorKind>,
    },
    /// Answer to `Timer`.
    Timer {
        id: u64,
    },
    /// Answer to `Next`; a settled value's JSON text is the body.
    Next {
        next: WireNext,
    },
    /// Answer to `Redact`, `UnknownTool`, `Skill` and `Note`.
    Text {
        text: Option<String>,
    },
}

/// One run, as the worker needs it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunSpec {
    /// The host's name for the sandbox that runs it (a session's, or a fresh one).
    pub(crate) sandbox: u64,
    pub(crate) code: String,
    pub(crate) compiled: Option<Compiled>,
    pub(crate) limits: Limits,
    /// Time left before the deadline as the run is sent (clocks are not shared).
    pub(crate) deadline_in: Duration,
    /// A session's heap cap.
    pub(crate) session: Option<usize>,
    /// The tool namespaces and their tools, unless the same as for the worker's last run.
    pub(crate) names: Option<Vec<(String, Vec<String>)>>,
    /// Ask the host to tokenize each log line (privacy is on).
    pub(crate) redact: bool,
    /// Send each kept log line to the host as it is written (the caller streams logs).
    pub(crate) stream: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum WireNext {
    Value { id: u64, tool: String },
    Error { id: u64, failure: WireFailure },
    Timer { id: u64 },
    Log { line: LogLine },
    Idle,
    Paused,
    TimedOut,
    Cancelled,
}

/// A rejected call as the sandbox throws it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireFailure {
    pub(crate) type_error: bool,
    pub(crate) message: String,
    pub(crate) tool: String,
    pub(crate) code: Option<String>,
    pub(crate) path: Option<String>,
}

/// Worker → host.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum FromWorker {
    /// Sealed and ready, with what sealing achieved.
    Hello {
        seal: super::SealReport,
    },
    /// Sealing failed: the worker will not run programs.
    Failed {
        message: String,
    },
    Call {
        target: WireTarget,
        args: Result<Value, String>,
    },
    Timer {
        delay: Duration,
    },
    /// No answer.
    ClearTimer {
        id: u64,
    },
    Next,
    Redact {
        text: String,
    },
    /// A kept line for the caller's log sink; no answer.
    Log {
        line: LogLine,
    },
    UnknownTool {
        namespace: String,
        name: String,
    },
    Skill {
        name: String,
    },
    Note {
        undefined: String,
    },
    Done(Box<Finished>),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireTarget {
    Tool(usize),
    Builtin(String),
}

/// A run's end (or pause), less what the host's bridge knows.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Finished {
    pub(crate) value: Value,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) error: Option<ExecError>,
    pub(crate) hint: Option<String>,
    pub(crate) returned_bytes: u64,
    pub(crate) result_truncated: bool,
    pub(crate) logs_truncated: bool,
    pub(crate) paused: bool,
}

/// Writes one frame whole. `send` with `MSG_NOSIGNAL`: a peer that died is an error here, not
/// a `SIGPIPE` for the whole host.
pub(crate) fn write<T: Serialize>(sock: &UnixStream, header: &T, body: &[u8]) -> io::Result<()> {
    let head = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(8 + head.len() + body.len());
    frame.extend_from_slice(&(head.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&head);
    frame.extend_from_slice(body);
    let mut sent = 0;
    while sent < frame.len() {
        let rest = &frame[sent..];
        let n = unsafe { libc::send(sock.as_raw_fd(), rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
    }
    Ok(())
}

/// Reads one frame: its header and its body.
pub(crate) fn read<T: DeserializeOwned>(mut sock: &UnixStream) -> io::Result<(T, Vec<u8>)> {
    let mut lengths = [0u8; 8];
    sock.read_exact(&mut lengths)?;
    let head = u32::from_le_bytes(lengths[..4].try_into().expect("4 bytes")) as usize;
    let body = u32::from_le_bytes(lengths[4..].try_into().expect("4 bytes")) as usize;
    if head.saturating_add(body) > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {} bytes", head + body)));
    }
    let mut header = vec![0; head];
    sock.read_exact(&mut header)?;
    let mut bytes = vec![0; body];
    sock.read_exact(&mut bytes)?;
    let header =
        serde_json::from_slice(&header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((header, bytes))
}
