//! Bounded output of one line-delimited JSON-RPC connection, shared by the daemon and the MCP
//! server's stdio transport: responses wait in an [`Outbox`] for a writer task, counted in
//! bytes. Past `max_unsent` bytes unread (or `max_in_flight` requests running) the reader stops
//! reading that client's requests until it catches up; past twice `max_unsent` the connection
//! is given up: queued output is dropped, the writer stops, and the owner closes the
//! connection. A client that sends and never reads cannot grow the host's memory. Also here:
//! standard input and output as such a connection's streams ([`stdio`]).

// Shared by the daemon and the MCP stdio transport; a build with MCP but no daemon uses part.
#![cfg_attr(not(feature = "daemon"), allow(dead_code))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// One connection's queue of unsent lines and its count of running requests.
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<String>,
    flow: Arc<Flow>,
    max_unsent: usize,
    max_in_flight: usize,
}

#[derive(Default)]
struct Flow {
    /// Bytes handed to the writer and not yet written.
    unsent: AtomicUsize,
    in_flight: AtomicUsize,
    /// Set once `unsent` passed twice the bound: the connection is being closed.
    overflowed: AtomicBool,
    /// Woken when output was written or a request finished (the reader may go on).
    drained: tokio::sync::Notify,
    /// Woken when `overflowed` is set (the writer gives up a blocked write).
    overflow_signal: tokio::sync::Notify,
}

impl Outbox {
    /// An outbox whose lines a new task writes to `writer`, each followed by `\n`. The task
    /// ends when every clone of the sender is gone (the outbox dropped), the writer fails or
    /// the connection overflows.
    pub(crate) fn new<W>(
        writer: W,
        max_unsent: usize,
        max_in_flight: usize,
    ) -> (Outbox, tokio::task::JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let flow = Arc::new(Flow::default());
        let task = tokio::spawn(write_lines(writer, rx, Arc::clone(&flow)));
        (Outbox { tx, flow, max_unsent, max_in_flight }, task)
    }

    /// Queues one line (without its `\n`). Returns false, dropping the line, once the
    /// connection has overflowed or its writer is gone.
    pub(crate) fn send(&self, line: String) -> bool {
        let flow = &self.flow;
        if flow.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let unsent = flow.unsent.fetch_add(line.len() + 1, Ordering::Relaxed) + line.len() + 1;
        if unsent > 2 * self.max_unsent {
            flow.overflowed.store(true, Ordering::Relaxed);
            flow.drained.notify_one();
            flow.overflow_signal.notify_waiters();
            return false;
        }
        self.tx.send(line).is_ok()
    }

    /// Waits until the client may send another request: its unread output is within
    /// `max_unsent` and fewer than `max_in_flight` of its requests run. False once the
    /// connection has overflowed (stop reading it).
    pub(crate) async fn room(&self) -> bool {
        loop {
            let flow = &self.flow;
            let drained = flow.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if flow.overflowed.load(Ordering::Relaxed) {
                return false;
            }
            if flow.unsent.load(Ordering::Relaxed) <= self.max_unsent
                && flow.in_flight.load(Ordering::Relaxed) < self.max_in_flight
            {
                return true;
            }
            drained.await;
        }
    }

    /// Whether the connection went past twice `max_unsent` and is being closed.
    pub(crate) fn is_overflowed(&self) -> bool {
        self.flow.overflowed.load(Ordering::Relaxed)
    }

    /// Completes once the connection has overflowed.
    pub(crate) async fn overflowed(&self) {
        overflow(&self.flow).await;
    }

    /// Counts one running request until the guard is dropped.
    pub(crate) fn begin(&self) -> InFlight {
        self.flow.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.flow))
    }

    /// The bound on unread output, in bytes.
    pub(crate) fn max_unsent(&self) -> usize {
        self.max_unsent
    }
}

/// Counts one running request of a connection for as long as it lives.
pub(crate) struct InFlight(Arc<Flow>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.drained.notify_one();
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<String>,
    flow: Arc<Flow>,
) {
    while let Some(line) = rx.recv().await {
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        // Batch whatever else is ready into one write.
        while let Ok(more) = rx.try_recv() {
            bytes.extend_from_slice(more.as_bytes());
            bytes.push(b'\n');
        }
        // A client past the hard bound is dropped: its writer closes, whatever is queued.
        let written = async {
            tokio::select! {
                r = async { writer.write_all(&bytes).await?; writer.flush().await } => r.is_ok(),
                _ = overflow(&flow) => false,
            }
        };
        if !written.await {
            return;
        }
        flow.unsent.fetch_sub(bytes.len(), Ordering::Relaxed);
        flow.drained.notify_one();
    }
}

/// Completes once the connection is past its hard bound of unread responses.
async fn overflow(flow: &Flow) {
    loop {
        // Registered before the flag is read, so a signal in between is not missed.
        let signal = flow.overflow_signal.notified();
        tokio::pin!(signal);
        signal.as_mut().enable();
        if flow.overflowed.load(Ordering::Relaxed) {
            return;
        }
        signal.await;
    }
}

/// One direction of standard input or output, whichever way it is read or written.
pub(crate) type Input = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;
pub(crate) type Output = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// Standard input and output as async streams for a line-delimited connection. When they are
/// pipes (as when another program runs this one: an MCP host, the Python package) they are
/// read and written through tokio's reactor, as sockets are; otherwise (a terminal, a file)
/// through tokio's stdio, which hands every read and write to a blocking thread; that handoff
/// showed in every request's round trip (BENCHMARKS.md, "Python").
pub(crate) fn stdio() -> (Input, Output) {
    use tokio::net::unix::pipe;
    let input: Input = match Blocking::restored_on_drop(0, pipe::Receiver::from_owned_fd) {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdin()),
    };
    let output: Output = match Blocking::restored_on_drop(1, pipe::Sender::from_owned_fd) {
        Some(p) => Box::pin(p),
        None => Box::pin(tokio::io::stdout()),
    };
    (input, output)
}

/// A pipe end made non-blocking for the reactor. O_NONBLOCK belongs to the pipe's open file
/// description, which a process that started this one (a shell running `codemode serve
/// --stdio; more`) may share; the flag is cleared again when the stream is dropped.
struct Blocking<T: std::os::fd::AsRawFd>(T);

impl<T: std::os::fd::AsRawFd> Blocking<T> {
    fn restored_on_drop(
        fd: std::os::fd::RawFd,
        open: impl FnOnce(std::os::fd::OwnedFd) -> std::io::Result<T>,
    ) -> Option<Self> {
        // SAFETY: 0 and 1 are open for the life of the process; the borrow is only duplicated.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        open(borrowed.try_clone_to_owned().ok()?).ok().map(Blocking)
    }
}

impl<T: std::os::fd::AsRawFd> Drop for Blocking<T> {
    fn drop(&mut self) {
        // The pipe (and its descriptor) is dropped after this, so the descriptor is open here.
        let fd = self.0.as_raw_fd();
        // SAFETY: fcntl on an open descriptor.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + std::os::fd::AsRawFd + Unpin> tokio::io::AsyncRead for Blocking<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + std::os::fd::AsRawFd + Unpin> AsyncWrite for Blocking<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
