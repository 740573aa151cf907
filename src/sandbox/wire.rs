//! The frames between the host and a sealed worker, over one Unix socket pair: a JSON header
//! and a body of raw bytes, which carries a tool's JSON text as it is (no escaping, no parse on
//! the way). The worker asks and the host answers, one question at a time; the only frames the
//! host sends unasked are `Cancel` and (to the V8 host) `Stop`.

use std::io;
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

/// What sealing a worker achieved. Seccomp and `no_new_privs` are required (a worker without
/// them never runs a program); the other layers are applied where the kernel allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealReport {
    /// The seccomp-bpf allow-list is installed on every thread of the worker.
    pub seccomp: bool,
    /// Namespaces the worker left for new, empty ones (`user`, `net`, `mount`, `ipc`, `uts`).
    pub namespaces: Vec<String>,
    /// Why the kernel refused new namespaces, when it did.
    pub namespaces_refused: Option<String>,
    /// Landlock: "fully enforced", or why not.
    pub landlock: String,
    /// Resource limits set, as `name=value`.
    pub rlimits: Vec<String>,
}

/// Host → worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum ToWorker {
    Run(Box<RunSpec>),
    /// Go on with the paused run of this sandbox: the host has decided on its call.
    Resume {
        sandbox: u64,
        /// Time left before the deadline as the run goes on (the V8 host enforces it).
        #[serde(default)]
        deadline_in: Duration,
    },
    /// Forget this sandbox (a session ended, or a paused execution will not go on).
    Drop {
        sandbox: u64,
    },
    /// Stop the running program: sent unasked, read by the worker's interrupt handler.
    Cancel,
    /// Stop the running program, past its deadline (`timeout`) or cancelled: sent unasked to
    /// the V8 host in place of `Cancel` (its isolates keep no clock of their own; a sealed
    /// QuickJS worker ends its runs itself). `sent` is when, on the monotonic clock in
    /// nanoseconds: a run that began later is not the one meant.
    Stop {
        timeout: bool,
        sent: u64,
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
    /// The sandbox has run a program before (a session's): if it is gone, so is its state.
    #[serde(default)]
    pub(crate) ran: bool,
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
        seal: SealReport,
    },
    /// Sealing failed: the worker will not run programs.
    Failed {
        message: String,
    },
    /// A tool call, numbered as the host's bridge will number it; no answer.
    Call {
        id: u64,
        target: WireTarget,
        args: Result<Value, String>,
    },
    /// A timer, numbered likewise; no answer.
    Timer {
        id: u64,
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
    /// The run was stopped before it could say `Done` (by the V8 host: a deadline, a
    /// cancellation, a memory breach or a tool-call limit), with the lines it had logged.
    Stopped {
        kind: ErrorKind,
        logs: Vec<LogLine>,
        /// What happened, for `internal`; the host words the limits' own messages.
        message: Option<String>,
        #[serde(default)]
        logs_truncated: bool,
        /// The run's isolate ended with it, and a session's sandbox with it.
        #[serde(default)]
        lost: bool,
    },
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
    /// The program returned `undefined` (the V8 host leaves the hint to the host).
    #[serde(default)]
    pub(crate) nothing: bool,
}

/// Writes one frame whole. `send` with `MSG_NOSIGNAL`: a peer that died is an error here, not
/// a `SIGPIPE` for the whole host.
pub(crate) fn write<T: Serialize>(sock: &UnixStream, header: &T, body: &[u8]) -> io::Result<()> {
    // The header is written in place, its length filled in after: one buffer per frame.
    let mut frame = Vec::with_capacity(128 + body.len());
    frame.extend_from_slice(&[0; 8]);
    serde_json::to_writer(&mut frame, header).map_err(io::Error::other)?;
    let head = frame.len() - 8;
    frame[..4].copy_from_slice(&(head as u32).to_le_bytes());
    frame[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
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

/// How long a side that expects an answer soon looks for it before it sleeps. A wake-up from
/// sleep costs tens of microseconds on a virtual machine, several times a whole tool call; a
/// short look costs a core only while the other side is at work on the answer.
pub(crate) const SPIN: Duration = Duration::from_micros(300);

/// How long a worker sleeps after it sends a run's outcome, before it does the next work on
/// the same thread: the V8 host builds its next context (a millisecond of its core), a sealed
/// QuickJS worker without a builder thread frees the sandbox (a tenth of that). The host's
/// thread that the outcome wakes is often placed on the worker's own core (the scheduler keeps
/// a waker and its wakee together), and waited behind that work: from the outcome's send to
/// the caller took over a millisecond in one paced run in ten, a quarter of that with the nap.
pub(crate) const NAP: Duration = Duration::from_micros(50);

/// Reads frames through a buffer: one `recv` usually brings a whole frame (or several).
#[derive(Default)]
pub(crate) struct Reader {
    buf: Vec<u8>,
    start: usize,
}

impl Reader {
    /// Whether bytes of a frame are here already.
    pub(crate) fn buffered(&self) -> bool {
        self.start < self.buf.len()
    }

    fn fill(&mut self, sock: &UnixStream, flags: libc::c_int) -> io::Result<bool> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let len = self.buf.len();
        let room = (64 << 10).max(self.buf.capacity() - len);
        self.buf.reserve(room);
        loop {
            let spare = self.buf.spare_capacity_mut();
            let n = unsafe { libc::recv(sock.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), flags) };
            if n > 0 {
                unsafe { self.buf.set_len(len + n as usize) };
                return Ok(true);
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(e),
            }
        }
    }

    /// Looks for bytes for up to `spin` without sleeping: whether some are here.
    pub(crate) fn spin(&mut self, sock: &UnixStream, spin: Duration) -> io::Result<bool> {
        if self.buffered() {
            return Ok(true);
        }
        let started = std::time::Instant::now();
        loop {
            if self.fill(sock, libc::MSG_DONTWAIT)? {
                return Ok(true);
            }
            if started.elapsed() >= spin {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    /// Whether a frame is here or arrives now, without waiting for it.
    pub(crate) fn ready(&mut self, sock: &UnixStream) -> io::Result<bool> {
        self.spin(sock, Duration::ZERO)
    }

    /// Reads one frame (waiting for it): its header and its body.
    pub(crate) fn read<T: DeserializeOwned>(&mut self, sock: &UnixStream) -> io::Result<(T, Vec<u8>)> {
        self.need(sock, 8)?;
        let lengths = &self.buf[self.start..self.start + 8];
        let head = u32::from_le_bytes(lengths[..4].try_into().expect("4 bytes")) as usize;
        let body = u32::from_le_bytes(lengths[4..].try_into().expect("4 bytes")) as usize;
        if head.saturating_add(body) > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {} bytes", head + body),
            ));
        }
        self.need(sock, 8 + head + body)?;
        let at = self.start + 8;
        let header = serde_json::from_slice(&self.buf[at..at + head])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let bytes = self.buf[at + head..at + head + body].to_vec();
        self.start = at + head + body;
        Ok((header, bytes))
    }

    /// Waits until `n` bytes are buffered.
    fn need(&mut self, sock: &UnixStream, n: usize) -> io::Result<()> {
        if self.buf.len() - self.start < n && self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        while self.buf.len() - self.start < n {
            self.buf.reserve(n - (self.buf.len() - self.start));
            // A blocking socket only comes back empty-handed past its read timeout.
            if !self.fill(sock, 0)? {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
        Ok(())
    }
}
