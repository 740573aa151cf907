//! Hostile programs, one case each. Every case asserts the exact outcome, then runs a probe in
//! the same engine that shows the host survived and nothing the attack changed is left: the
//! prototypes are pristine, a tool call works, JSON and arrays behave.
//!
//! Further attacks live beside the feature they attack, and count toward the list too:
//! `limits.rs` (loops, `try/finally` loops, catastrophic regex, long sort, endless job chain,
//! never-settling promise, 1 GB string, allocation loop catching its OOM, deep recursion, deep
//! `JSON.parse`, log flood, tool-call limit), `isolation.rs` (`constructor.constructor`,
//! globals, dynamic import, `Atomics`/`SharedArrayBuffer`), `results.rs` (cyclic, huge, Proxy
//! and thenable results, getters and `toJSON` on results), `tools.rs` (throwing and panicking
//! tools, getters and Proxies in arguments), `scripts.rs` (syntax errors), `console.rs`
//! (unhandled rejections).

use std::time::Duration;

use codemode::{ErrorKind, Limits, Outcome};
use serde_json::{json, Value};

use crate::harness::*;

const TIMED_OUT: &str = "the program ran past its 500 ms deadline";

fn short() -> Limits {
    Limits { timeout: Duration::from_millis(500), ..Limits::default() }
}

/// The same engine, after the attack: prototypes untouched, tools, JSON and arrays working.
async fn probe() {
    let v = value(
        "const clean = Object.getOwnPropertyNames(Object.prototype).sort().join();\n\
         return [clean, ({} as any).then, typeof (Promise as any)[Symbol.species],\n\
                 [3, 1, 2].sort().map((x) => x * 2), JSON.stringify({ a: [1] }),\n\
                 (await t.echo({ v: 41 })).v + 1, String(Promise.prototype.then).includes('native')]",
    )
    .await;
    let pristine = "__defineGetter__,__defineSetter__,__lookupGetter__,__lookupSetter__,__proto__,constructor,hasOwnProperty,isPrototypeOf,propertyIsEnumerable,toLocaleString,toString,valueOf";
    assert_eq!(v, json!([pristine, null, "function", [2, 4, 6], "{\"a\":[1]}", 42, true]));
}

async fn fails(code: &str, limits: Limits, kind: ErrorKind, message: &str) -> Outcome {
    let o = run_with(code, limits).await;
    let e = o.error.clone().unwrap_or_else(|| panic!("{code}: expected {kind}, got {}", o.value));
    assert_eq!((e.kind, e.message.as_str()), (kind, message), "{code}: {e:?}");
    probe().await;
    o
}

