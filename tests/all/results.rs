use codemode::{ErrorKind, Limits};
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_conversion_follows_json_rules() {
    let v = value("return { a: undefined, f() {}, n: NaN, i: Infinity, big: 12n ** 20n, d: new Date(0), arr: [undefined, () => 1, 1.5, -0], nested: { x: null } }").await;
    assert_eq!(
        v,
        json!({"n": null, "i": null, "big": "3833759992447475122176", "d": "1970-01-01T00:00:00.000Z", "arr": [null, null, 1.5, 0], "nested": {"x": null}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getters_and_to_json_never_run_on_the_result() {
    // Either would fail the run if the host called it.
    let v = value("const o: any = { plain: 1, toJSON() { throw new Error('toJSON ran') } };\nObject.defineProperty(o, 'g', { get() { throw new Error('getter ran') }, enumerable: true });\nreturn o;").await;
    assert_eq!(v, json!({"plain": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyclic_result_is_a_clear_error() {
    let e =
        failure("const a: any = { b: { c: [] } }; a.b.c.push(a); return a;", ErrorKind::InvalidResult).await;
    assert_eq!(e.message, "the value has a cycle at $.b.c[0]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_result_is_a_clear_error() {
    let e = failure("return () => 1", ErrorKind::InvalidResult).await;
    assert_eq!(e.message, "the result is a function, which has no JSON form");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_thenable_results() {
    let e = failure("return new Proxy({}, {})", ErrorKind::InvalidResult).await;
    assert_eq!(e.message, "a Proxy at $ cannot leave the sandbox");
    assert_eq!(value("return { then(r: any) { r(5) } }").await, json!(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_result_is_cut_structurally() {
    let limits = Limits { max_result_bytes: 1000, ..Limits::default() };
    let o = run_with(
        "return { rows: Array.from({ length: 10000 }, (_, i) => ({ i })), tail: 'x'.repeat(5000) }",
        limits,
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(o.stats.result_truncated);
    let text = o.value.to_string();
    assert!(text.len() < 1200, "{}", text.len());
    let rows = o.value["rows"].as_array().unwrap();
    assert_eq!(rows[0], json!({"i": 0}));
    let marker = rows.last().unwrap().as_str().unwrap();
    assert!(marker.starts_with("… [") && marker.ends_with(" more items]"), "{marker}");
    assert_eq!(o.value["…"], json!("[1 more keys]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_string_result_is_cut_with_a_marker() {
    let limits = Limits { max_result_bytes: 100, ..Limits::default() };
    let o = run_with("return 'y'.repeat(1000)", limits).await;
    let s = o.value.as_str().unwrap();
    assert_eq!(s, format!("{}… [902 more characters]", "y".repeat(98)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_surrogates_become_replacement_characters() {
    let v = value("return ['\\uD800x', 'a\\uDFFF\\uD800b', '\\uD83D\\uDE00']").await;
    assert_eq!(v, serde_json::json!(["\u{FFFD}x", "a\u{FFFD}\u{FFFD}b", "😀"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_surrogates_in_keys_arguments_and_logs_become_replacement_characters() {
    // Keys too, on every path a value leaves the sandboxes by; and text that only looks like
    // an escape (a backslash, then `ud800`) is kept.
    let o = run("const sent = await t.echo({ ['k\\uD800']: '\\uDFFFx', text: '\\\\ud800' });\n\
         console.log({ ['l\\uDC00']: 1 });\n\
         return { sent, ['r\\uD800']: ['\\\\\\uD800'] }")
    .await;
    assert_eq!(o.error, None);
    assert_eq!(
        o.value,
        serde_json::json!({
            "sent": {"k\u{FFFD}": "\u{FFFD}x", "text": "\\ud800"},
            "r\u{FFFD}": ["\\\u{FFFD}"]
        })
    );
    assert_eq!(o.logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["{ 'l\u{FFFD}': 1 }"]);
}
