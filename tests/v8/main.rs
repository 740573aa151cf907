//! The engine's integration tests again, against the V8 engine ([`codemode::EngineKind::V8`]):
//! the same files as `tests/all`, so the engines cannot drift. What only V8 has (its isolates,
//! heap limit, compute speed, the process it runs in) is tested in `v8.rs`.
#![allow(clippy::print_stderr, reason = "a test that cannot run says so on stderr")]

#[path = "../all/harness.rs"]
#[allow(dead_code, reason = "helpers of the tests that run only in tests/all")]
mod harness;

#[path = "../all/differences.rs"]
mod differences;

/// Where this binary's engines run their sandboxes (V8 runs in processes of its own).
pub const ISOLATION: codemode::Isolation = codemode::Isolation::Process;
/// The engine this binary's engines run programs in.
pub const ENGINE: codemode::EngineKind = codemode::EngineKind::V8;

#[path = "../all/approvals.rs"]
mod approvals;
#[path = "../all/audit.rs"]
mod audit;
#[path = "../all/bounded.rs"]
mod bounded;
#[path = "../all/console.rs"]
mod console;
#[path = "../all/daemon.rs"]
mod daemon;
#[path = "../all/errors.rs"]
mod errors;
#[path = "../all/hostile.rs"]
mod hostile;
#[path = "../all/isolation.rs"]
mod isolation;
#[path = "../all/limits.rs"]
mod limits;
#[path = "../all/nesting.rs"]
mod nesting;
#[path = "../all/privacy.rs"]
mod privacy;
#[path = "../all/results.rs"]
mod results;
#[path = "../all/scripts.rs"]
mod scripts;
#[path = "../all/sessions.rs"]
mod sessions;
#[path = "../all/skills.rs"]
mod skills;
#[path = "../all/text.rs"]
mod text;
#[path = "../all/tools.rs"]
mod tools;
mod v8;