async fn returns(code: &str, limits: Limits, expected: Value) -> Outcome {
    let o = run_with(code, limits).await;
    assert_eq!(o.error, None, "{code}");
    assert_eq!(o.value, expected, "{code}");
    probe().await;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_that_swallows_every_interrupt_still_ends() {
    fails(
        "for (;;) { try { for (;;) {} } catch (e) {} finally { try { for (;;) {} } catch (e) {} } }",
        short(),
        ErrorKind::Timeout,
        TIMED_OUT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_bigint_is_a_range_error() {
    let o = run_with("let x = 7n ** (2n ** 40n); return String(x).length", short()).await;
    let e = o.error.unwrap();
    assert_eq!((e.kind, e.name.as_deref()), (ErrorKind::Exception, Some("RangeError")), "{e:?}");
    assert_eq!(
        json!(e.message),
        crate::differences::expected("hostile.huge_bigint.message", json!("BigInt is too large"))
    );
    probe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigint_and_symbol_results_follow_the_documented_conversion() {
    // A BigInt becomes its decimal string (JSON has no exact big integers); symbols are skipped.
    returns("return { n: 12345678901234567890n }", Limits::default(), json!({ "n": "12345678901234567890" }))
        .await;
    returns(
        "return { s: Symbol('x'), [Symbol('k')]: 1, ok: true }",
        Limits::default(),
        json!({ "ok": true }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polluted_object_prototype_then_turns_every_object_into_a_thenable_only_inside() {
    // The program makes every object a thenable; the language then unwraps its own result, but
    // the host never calls `then` itself, and the next run is clean.
    returns(
        "Object.defineProperty(Object.prototype, 'then', { get() { return undefined; }, configurable: true });\n\
         (Object.prototype as any).toJSON = () => 'polluted';\n\
         return { kept: (await t.echo({ a: 1 })).a }",
        Limits::default(),
        json!({ "kept": 1 }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_then_getter_on_results_never_runs_host_side() {
    let o = returns(
        "let calls = 0;\n\
         const r: any = { a: 1 };\n\
         Object.defineProperty(r, 'then', { get() { calls++; console.log('then read'); return undefined; }, enumerable: false });\n\
         return [r, calls]",
        Limits::default(),
        json!([{ "a": 1 }, 0]),
    )
    .await;
    assert!(o.logs.is_empty(), "{:?}", o.logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_then_and_species_pollution_do_not_break_tool_calls() {
    returns(
        "Promise.prototype.then = function () { throw new Error('hijacked then'); };\n\
         Object.defineProperty(Promise, Symbol.species, { get() { throw new Error('hijacked species'); } });\n\
         (Promise as any).resolve = () => { throw new Error('hijacked resolve'); };\n\
         const a = await t.echo({ v: 1 });\n\
         const b = await t.getSum({ a: 2, b: 3 });\n\
         return [a.v, b]",
        Limits::default(),
        json!([1, 5]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_and_json_pollution_do_not_change_what_the_host_reads() {
    returns(
        "Array.prototype[Symbol.iterator] = function* () { yield 'hijacked'; };\n\
         JSON.parse = () => 'hijacked';\n\
         Object.keys = () => ['hijacked'];\n\
         const rows = await t.echo({ rows: [1, 2, 3] });\n\
         return { rows: rows.rows, n: rows.rows[2] }",
        Limits::default(),
        json!({ "rows": [1, 2, 3], "n": 3 }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_with_hostile_getters_is_reported_without_running_them() {
    let o = run("const e = new Error('plain');\n\
         Object.defineProperty(e, 'name', { get() { for (;;) {} } });\n\
         Object.defineProperty(e, 'stack', { get() { for (;;) {} } });\n\
         throw e;")
    .await;
    let e = o.error.unwrap();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Exception, "plain"), "{e:?}");
    probe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throwing_a_proxy_is_reported_without_running_its_traps() {
    fails(
        "throw new Proxy({}, { get() { for (;;) {} }, getOwnPropertyDescriptor() { for (;;) {} }, ownKeys() { for (;;) {} } });",
        short(),
        ErrorKind::Exception,
        "Uncaught Proxy (its traps are not run)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_objects_with_getters_or_proxies_runs_no_program_code() {
    let o = returns(
        "console.log({ get x() { for (;;) {} }, set x(v) {}, get y() { return 1; }, z: 1 });\n\
         console.log(new Proxy({ a: 1 }, { ownKeys() { for (;;) {} }, get() { for (;;) {} } }));\n\
         return 'done'",
        short(),
        json!("done"),
    )
    .await;
    // Formatting happens on the host, reading own data properties: a getter is shown, not
    // called, and a Proxy shows its target without a trap running.
    assert_eq!(logs(&o), ["{ x: [Getter/Setter], y: [Getter], z: 1 }", "{ a: 1 }"]);
    // A RegExp prints through the built-in `toString`, which reads `source` as any engine
    // does: a replaced getter is the program's own code, may log in turn, and the deadline
    // ends it.
    let o = returns(
        "Object.defineProperty(RegExp.prototype, 'source', { get() { console.log('inner'); return 'x'; } });\n\
         console.log(/a/g);\nreturn 'done'",
        short(),
        json!("done"),
    )
    .await;
    assert_eq!(logs(&o), ["inner", "/x/g"]);
    fails(
        "Object.defineProperty(RegExp.prototype, 'flags', { get() { for (;;) {} } });\nconsole.log(/a/);",
        short(),
        ErrorKind::Timeout,
        TIMED_OUT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_prepare_stack_trace_hooks_run_inside_the_sandbox_only() {
    fails(
        "(Error as any).prepareStackTrace = () => { for (;;) {} };\n(Error as any).stackTraceLimit = 1e9;\nthrow new Error('boom');",
        short(),
        ErrorKind::Timeout,
        TIMED_OUT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_infinity_and_lone_surrogates_in_arguments_are_checked_by_the_schema() {
    returns(
        "const out: any[] = [];\n\
         for (const args of [{ a: NaN, b: 1 }, { a: Infinity, b: 1 }, { a: 1 }, { a: '1', b: 2 }]) {\n\
           try { out.push(await t.getSum(args as any)); } catch (e) { out.push(`${e.name}: ${e.message}`); }\n\
         }\n\
         out.push((await t.echo({ s: '\\uD800x' })).s);\n\
         return out",
        Limits::default(),
        json!([
            "TypeError: t.getSum: invalid arguments at args.a: null is not of type \"number\"",
            "TypeError: t.getSum: invalid arguments at args.a: null is not of type \"number\"",
            "TypeError: t.getSum: invalid arguments at args: \"b\" is a required property",
            "TypeError: t.getSum: invalid arguments at args.a: \"1\" is not of type \"number\"",
            "\u{FFFD}x"
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_that_cannot_be_json_are_refused_before_the_tool() {
    returns(
        "const out: string[] = [];\n\
         const cyclic: any = {}; cyclic.self = cyclic;\n\
         for (const args of [cyclic, { n: 1n }, { f() {} }, new Proxy({}, {})]) {\n\
           try { out.push(JSON.stringify(await t.echo(args))); } catch (e) { out.push(e.name); }\n\
         }\n\
         return out",
        Limits::default(),
        json!(["TypeError", "{\"n\":\"1\"}", "{}", "TypeError"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_concurrent_calls_stop_at_the_call_limit() {
    fails(
        "await Promise.all(Array.from({ length: 100000 }, (_, i) => t.echo({ i })));",
        Limits::default(),
        ErrorKind::ToolCallLimit,
        "the program made more than 1000 tool calls",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_concurrent_calls_complete_when_allowed() {
    let limits = Limits {
        max_tool_calls: 100_000,
        memory_bytes: 512 << 20,
        timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let o = returns(
        "const r = await Promise.all(Array.from({ length: 100000 }, (_, i) => t.echo({ i })));\n\
         return r.reduce((s, x) => s + x.i, 0)",
        limits,
        json!(4_999_950_000u64),
    )
    .await;
    assert_eq!(o.stats.tool_calls, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_returning_100_mb_hits_the_memory_limit_not_the_host() {
    fails(
        "const s = await t.big({ n: 100 * 1024 * 1024 }); return s.length",
        Limits::default(),
        ErrorKind::MemoryLimit,
        "the program used more than its 67108864 byte memory limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_flood_ends_at_the_memory_limit() {
    // Each pending timer holds its callback in the sandbox, so the flood is charged there.
    fails(
        "for (let i = 0; ; i++) setTimeout(() => {}, 1e9 + i);",
        Limits { memory_bytes: 8 << 20, ..Limits::default() },
        ErrorKind::MemoryLimit,
        "the program used more than its 8388608 byte memory limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_and_function_with_syntax_errors_are_ordinary_exceptions() {
    returns(
        "const out: string[] = [];\n\
         try { eval('{'); } catch (e) { out.push(e.name); }\n\
         try { new Function('return )'); } catch (e) { out.push(e.name); }\n\
         return out",
        Limits::default(),
        json!(["SyntaxError", "SyntaxError"]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhandled_rejection_storm_is_counted_not_kept() {
    let o = run_with(
        "for (let i = 0; i < 100000; i++) Promise.reject(new Error('r' + i));\n\
         const late = Promise.reject(new Error('handled later'));\n\
         late.catch(() => {});\n\
         return 'finished'",
        Limits::default(),
    )
    .await;
    let ended = o.error.as_ref().map_or(o.value.clone(), |e| json!(e.kind.code()));
    assert_eq!(ended, json!("finished"));
    probe().await;
    let mut expected: Vec<String> = (0..10).map(|i| format!("Unhandled promise rejection: r{i}")).collect();
    expected.push("[codemode] 99990 more unhandled promise rejection(s) not shown".into());
    assert_eq!(logs(&o), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_rewriting_its_namespace_and_console_affects_only_itself() {
    returns(
        "(globalThis as any).t = { echo: () => 'fake' };\n\
         (globalThis as any).console = { log() { for (;;) {} } };\n\
         return (globalThis as any).t.echo()",
        Limits::default(),
        json!("fake"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_in_a_result_is_refused_with_a_short_path() {
    let o = run("let v: any = 1; for (let i = 0; i < 100000; i++) v = [v];\nreturn v").await;
    let e = o.error.unwrap();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::InvalidResult,
            "the value at $[0][0][0][0][0][0]…(248 levels)…[0][0] is nested deeper than 256 levels"
        )
    );
    probe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_in_tool_arguments_is_refused_without_a_host_overflow() {
    returns(
        "let v: any = 1; for (let i = 0; i < 100000; i++) v = { v };\n\
         try { await t.echo(v); return 'called'; } catch (e) { return e.name; }",
        Limits::default(),
        json!("TypeError"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_tool_argument_is_refused_before_it_is_copied() {
    returns(
        "const big = 'x'.repeat(20 * 1024 * 1024);\n\
         try { await t.echo({ big }); return 'sent'; } catch (e) { return `${e.name}: ${e.message}`; }",
        Limits::default(),
        json!("TypeError: t.echo: the arguments cannot be sent: the value is larger than the 8388608 byte limit"),
    )
    .await;
}

/// Limits with room for 30–50 MB strings in the sandbox.
fn roomy() -> Limits {
    Limits { memory_bytes: 256 << 20, ..Limits::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_ten_thousand_references_to_a_30_mb_message_is_cut_not_built() {
    // Formatting this whole would be a 3 GB string on the host (it aborted the process).
    let code = "const e = new Error('x'.repeat(3e7)); const a = Array(100).fill(e);\n\
                console.log(Array(100).fill(a)); return 1;";
    let o = run_with(code, roomy()).await;
    let ended = o.error.as_ref().map_or(o.value.clone(), |e| json!(e.kind.code()));
    assert_eq!(ended, json!(1));
    probe().await;
    assert_eq!(o.logs.len(), 1);
    let line = &o.logs[0].message;
    assert!(line.len() <= 64 << 10, "{}", line.len());
    assert!(line.starts_with("[\n  [\n    Error: xxxx"), "{}", &line[..40]);
    assert!(line.ends_with("… [line cut at the log's 65536-byte cap]"), "{}", &line[line.len() - 80..]);
    assert!(o.stats.logs_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_string_in_a_log_line_is_read_only_as_far_as_the_line_can_hold() {
    let o = returns(
        "const s = 'é'.repeat(2e7); console.log('[%s]', s); console.log({ s }); return 1",
        roomy(),
        json!(1),
    )
    .await;
    // The first line takes the log's room, cut; the second finds none left and is dropped.
    assert_eq!(o.logs.len(), 2, "{:?}", o.logs.iter().map(|l| l.message.len()).collect::<Vec<_>>());
    assert!(o.logs[0].message.starts_with("[éé"));
    assert!(o.logs[0].message.ends_with("… [line cut at the log's 65536-byte cap]"));
    assert_eq!(
        o.logs[1].message,
        "[codemode] 1 more log line(s) dropped: the log is capped at 1000 lines and 65536 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhandled_rejections_with_huge_messages_obey_the_log_caps() {
    let code = "const big = 'x'.repeat(3e7); for (let i = 0; i < 64; i++) Promise.reject({ message: big }); return 1;";
    let o = returns(code, roomy(), json!(1)).await;
    let bytes: usize = o.logs.iter().map(|l| l.message.len()).sum();
    assert!(bytes <= (64 << 10) + 200, "{bytes} bytes of logs");
    assert!(o.logs[0].message.starts_with("Unhandled promise rejection: xxxx"));
    assert!(
        o.logs[0].message.ends_with(" more characters]"),
        "{}",
        &o.logs[0].message[o.logs[0].message.len() - 60..]
    );
    assert_eq!(o.logs.last().unwrap().message, "[codemode] 63 more unhandled promise rejection(s) not shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thrown_primitives_are_shown_as_a_console_shows_them_never_as_host_addresses() {
    for (code, message) in [
        ("throw Symbol('why')", "Uncaught Symbol(why)"),
        ("throw Symbol()", "Uncaught Symbol()"),
        ("throw 10n", "Uncaught 10n"),
        ("throw 'plain'", "Uncaught plain"),
        ("throw undefined", "Uncaught undefined"),
        ("throw -0", "Uncaught -0"),
    ] {
        fails(code, Limits::default(), ErrorKind::Exception, message).await;
    }
    let o = returns("Promise.reject(Symbol('r')); Promise.reject(5n); return 1", Limits::default(), json!(1))
        .await;
    assert_eq!(logs(&o), vec!["Unhandled promise rejection: Symbol(r)", "Unhandled promise rejection: 5n"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_error_with_a_50_mb_message_comes_back_cut_like_a_result() {
    let o = run_with("throw new Error('y'.repeat(5e7))", roomy()).await;
    let e = o.error.unwrap();
    let cap = Limits::default().max_result_bytes;
    assert_eq!(e.message, format!("{}… [{} more characters]", "y".repeat(cap), 50_000_000 - cap));
    probe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_repeating_a_30_mb_string_is_cut_reading_only_what_fits() {
    let o = run_with("const s = 'z'.repeat(3e7); return Array(10000).fill(s);", roomy()).await;
    assert_eq!(o.error, None);
    let items = o.value.as_array().unwrap();
    let first = items[0].as_str().unwrap();
    assert!(
        first.starts_with("zzzz") && first.ends_with(" more characters]"),
        "{}",
        &first[first.len() - 40..]
    );
    assert!(o.value.to_string().len() <= Limits::default().max_result_bytes + 200);
    assert!(o.stats.result_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigint_too_large_to_print_is_measured_not_printed() {
    // Printing each of these in decimal took the host 1.2 s, past any deadline.
    // Squared until the engine refuses or past 100,000 bits (V8 allows a billion, slowly).
    let code = "let b = 7n; try { for (let i = 0; i < 16; i++) b *= b; } catch {}\n\
                console.log(Array(100).fill(Array(100).fill(b)));\n\
                console.log('%d %i', 10n, -3n);\n\
                return [b, -b, 5n, Number.isFinite(Number('1'))];";
    let limits = Limits { timeout: Duration::from_secs(5), ..Limits::default() };
    let o = run_with(code, limits).await;
    let ended = o.error.as_ref().map_or(json!("ok"), |e| json!(e.kind.code()));
    assert_eq!(ended, json!("ok"));
    let bits = o.value[0].as_str().unwrap().split_whitespace().nth(3).unwrap().parse::<usize>().unwrap();
    assert!(bits > 100_000, "{bits}");
    assert_eq!(
        o.value,
        json!([
            format!("[BigInt of about {bits} bits, too large to print]"),
            format!("[negative BigInt of about {bits} bits, too large to print]"),
            "5",
            true
        ])
    );
    assert!(o.logs[0]
        .message
        .starts_with(&format!("[\n  [\n    [BigInt of about {bits} bits, too large to print],")));
    assert_eq!(o.logs[1].message, "10n -3n");
    probe().await;
}
