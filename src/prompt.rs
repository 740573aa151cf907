//! The prompt helper: the instructions an agent needs to write a program for this runtime —
//! how a program is shaped, what comes back, the limits — and the namespace index. It lists
//! names only; the agent asks for declarations (`codemode.describe`) of the tools it needs,
//! which keeps the prompt small however many tools are registered.

use std::fmt::Write;

use crate::limits::Limits;
use crate::registry::Registry;
use crate::typecheck::TypeCheck;

/// Renders the instructions and the namespace index for `registry` under `limits`, for
/// programs that run in a session (`session`: what one declares, the next one sees) or each
/// on its own.
pub fn prompt(registry: &Registry, limits: &Limits, session: bool) -> String {
    let mut out = String::new();
    out.push_str(
        "Write a TypeScript program to do the task; it runs in a sandbox next to the tools.\n\
         - The program is a function body: top-level `await` works, and `return <value>` ends it \
         with a JSON result.\n\
         - Tools are async functions: `const x = await <namespace>.<tool>(args)`. Run independent \
         calls together with `await Promise.all([...])`.\n\
         - Only `console.log` lines and the returned value come back to you. Keep large data inside \
         the program: filter, join and aggregate there, and return a small summary.\n\
         - A failed tool call rejects with an Error whose `tool` and `code` say which and why; \
         catch it to recover.\n\
         - Read a tool's types before calling it: `await codemode.describe(\"ns.tool\")` returns its \
         TypeScript declarations; `await codemode.search(\"what it does\")` finds tools.\n\
         - There is no network, filesystem, `require`, `process` or `import`; tools are the only way \
         out.\n",
    );
    if registry.tools().any(|(_, t)| t.has_result_type()) {
        out.push_str(
            "- A tool whose server declares no output schema returns `codemode.ToolResult`: its one \
             text block as a string (`JSON.parse` it when it holds JSON), several as `string[]`, \
             other content as the MCP blocks. After it has returned results, `describe` shows the \
             type learned from them (`@observed N results`).\n",
        );
    }
    if registry.tools().any(|(_, t)| t.requires_approval()) {
        out.push_str(
            "- Some tools need a person's approval (their declarations say so): the run pauses at \
             such a call until someone decides; a rejected call throws an Error whose `code` is \
             \"rejected\".\n",
        );
    }
    if registry.skills().next().is_some() {
        out.push_str(
            "- `skills.<name>(input)` are saved programs that worked before: call them like tools; \
             they run inside your program, within its limits.\n",
        );
    }
    out.push_str(if session {
        "- State persists between your programs: top-level `const`/`let`/`var`/`function`/`class` \
         declarations and `globalThis` properties stay for the next program, as in a REPL. \
         `await codemode.store(key, value)` and `await codemode.load(key)` keep JSON values even \
         when a `timeout` or `memory_limit` resets the sandbox (the result's `session.reset` says \
         so).\n"
    } else {
        "- Each program starts from nothing: what one declares is gone for the next.\n"
    });
    match limits.typecheck {
        TypeCheck::Strict => out.push_str(
            "- The program is type-checked against the tools' declarations before it runs: a type \
             error comes back as `type_error` with each diagnostic's line, and nothing runs.\n",
        ),
        TypeCheck::Warn => out.push_str(
            "- The program is type-checked before it runs; type errors come back as `diagnostics` \
             beside the result.\n",
        ),
        TypeCheck::Off => {}
    }
    let _ = writeln!(
        out,
        "- Limits per run: {} s, {} MiB of memory, {} tool calls ({} at once), {} KiB of logs, \
         {} KiB of result.",
        limits.timeout.as_secs_f64(),
        limits.memory_bytes >> 20,
        limits.max_tool_calls,
        limits.max_concurrent_tool_calls,
        limits.max_log_bytes >> 10,
        limits.max_result_bytes >> 10,
    );
    out.push_str("\nNamespaces:\n");
    for (js, ns) in registry.namespaces() {
        let tools: Vec<&str> = ns.tools.keys().map(String::as_str).collect();
        let count = if tools.len() == 1 { "1 tool".to_string() } else { format!("{} tools", tools.len()) };
        let _ = write!(out, "- {js} ({count})");
        if !ns.description.is_empty() {
            let _ = write!(out, ": {}", crate::typegen::first_sentence(&ns.description));
        }
        let _ = writeln!(out, " — {}", tools.join(", "));
    }
    out
}
