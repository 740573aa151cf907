use std::time::{Duration, Instant};

use codemode::{ErrorKind, Registry, RegistryError, Tool, ToolError};
use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_call_round_trip() {
    assert_eq!(
        value("return await t.echo({ a: [1, 'b', null], n: 1.5 })").await,
        json!({"a": [1, "b", null], "n": 1.5})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_identifiers_get_camel_case() {
    assert_eq!(value("return await t.getSum({ a: 2, b: 3 })").await, json!(5));
    assert_eq!(value("return await t.delete_({})").await, json!("deleted"));
    assert_eq!(
        value("return Object.keys(t).sort()").await,
        json!(["big", "delete_", "echo", "fail", "getSum", "panic", "raw", "sleep"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_reaches_its_own_handler_across_namespaces_and_overlays() {
    let named = |label: &'static str| move |_: Value| async move { Ok::<_, ToolError>(json!(label)) };
    let mut base = Registry::new();
    // Registered out of order: the sandbox names tools by their sorted position.
    for (ns, tool) in [("zeta", "b"), ("alpha", "y"), ("zeta", "a"), ("mid", "only"), ("alpha", "x")] {
        let label: &'static str = Box::leak(format!("{ns}.{tool}").into_boxed_str());
        base.register(ns, Tool::new(tool, "", json!({"type": "object"}), named(label))).unwrap();
    }
    let mut overlay = Registry::new();
    overlay
        .register("mid", Tool::new("only", "", json!({"type": "object"}), named("mid.only (overlay)")))
        .unwrap();
    overlay.register("beta", Tool::new("new", "", json!({"type": "object"}), named("beta.new"))).unwrap();
    base.overlay(&overlay);
    let engine = crate::harness::builder().registry(base).workers(1).build().unwrap();
    let code = "const out = [];\n                for (const ns of ['alpha', 'beta', 'mid', 'zeta']) for (const k of Object.keys(globalThis[ns])) out.push(await globalThis[ns][k]({}));\n                return out;";
    let outcome = engine.execute(code, Default::default()).await;
    assert_eq!(
        outcome.value,
        json!(["alpha.x", "alpha.y", "beta.new", "mid.only (overlay)", "zeta.a", "zeta.b"]),
        "{:?}",
        outcome.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_argument_sends_an_empty_object_and_null_is_judged_by_the_schema() {
    let v = value(
        "const e = await t.echo(null).catch((e) => e);\n         return [await t.echo(), await t.echo(undefined), e.name, e.path, e.message];",
    )
    .await;
    assert_eq!(
        v,
        json!([
            {},
            {},
            "TypeError",
            "args",
            "t.echo: invalid arguments at args: null is not of type \"object\""
        ])
    );
}

#[test]
fn collisions_are_refused_at_registration() {
    let h = |_: Value| async move { Ok::<_, ToolError>(Value::Null) };
    let mut r = Registry::new();
    r.register("ns", Tool::new("get-sum", "", json!({}), h)).unwrap();
    let err = r.register("ns", Tool::new("get.sum", "", json!({}), h)).unwrap_err();
    assert_eq!(
        err,
        RegistryError::Collision {
            namespace: "ns".into(),
            name: "get.sum".into(),
            existing: "get-sum".into(),
            js_name: "getSum".into()
        }
    );
    assert!(r.get("ns", "get-sum").is_some(), "original name still resolves");
    assert!(r.get("ns", "getSum").is_some());
}

#[test]
fn reserved_and_invalid_namespaces_are_refused() {
    let h = |_: Value| async move { Ok::<_, ToolError>(Value::Null) };
    let mut r = Registry::new();
    assert_eq!(
        r.register("console", Tool::new("x", "", json!({}), h)).unwrap_err(),
        RegistryError::ReservedNamespace("console".into())
    );
    assert_eq!(
        r.register("JSON", Tool::new("x", "", json!({}), h)).unwrap_err(),
        RegistryError::ReservedNamespace("JSON".into())
    );
    // A global of one engine only is refused on every engine: a registry runs on either.
    assert_eq!(
        r.register("Intl", Tool::new("x", "", json!({}), h)).unwrap_err(),
        RegistryError::ReservedNamespace("Intl".into())
    );
    assert_eq!(
        r.register("--", Tool::new("x", "", json!({}), h)).unwrap_err(),
        RegistryError::InvalidNamespace("--".into())
    );
}

#[test]
fn invalid_schema_is_refused() {
    let h = |_: Value| async move { Ok::<_, ToolError>(Value::Null) };
    let mut r = Registry::new();
    let err = r.register("ns", Tool::new("x", "", json!({"type": "not-a-type"}), h)).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidSchema { which: "input", .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violation_rejects_with_type_error_naming_tool_and_path() {
    let code = "try { await sheets.getRows({ sheetId: 5 }); } catch (e) { return [e.name, e.message, e.tool, e.path, e instanceof TypeError]; }";
    let v = value(code).await;
    assert_eq!(v[0], json!("TypeError"));
    assert_eq!(v[1], json!("sheets.getRows: invalid arguments at args.sheetId: 5 is not of type \"string\""));
    assert_eq!(v[2], json!("sheets.getRows"));
    assert_eq!(v[3], json!("args.sheetId"));
    assert_eq!(v[4], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_required_argument_is_a_type_error() {
    let v = value("try { await sheets.getRows({}); } catch (e) { return e.message }").await;
    assert_eq!(v, json!("sheets.getRows: invalid arguments at args: \"sheetId\" is a required property"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_rejects_with_tool_and_message() {
    let v = value("try { await t.fail({}); } catch (e) { return { name: e.name, message: e.message, tool: e.tool, code: e.code }; }").await;
    assert_eq!(
        v,
        json!({"name": "ToolError", "message": "t.fail: it did not work", "tool": "t.fail", "code": "nope"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaught_tool_error_fails_the_run() {
    let e = error("await sheets.getRows({ sheetId: 'nope' });").await;
    assert_eq!(e.kind, ErrorKind::Exception);
    assert_eq!(e.name.as_deref(), Some("ToolError"));
    assert_eq!(e.message, "sheets.getRows: unknown sheet id \"nope\"; listSheets() returns the ids");
    // The error is the one made at the call, so it carries the agent's position and stack (the
    // runtime's own frames are not shown), and the tool and code the handler gave.
    assert_eq!(
        json!([e.line, e.column]),
        crate::differences::expected("tools.uncaught_tool_error.position", json!([1, 13]))
    );
    let stack = crate::differences::expected(
        "tools.uncaught_tool_error.stack",
        json!("    at <anonymous> (agent.ts:1:13)"),
    );
    assert_eq!(json!(e.stack), stack);
    assert_eq!((e.tool.as_deref(), e.code.as_deref()), (Some("sheets.getRows"), Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_becomes_an_error_and_the_host_survives() {
    let v = value("try { await t.panic({}); } catch (e) { return [e.code, e.message]; }").await;
    assert_eq!(v, json!(["panic", "t.panic: the tool panicked: handler exploded"]));
    still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_concurrent() {
    let started = Instant::now();
    let v = value("return await Promise.all(Array.from({ length: 10 }, () => t.sleep({ ms: 200 })))").await;
    assert_eq!(v, json!([200, 200, 200, 200, 200, 200, 200, 200, 200, 200]));
    // Ten sequential calls would take 2 s; concurrent ones well under 1 s even on a loaded machine.
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getters_in_arguments_never_run_and_proxies_are_refused() {
    let v = value("let ran = false;\nconst args = { ms: 1 };\nObject.defineProperty(args, 'secret', { get() { ran = true; return 1 }, enumerable: true });\nconst r = await t.echo(args);\nreturn [r, ran];").await;
    assert_eq!(v, json!([{"ms": 1}, false]));
    let v = value("try { await t.echo(new Proxy({}, { ownKeys() { throw new Error('trap ran') } })) } catch (e) { return [e.name, e.message] }").await;
    assert_eq!(
        v,
        json!(["TypeError", "t.echo: the arguments cannot be sent: a Proxy at $ cannot leave the sandbox"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_workflow_updates_rows() {
    let v = value("await sheets.updateRow({ sheetId: 'sales', id: 7, fields: { note: 'called' } });\nconst [row] = await sheets.getRows({ sheetId: 'sales', offset: 7, limit: 1 });\nreturn row;").await;
    assert_eq!(
        v,
        json!({"id": 7, "customer": "Customer 7", "status": "churned", "region": "LATAM", "amount": 433, "note": "called"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_result_bytes_are_counted() {
    let o =
        run("const rows = await sheets.getRows({ sheetId: 'sales', limit: 2 }); return rows.length").await;
    assert_eq!(o.value, json!(2));
    let expected = serde_json::to_string(&json!([
        {"id": 0, "customer": "Customer 0", "status": "active", "region": "EU", "amount": 0},
        {"id": 1, "customer": "Customer 1", "status": "churned", "region": "US", "amount": 919}
    ]))
    .unwrap();
    assert_eq!(o.stats.tool_result_bytes, expected.len() as u64);
    assert_eq!(o.stats.tool_calls, 1);
    let tokens = o.tokens();
    assert!(tokens.tool_results > 20 && tokens.returned == 1, "{tokens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_text_results_reach_the_program_parsed() {
    let o = run(r#"const v = await t.raw({ text: '{"a": [1, 2.5, "x"], "b": null}' }); return [v.a[1], v.b, Object.keys(v)]"#).await;
    assert_eq!(o.value, json!([2.5, null, ["a", "b"]]));
    assert_eq!(o.stats.tool_result_bytes, r#"{"a": [1, 2.5, "x"], "b": null}"#.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_text_rejects_with_a_tool_error() {
    let v = value("try { await t.raw({ text: '{\"a\": 1,' }); } catch (e) { return [e.name, e.code, e.tool, e.message]; }").await;
    assert_eq!(
        v,
        json!([
            "ToolError",
            "invalid_output",
            "t.raw",
            "t.raw: the tool returned invalid JSON: EOF while parsing an object at line 1 column 8"
        ])
    );
    still_healthy().await;
}

// Tool results are built from their JSON text on the host (src/sandbox/json.rs), not by
// JSON.parse; whatever the text holds, the program must see exactly what JSON.parse makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_results_are_exactly_what_json_parse_makes() {
    let deep = format!("{}1{}", "[".repeat(150), "]".repeat(150));
    // Short strings repeated under one key are shared: more distinct values than are kept,
    // lengths on both sides of the limit, and values that later stop repeating.
    let rows: Vec<String> = (0..120)
        .map(|i| {
            format!(
                r#"{{"k":"v{}","l":"{}","m":"{}"}}"#,
                i % 11,
                "x".repeat(31 + i % 3),
                if i < 40 { "same".to_string() } else { format!("u{i}") }
            )
        })
        .collect();
    let rows = format!("[{}]", rows.join(","));
    for text in [
        r#"[{"s":"a","n":1,"t":["a","b"]},{"s":"a","n":"a","t":"b"},{"s":"b\"c","n":2},{"s":"b\"c"},{"s":"é"},{"s":"é"},{"s":""},{"s":""},{"s":{"s":"a"}}]"#,
        rows.as_str(),
        r#"{"a":1,"b":[1,2.5,-0,-1e-400,12345678901234567890,9007199254740993,0.1,-2147483649],"a":3}"#,
        r#"{"__proto__":{"x":1},"10":"ten","2":"two","k\u00e9y":"\u00e9\ud83d\ude00","é":"é","\u0000":"nul"}"#,
        r#"[{"id":0,"s":"x"},{"id":1,"s":"y","extra":null},{"s":"z","id":2},true,false,null,""]"#,
        // Decimals that need every digit to find the nearest double.
        r#"[2.2250738585072011e-308,9007199254740993.0,0.30000000000000004,1.7976931348623157e308,5e-324,123456789.12345679,3.141592653589793238462643383279]"#,
        // What serde_json refuses but JSON.parse accepts goes to JSON.parse: a number too
        // large for a double, a lone surrogate and nesting past serde_json's 128 levels.
        r#"[1e400,-1e400]"#,
        r#"{"lone":"\ud800","ok":1}"#,
        deep.as_str(),
    ] {
        let literal = serde_json::to_string(text).unwrap();
        let code = format!(
            "const expected = JSON.parse({literal});\n\
             const got = await t.raw({{ text: {literal} }});\n\
             const same = (a, b) => Object.is(a, b) || (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null\n\
               && Array.isArray(a) === Array.isArray(b) && Object.getPrototypeOf(a) === Object.getPrototypeOf(b)\n\
               && Reflect.ownKeys(a).join('|') === Reflect.ownKeys(b).join('|')\n\
               && Reflect.ownKeys(a).every((k) => same(a[k], b[k])));\n\
             return same(expected, got);"
        );
        assert_eq!(value(&code).await, json!(true), "{text}");
    }
    // A setter on Object.prototype is not called: properties are defined, as by JSON.parse.
    let v = value(
        "let called = 0;\nObject.defineProperty(Object.prototype, 'id', { set() { called++; }, configurable: true });\n\
         const rows = await t.raw({ text: '[{\"id\":1},{\"id\":2}]' });\nreturn [called, rows.map((r) => r.id)];",
    )
    .await;
    assert_eq!(v, json!([0, [1, 2]]));
}
