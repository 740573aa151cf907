use codemode::{Limits, LogLevel};
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_levels_are_captured_in_order() {
    let o = run(
        "console.log('a'); console.info('b'); console.warn('c'); console.error('d'); console.debug('e');",
    )
    .await;
    let levels: Vec<LogLevel> = o.logs.iter().map(|l| l.level).collect();
    assert_eq!(levels, vec![LogLevel::Log, LogLevel::Info, LogLevel::Warn, LogLevel::Error, LogLevel::Debug]);
    assert_eq!(logs(&o), vec!["a", "b", "c", "d", "e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_formatted_like_node() {
    let o = run(r#"
console.log({ a: 1, b: 'two', c: [1, 2, 3], d: null, e: undefined, f: { g: { h: { i: 1 } } } });
console.log([1, 'a', true], 42, -0, 10n);
console.log('%s is %d years', 'Ada', 36.5, 'extra');
console.log({ 'not-ident': 1 }, [], {});
console.log(new Error('bad').message, function named() {}, Symbol('s'));
const cyc: any = { name: 'cyc' }; cyc.self = cyc; console.log(cyc);
console.log(Array.from({ length: 102 }, (_, i) => i).length);
"#)
    .await;
    assert_eq!(
        logs(&o),
        vec![
            "{\n  a: 1,\n  b: 'two',\n  c: [ 1, 2, 3 ],\n  d: null,\n  e: undefined,\n  f: { g: { h: [Object] } }\n}",
            "[ 1, 'a', true ] 42 -0 10n",
            "Ada is 36.5 years extra",
            "{ 'not-ident': 1 } [] {}",
            "bad [Function: named] Symbol(s)",
            "{ name: 'cyc', self: [Circular *] }",
            "102",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_arrays_are_elided() {
    let o = run("console.log(Array.from({ length: 105 }, (_, i) => i))").await;
    assert!(logs(&o)[0].ends_with("99,\n  ... 5 more items\n]"), "{}", logs(&o)[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_capped_with_a_marker() {
    let limits = Limits { max_log_lines: 3, ..Limits::default() };
    let o = run_with("for (let i = 0; i < 10; i++) console.log('line', i); return 'done'", limits).await;
    assert_eq!(o.value, json!("done"));
    assert_eq!(
        logs(&o),
        vec![
            "line 0",
            "line 1",
            "line 2",
            "[codemode] 7 more log line(s) dropped: the log is capped at 3 lines and 65536 bytes",
        ]
    );
    assert!(o.stats.logs_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhandled_rejections_are_reported_as_error_lines() {
    let o = run("Promise.reject(new Error('forgotten')); await new Promise(r => setTimeout(r, 5)); return 1")
        .await;
    assert_eq!(o.value, json!(1));
    assert_eq!(logs(&o), vec!["Unhandled promise rejection: forgotten"]);
}

// Each expected line is what Node 20 prints for the same call, except the two marked: `%j`
// never runs a `toJSON` (formatting runs no program code) and `%o` shows no hidden `length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_specifiers_and_special_objects_match_node() {
    let o = run(r#"
console.log('%s|%d|%i|%f|%j|%c|%%|%x', 'str', '42', -3.7, '1.5', { a: [1, 'b'] }, 'color: red');
console.log('%d %i %d', 10n, 7n, true);
console.log('missing %s and %d');
console.log(new Date(0), /ab+c/gi, Symbol(), Symbol('desc'));
class Point { x = 1; y = 2 }
console.log(new Point(), Object.create(null), { __proto__: null, k: 'v' });
console.log({ s: "it's\n" }, ['a\tb'], [`'"`]);
console.log([ , , 1, , ], 1.5e21, -1e-7, NaN, -Infinity);
console.log(function () {}, () => {}, async function af() {});
const e = new TypeError('bad thing'); e.stack = 'TypeError: bad thing\n    at somewhere'; console.log(e);
console.log('%j', { toJSON() { return 'ignored'; }, v: 1 }, '%o');
console.log('%o', [1]);
console.log(new Date(NaN), 'after');
console.log(Object.assign([1, , 3], { extra: 'x', '01': 'y', 4294967295: 'z' }));
const s = []; s[5] = 'a'; s[200] = 'b'; s.length = 300; console.log(s);
const h = []; h[4294967294] = 1; console.log(h);
const g = Array.from({ length: 99 }, (_, i) => 'x'); g[150] = 'y'; console.log(g.length, g.slice(95));
const d = []; Object.defineProperty(d, 0, { get() { return 1; }, enumerable: true }); d[1] = 2; console.log(d);
const n = [0]; Object.defineProperty(n, 1, { value: 1 }); Object.defineProperty(n, 'hidden', { value: 2 }); n.shown = 3; console.log(n);
const long = Array.from({ length: 150 }, (_, i) => i); long.tag = 't';
console.log(long);
"#)
    .await;
    assert_eq!(
        logs(&o),
        vec![
            "str|42|-3|1.5|{\"a\":[1,\"b\"]}||%|%x",
            "10n 7n 1",
            "missing %s and %d",
            "1970-01-01T00:00:00.000Z /ab+c/gi Symbol() Symbol(desc)",
            "Point { x: 1, y: 2 } [Object: null prototype] {} [Object: null prototype] { k: 'v' }",
            "{ s: \"it's\\n\" } [ 'a\\tb' ] [ `'\"` ]",
            "[ <2 empty items>, 1, <1 empty item> ] 1.5e+21 -1e-7 NaN -Infinity",
            "[Function (anonymous)] [Function (anonymous)] [AsyncFunction: af]",
            "TypeError: bad thing\n    at somewhere",
            "{\"v\":1} %o",
            "[ 1 ]",
            "Invalid Date after",
            "[ 1, <1 empty item>, 3, extra: 'x', '01': 'y', '4294967295': 'z' ]",
            "[ <5 empty items>, 'a', <194 empty items>, 'b', <99 empty items> ]",
            // Holes are walked by key, not index by index: this takes no time.
            "[ <4294967294 empty items>, 1 ]",
            "151 [ 'x', 'x', 'x', 'x', <51 empty items>, 'y' ]",
            "[ [Getter], 2 ]",
            "[ 0, 1, shown: 3 ]",
            // Node would group long numeric arrays in columns; the order of the tail is the
            // same: the items left out, then the array's other keys.
            format!(
                "[\n{}\n  ... 50 more items,\n  tag: 't'\n]",
                (0..100).map(|i| format!("  {i},")).collect::<Vec<_>>().join("\n")
            )
            .as_str(),
        ]
    );
}
