//! # codemode
//!
//! A runtime for the *code-mode* pattern: an AI agent writes a short TypeScript program that
//! calls tools as typed async functions; the program runs in a sandbox next to the tools, and
//! only its logs and its return value go back to the model.
//!
//! ## Core concepts
//!
//! * [`Registry`] — the tools, grouped in namespaces. Built once. A [`Tool`] has a name, a
//!   description, an input JSON Schema (enforced before the handler runs), an optional output
//!   schema, and an async handler. Inside the sandbox a tool is `await namespace.jsName(args)`.
//! * [`Engine`] — the shared, expensive part: registry, default [`Limits`], a pool of sandbox
//!   threads with warm QuickJS sandboxes, and a cache of compiled programs. Build it once; clone
//!   it freely (`Arc`); it is `Send + Sync`.
//! * One execution — [`Engine::execute`]: the program is type-stripped (swc), compiled, and run
//!   in a fresh sandbox that is thrown away afterwards. It returns an [`Outcome`]: the JSON
//!   value, the console lines, a structured [`ExecError`] if it failed, and [`Stats`].
//! * Declarations — every tool's schemas as TypeScript ([`typegen`]), generated once per
//!   registry version; agents discover tools progressively with [`Registry::search`],
//!   [`Registry::describe`] and [`prompt`], or from a program with `codemode.search(...)`.
//!   [`build`] does the same at build time and adds serde types for handlers.
//! * Skills — a program that worked, saved with a typed signature ([`Skill`], [`SkillStore`])
//!   and called from later programs as `await skills.name(input)`, inside their sandbox.
//! * Faces — [`daemon`] (JSON-RPC 2.0 over a Unix socket or stdio, clients may register
//!   tools), [`mcp`] (an MCP server, and upstream MCP servers as namespaces), [`config`]
//!   (`codemode.toml`).
//!
//! ```
//! use codemode::{Engine, ExecuteOptions, Registry, Tool, ToolError};
//! use serde_json::{json, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut registry = Registry::new();
//! registry
//!     .register(
//!         "math",
//!         Tool::new(
//!             "add",
//!             "Add two numbers.",
//!             json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
//!             |args: Value| async move {
//!                 let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
//!                 Ok::<_, ToolError>(json!(sum))
//!             },
//!         ),
//!     )
//!     .unwrap();
//! let engine = Engine::builder().registry(registry).build().unwrap();
//!
//! let outcome = engine
//!     .execute(
//!         r#"
//!         const [x, y] = await Promise.all([math.add({ a: 1, b: 2 }), math.add({ a: 3, b: 4 })]);
//!         console.log("sums", x, y);
//!         return { total: x + y };
//!         "#,
//!         ExecuteOptions::default(),
//!     )
//!     .await;
//! assert!(outcome.is_ok(), "{:?}", outcome.error);
//! assert_eq!(outcome.value, json!({ "total": 10 }));
//! assert_eq!(outcome.logs[0].message, "sums 3 7");
//! assert_eq!(outcome.stats.tool_calls, 2);
//! # }
//! ```
//!
//! The library never prints, exits or reads the environment; the `codemode` binary does.

// Generated code (build.rs, `codemode::build`) names the crate `::codemode`, inside it too.
extern crate self as codemode;

#[cfg(feature = "runtime")]
mod bridge;
pub mod build;
#[cfg(feature = "cli")]
pub mod config;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod definitions;
#[cfg(feature = "runtime")]
pub mod demo;
#[cfg(feature = "runtime")]
mod engine;
#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "mcp")]
mod flow;
#[cfg(feature = "runtime")]
mod globals;
#[cfg(feature = "runtime")]
mod limits;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(feature = "runtime")]
mod nesting;
#[cfg(feature = "runtime")]
mod outcome;
#[cfg(feature = "runtime")]
mod params;
#[cfg(feature = "runtime")]
mod privacy;
#[cfg(feature = "runtime")]
mod prompt;
#[cfg(feature = "runtime")]
mod registry;
#[cfg(feature = "mcp")]
mod rpc;
#[cfg(feature = "runtime")]
mod sandbox;
#[cfg(all(feature = "runtime", target_os = "linux"))]
pub mod sealed;
#[cfg(feature = "runtime")]
mod session;
#[cfg(feature = "runtime")]
pub mod skills;
#[cfg(feature = "runtime")]
mod suggest;
#[cfg(feature = "runtime")]
pub mod telemetry;
#[cfg(feature = "runtime")]
mod transpile;
#[cfg(feature = "runtime")]
mod typecheck;
pub mod typegen;

