//! Where the V8 engine differs from QuickJS, every case in one place. A shared test states what
//! QuickJS gives (in process and in sealed workers alike) and asks here for what its engine
//! gives; each V8 entry says why it differs. Nothing here is skipped: every entry is asserted.

use codemode::EngineKind;
use serde_json::{json, Value};

/// What `what` is on this binary's engine: `quickjs` unless V8 differs.
pub fn expected(what: &str, quickjs: Value) -> Value {
    match crate::ENGINE {
        EngineKind::V8 => v8(what).unwrap_or_else(|| panic!("no V8 entry for {what:?}")),
        _ => quickjs,
    }
}

/// Where the engines agree for `what` except on V8, where `v8` applies; the QuickJS value
/// otherwise.
fn v8(what: &str) -> Option<Value> {
    Some(match what {
        // Positions are each engine's own: V8 places an error at the start of a `return`
        // statement, at the property access or the `new` that made the error, where QuickJS
        // places it at the failing name or call.
        "errors.misspelt_namespace.position" => json!([1, 1]),
        "errors.misspelt_tool.position" => json!([1, 21]),
        "errors.tool_error_in_function.position" => json!([2, 23]),
        "scripts.first_line.position" => json!([1, 6]),
        "sessions.error.position" => json!([2, 7]),
        "text.throw.position" => json!([3, 7]),
        "text.throw.stack" => json!("    at <anonymous> (agent.ts:3:7)"),
        "tools.uncaught_tool_error.position" => json!([1, 14]),
        "tools.uncaught_tool_error.stack" => json!("    at <anonymous> (agent.ts:1:14)"),
        "errors.tool_error_in_function.stack" => {
            json!("    at load (agent.ts:2:23)\n    at <anonymous> (agent.ts:4:20)")
        }
        "sessions.undefined_name.position" => json!([1, 27]),
        "skills.throw.stack" => json!("    at <anonymous> (skills/throws.ts:3:7)"),
        // Messages are each engine's own.
        "hostile.huge_bigint.message" => json!("Maximum BigInt size exceeded"),
        "scripts.null_property.message" => json!("Cannot read properties of null (reading 'x')"),
        "isolation.read_only.message" => {
            json!("Cannot assign to read only property 'echo' of object '[object Object]'")
        }
        // V8 parses JSON without recursion: a million `[` is a syntax error, not a stack overflow.
        "limits.deep_json_parse" => json!(["SyntaxError", "Unexpected end of JSON input"]),
        // V8 caps a string at 2^29 - 24 characters: a huge one is a RangeError the program can
        // catch, before the memory limit.
        "limits.huge_string.kind" => json!("exception"),
        // V8 keeps `'y'.repeat(n)` as a rope of a few dozen pieces, not n bytes: the session's
        // heap cap is tested in tests/v8/v8.rs with flat strings.
        "sessions.heap_cap.kinds" => json!(["ok", "ok", "ok"]),
        // A V8 program's tool call leaves the isolate with its next frame (the wait on it, as a
        // rule: one write for both); a program stopped before it waits never started the tool.
        "limits.unwaited_call_then_loop" => json!(0),
        // A V8 context's global object has no `Symbol.toStringTag` of its own.
        "isolation.global_symbols" => json!([]),
        _ => return None,
    })
}
