//! What rmcp's `Tool` does not keep: each tool's `execution.taskSupport`. A tool whose
//! support is `"required"` can only be called as an MCP task, which codemode does not speak
//! yet, so it is left out of the namespace and reported. rmcp parses `tools/list` into types
//! without that field, so for stdio servers the bytes are read on their way to rmcp ([`Tee`]),
//! and the lines that arrive while a listing is in flight are looked at.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

/// Longest line looked at; a longer one (a huge tool result during a listing) is passed on
/// unread.
const MAX_LINE: usize = 16 << 20;

/// The task support of the tools of the listing in flight, shared by the reader and the
/// upstream.
#[derive(Default)]
pub(crate) struct Listing {
    active: AtomicBool,
    found: Mutex<HashMap<String, String>>,
}

impl Listing {
    /// A listing starts: what the last one found is forgotten.
    pub(crate) fn begin(&self) {
        self.found.lock().expect("listing lock").clear();
        self.active.store(true, Ordering::SeqCst);
    }

    /// The listing ended: each tool's `execution.taskSupport`, by tool name, for the tools
    /// that declare one.
    pub(crate) fn end(&self) -> HashMap<String, String> {
        self.active.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.found.lock().expect("listing lock"))
    }

    fn look_at(&self, line: &[u8]) {
        // Cheap test first: most lines are not a listing.
        if !contains(line, b"\"taskSupport\"") {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(line) else { return };
        let Some(tools) = message.pointer("/result/tools").and_then(Value::as_array) else { return };
        let mut found = self.found.lock().expect("listing lock");
        for tool in tools {
            let name = tool.get("name").and_then(Value::as_str);
            let support = tool.pointer("/execution/taskSupport").and_then(Value::as_str);
            if let (Some(name), Some(support)) = (name, support) {
                found.insert(name.to_string(), support.to_string());
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A server's output on its way to rmcp, whose lines are looked at while a listing is in
/// flight.
pub(crate) struct Tee<R> {
    inner: R,
    lines: Lines,
}

/// Where the reader is in the server's lines.
struct Lines {
    listing: Arc<Listing>,
    line: Vec<u8>,
    /// The current line is being kept (it began while a listing was in flight).
    keeping: bool,
    at_line_start: bool,
}

impl<R> Tee<R> {
    pub(crate) fn new(inner: R, listing: Arc<Listing>) -> Self {
        Tee { inner, lines: Lines { listing, line: Vec::new(), keeping: false, at_line_start: true } }
    }
}

impl Lines {
    fn see(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.at_line_start {
                self.keeping = self.listing.active.load(Ordering::SeqCst);
                self.at_line_start = false;
            }
            let (part, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if self.keeping {
                if self.line.len() + part.len() > MAX_LINE {
                    self.keeping = false;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if ended {
                if self.keeping {
                    self.listing.look_at(&self.line);
                }
                self.line.clear();
                self.at_line_start = true;
                rest = &rest[part.len() + 1..];
            } else {
                rest = &[];
            }
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tee<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.lines.see(&buf.filled()[before..]);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_of_a_listing_in_flight_are_read() {
        let listing = Arc::new(Listing::default());
        let mut tee = Tee::new(tokio::io::empty(), Arc::clone(&listing)).lines;
        let list = br#"{"result":{"tools":[{"name":"a","execution":{"taskSupport":"required"}},{"name":"b"}]},"id":2}"#;
        tee.see(list);
        tee.see(b"\n");
        assert!(listing.end().is_empty(), "no listing was in flight");
        listing.begin();
        // Split anywhere, as reads split it.
        let (one, two) = list.split_at(17);
        tee.see(one);
        tee.see(two);
        tee.see(b"\n{\"other\":1}\n");
        assert_eq!(listing.end(), HashMap::from([("a".to_string(), "required".to_string())]));
    }
}
