//! The checks behind the fuzz targets in `fuzz/`, shared with the test that replays their
//! corpus and regressions on stable (`tests/all/fuzzed.rs`). Not part of the API.
//!
//! Each takes arbitrary input and panics when the runtime misbehaves: an `internal` error (a
//! bug, by definition), a value that does not survive the trip through the sandbox, or a
//! daemon reply that is not JSON-RPC.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Engine, ErrorKind, ExecuteOptions, Limits, Tool, ToolError};

struct Shared {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    daemon: crate::daemon::Daemon,
}

/// One engine for every input, with limits small enough that hostile inputs end quickly.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut registry = crate::demo::registry();
        registry
            .register(
                "fuzz",
                Tool::new("echo", "Returns its arguments.", json!({}), |args: Value| async move {
                    Ok::<_, ToolError>(args)
                }),
            )
            .expect("a valid tool");
        registry
            .register(
                "fuzz",
                Tool::new(
                    "raw",
                    "Returns `text` as its JSON result, unparsed.",
                    json!({}),
                    |args: Value| async move {
                        let text = args["text"].as_str().unwrap_or("null").to_string();
                        Ok::<_, ToolError>(crate::ToolOutput::Json(text))
                    },
                ),
            )
            .expect("a valid tool");
        let limits =
            Limits { timeout: Duration::from_millis(200), memory_bytes: 32 << 20, ..Limits::default() };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let engine =
            Engine::builder().registry(registry).limits(limits).workers(2).build().expect("an engine");
        let config = crate::daemon::DaemonConfig {
            max_line_bytes: 64 << 10,
            tool_call_timeout: Duration::from_millis(200),
            shutdown_grace: Duration::from_millis(200),
            ..Default::default()
        };
        let daemon = crate::daemon::Daemon::new(engine.clone(), config);
        Shared { runtime, engine, daemon }
    })
}

/// Arbitrary text as a program: it ends with an outcome that is not `internal`. The text is
/// also run as a generator of deep nesting: its first line (up to 16 bytes) repeated to about
/// 100 KB, followed by the rest, so the fuzzer explores every kind of nesting at depths no
/// recursive stage could survive without the nesting limit.
pub fn program(text: &str) {
    let s = shared();
    let run = |code: &str| {
        let outcome = s.runtime.block_on(s.engine.execute(code, ExecuteOptions::default()));
        if let Some(e) = &outcome.error {
            assert_ne!(e.kind, ErrorKind::Internal, "{code:.200?}: {e:?}");
        }
    };
    run(text);
    let (unit, rest) = text.split_once('\n').unwrap_or((text, ""));
    if !unit.is_empty() && unit.len() <= 16 {
        run(&format!("{}{rest}", unit.repeat(100_000 / unit.len())));
    }
}

/// JSON text parsed in the sandbox, sent through a tool and returned: the same value comes
/// back both ways (numbers compared as JS numbers; results cut to the cap are not compared).
/// The same text as a tool's result is, inside the sandbox, exactly what `JSON.parse` makes
/// of it: same keys in the same order, same numbers (`-0` included).
pub fn value(text: &str) {
    let Ok(expected) = serde_json::from_str::<Value>(text) else { return };
    let literal = serde_json::to_string(text).expect("a string");
    let code = format!(
        "const v = JSON.parse({literal});\n\
         const w = await fuzz.raw({{ text: {literal} }});\n\
         const same = (a, b) => Object.is(a, b) || (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null\n\
           && Array.isArray(a) === Array.isArray(b) && Object.keys(a).join('\\0') === Object.keys(b).join('\\0')\n\
           && Object.keys(a).every((k) => same(a[k], b[k])));\n\
         let built = true;\n\
         try {{ built = same(v, w); }} catch {{}}\n\
         if (!built) throw new Error('a tool result differs from JSON.parse');\n\
         return [v, await fuzz.echo(v)];"
    );
    let s = shared();
    let outcome = s.runtime.block_on(s.engine.execute(&code, ExecuteOptions::default()));
    if let Some(e) = &outcome.error {
        // Too big or too deep for the limits is a clear, expected refusal.
        assert!(
            (matches!(e.kind, ErrorKind::InvalidResult | ErrorKind::MemoryLimit | ErrorKind::Timeout)
                || e.message.contains("cannot be sent"))
                && !e.message.contains("differs from JSON.parse"),
            "{text:?}: {e:?}"
        );
        return;
    }
    if outcome.stats.result_truncated {
        return;
    }
    let expected = json!([expected.clone(), expected]);
    assert!(same_js_value(&expected, &outcome.value), "{text:?}: {} became {}", expected, outcome.value);
}

/// Equal as JavaScript sees them: numbers as doubles (so 1 and 1.0, 0 and -0 are equal),
/// object keys in any order.
fn same_js_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_js_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_js_value(v, w)))
        }
        _ => a == b,
    }
}

/// Arbitrary bytes as one daemon connection's input: every line the daemon writes back is a
/// JSON-RPC 2.0 message, and the connection ends once the input does.
pub fn rpc(input: &[u8]) {
    use tokio::io::AsyncReadExt;
    let s = shared();
    let lines = s.runtime.block_on(async {
        let (writer, mut reader) = tokio::io::duplex(1 << 16);
        let serve = s.daemon.serve_connection(std::io::Cursor::new(input.to_vec()), writer);
        let mut out = Vec::new();
        let read = reader.read_to_end(&mut out);
        let (_, read) = tokio::join!(serve, read);
        read.expect("reading the daemon's output");
        out
    });
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(line)));
        assert_eq!(v["jsonrpc"], "2.0", "{v}");
        let is_reply = v.get("result").is_some() || v.get("error").is_some();
        assert!(is_reply || v.get("method").is_some(), "{v}");
    }
}