#[cfg(feature = "tokens")]
pub use outcome::count_tokens;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "cli"))]
pub struct ReadmeDoctests;

#[cfg(feature = "runtime")]
pub use {
    bridge::{tool_log, CallContext, ClientRequests, PendingCall},
    engine::{
        BuildError, CancelToken, Engine, EngineBuilder, EngineKind, ExecuteOptions, Isolation, LogSink,
        ResumeError, Session, WeakEngine,
    },
    error::{DiscoveryError, ErrorKind, ExecError, RegistryError, ToolError},
    globals::{RUNTIME_DECLARATIONS, SANDBOX_GLOBALS, V8_GLOBALS_ADDED, V8_GLOBALS_REMOVED},
    limits::{Limits, LimitsPatch, MIN_MEMORY_BYTES},
    outcome::{
        estimate_tokens, CallRecord, CheckStatus, LogLevel, LogLine, Outcome, Paused, SessionInfo,
        SessionReset, Stats, Tokens, TOKEN_SAMPLE_BYTES,
    },
    privacy::{Privacy, PrivacyError, PRIVACY_KINDS},
    prompt::prompt,
    registry::discovery::{Detail, NamespaceInfo, SearchHit},
    registry::{
        js_name, BoxFuture, Registry, Tool, ToolHandler, ToolOutput, MAX_SCHEMA_REFS, MAX_SCHEMA_VALUES,
    },
    session::SessionLimits,
    skills::{Skill, SkillError, SkillStore},
    typecheck::{
        CheckError, Diagnostic, TypeCheck, TypeChecker, INSTALL_PACKAGE_JSON, INSTALL_PACKAGE_LOCK,
        TYPESCRIPT_VERSION,
    },
};

#[cfg(all(feature = "runtime", target_os = "linux"))]
pub use sealed::v8::{installed_node, NODE_PACKAGE_JSON, NODE_PACKAGE_LOCK, NODE_VERSION};

/// The checks of the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
#[cfg(feature = "__internals")]
#[path = "fuzz.rs"]
pub mod __fuzz;

/// Hooks for the benches in `benches/`; not part of the API.
#[doc(hidden)]
#[cfg(feature = "__internals")]
pub mod __bench {
    /// Builds one sandbox (runtime + context + prelude), as a cold checkout does. Dropping the
    /// result frees it, which the engine does after replying.
    pub fn cold_sandbox() -> Used {
        Used(crate::sandbox::Sandbox::new().expect("sandbox builds"))
    }

    /// A warm sandbox and an execution ready to run on it.
    pub struct Prepared(crate::sandbox::Sandbox, crate::sandbox::RunJob);

    /// Builds a sandbox and prepares `code` on `engine`, as a warm checkout finds them. Must be
    /// called inside a tokio runtime (tool handlers run there).
    pub fn prepare(engine: &crate::Engine, code: &str) -> Prepared {
        let sandbox = crate::sandbox::Sandbox::new().expect("sandbox builds");
        let (run, _cancel) = engine.prepare(code, crate::ExecuteOptions::default()).expect("inside tokio");
        Prepared(sandbox, run)
    }

    /// Runs a prepared execution on this thread. The used sandbox is returned so that freeing it
    /// is not part of the measurement (the engine frees it after replying, too).
    pub fn run(prepared: Prepared) -> (crate::Outcome, Used) {
        let Prepared(mut sandbox, run) = prepared;
        (sandbox.run(run), Used(sandbox))
    }

    /// A sandbox held only to be dropped; dropping it frees its runtime.
    pub struct Used(#[allow(dead_code, reason = "held only to be dropped later")] crate::sandbox::Sandbox);

    /// Learns result shapes in memory, as an upstream tool without an output schema does after
    /// each call.
    pub struct Learner(std::sync::Arc<crate::mcp::shapes::ShapeStore>);

    impl Learner {
        /// A learner with nothing learned.
        pub fn new() -> Self {
            Learner(std::sync::Arc::new(crate::mcp::shapes::ShapeStore::in_memory()))
        }

        /// Folds one result in; true when the learned type changed.
        pub fn observe(&self, value: &serde_json::Value) -> bool {
            self.0.observe("t", value)
        }
    }

    impl Default for Learner {
        fn default() -> Self {
            Self::new()
        }
    }

    /// Strips the types of a program, as every uncached execution does.
    pub fn transpile(ts: &str) -> usize {
        crate::transpile::transpile(ts).map(|c| c.js.len()).unwrap_or(0)
    }
}
