//! What a sandbox reaches its host through: the bridge itself when it runs in the host's process,
//! or the channel to it from a sealed worker process (`remote`). Every question a
//! sandbox asks its host goes through here, so the two differ in this one place.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bridge::{Bridge, Next, Target};
use crate::error::ErrorKind;
use crate::outcome::LogLine;
use crate::registry::Registry;

#[allow(
    clippy::large_enum_variant,
    reason = "one per execution, built once; boxing the bridge would cost an allocation per execution"
)]
pub(crate) enum Link {
    Local(Bridge),
    #[cfg(target_os = "linux")]
    Remote(super::remote::Remote),
}

impl Link {
    /// Starts a tool call and returns its id; errs when the call limit is passed.
    pub(crate) fn call(&mut self, target: Target<'_>, args: Result<Value, String>) -> Result<u64, ErrorKind> {
        match self {
            Link::Local(bridge) => bridge.call(target, args),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.call(target, args),
        }
    }

    pub(crate) fn timer(&mut self, delay: Duration) -> u64 {
        match self {
            Link::Local(bridge) => bridge.timer(delay),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.timer(delay),
        }
    }

    pub(crate) fn clear_timer(&mut self, id: u64) {
        match self {
            Link::Local(bridge) => bridge.clear_timer(id),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.clear_timer(id),
        }
    }

    /// Blocks until something settles, the deadline passes, or the run is cancelled.
    pub(crate) fn next(&mut self, deadline: Instant) -> Next {
        match self {
            Link::Local(bridge) => bridge.next(deadline),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.next(),
        }
    }

    /// A line for the logs with its private values tokenized.
    pub(crate) fn redact(&mut self, text: String) -> String {
        match self {
            Link::Local(bridge) => bridge.redact(text),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.redact(text),
        }
    }

    /// Hands a kept console line to the caller's sink, if any.
    pub(crate) fn emit_log(&self, line: &LogLine) {
        match self {
            Link::Local(bridge) => bridge.emit_log(line),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.emit_log(line),
        }
    }

    /// The flag a cancellation sets, which the interrupt handler reads.
    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        match self {
            Link::Local(bridge) => bridge.cancel_flag(),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.cancel_flag(),
        }
    }

    /// Decides on the call the paused run waits on. Across a process boundary the host
    /// decided before it asked the sandbox to go on.
    pub(crate) fn decide(&mut self, approve: bool, reason: Option<&str>) {
        match self {
            Link::Local(bridge) => bridge.decide(approve, reason),
            #[cfg(target_os = "linux")]
            Link::Remote(_) => {}
        }
    }

    /// What `namespace.name` (not a tool) should say.
    pub(crate) fn unknown_tool(&self, namespace: &str, name: &str) -> String {
        match self {
            Link::Local(bridge) => crate::suggest::unknown_tool(bridge.registry(), namespace, name),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.unknown_tool(namespace, name),
        }
    }

    /// The JavaScript of the saved program `name`, if the registry has it.
    pub(crate) fn skill(&self, name: &str) -> Option<Arc<str>> {
        match self {
            Link::Local(bridge) => bridge.registry().skill(name).map(|s| Arc::clone(&s.js)),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.skill(name),
        }
    }

    /// What to add to `x is not defined` when `x` is close to a namespace.
    pub(crate) fn reference_note(&self, undefined: &str) -> Option<String> {
        match self {
            Link::Local(bridge) => reference_note(bridge.registry(), undefined),
            #[cfg(target_os = "linux")]
            Link::Remote(remote) => remote.channel.reference_note(undefined),
        }
    }

    /// The bridge, when it is in this process (the host finishes the outcome from it).
    pub(crate) fn bridge(&mut self) -> Option<&mut Bridge> {
        match self {
            Link::Local(bridge) => Some(bridge),
            #[cfg(target_os = "linux")]
            Link::Remote(_) => None,
        }
    }
}

/// `sheet is not defined` for the namespace `sheets`: the note that says so.
pub(crate) fn reference_note(registry: &Registry, undefined: &str) -> Option<String> {
    if undefined == crate::skills::NAMESPACE {
        return crate::suggest::left_out_note(registry, None);
    }
    let namespace = crate::suggest::namespace_for(registry, undefined)?;
    Some(format!("; did you mean the tool namespace {namespace}?"))
}
