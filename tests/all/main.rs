//! One integration-test binary, split by topic, over a shared harness.
#![allow(clippy::print_stderr, reason = "a test that cannot run says so on stderr")]

mod differences;
mod harness;

/// Where this binary's engines run their sandboxes; `tests/sealed` runs the engine's tests
/// again with [`codemode::Isolation::Process`].
pub const ISOLATION: codemode::Isolation = codemode::Isolation::Thread;
/// The engine this binary's engines run programs in.
pub const ENGINE: codemode::EngineKind = codemode::EngineKind::QuickJs;

mod approvals;
mod audit;
mod bounded;
mod build;
mod cli;
mod config;
mod console;
mod daemon;
mod discovery;
mod errors;
#[cfg(feature = "__internals")]
mod fuzzed;
mod hostile;
mod isolation;
mod layers;
mod limits;
mod mcp;
mod nesting;
mod oauth;
mod privacy;
mod results;
mod scripts;
mod sessions;
mod skills;
#[cfg(feature = "telemetry")]
mod telemetry;
mod text;
mod tools;
mod typecheck;
mod typegen;
mod upstream;
