//! Program text edge cases: every line terminator keeps positions, a byte-order mark changes
//! nothing, the wrapper cannot be closed from inside, and oversized programs or impossible
//! limits are refused with a clear `limit` error before anything is parsed.

use codemode::{ErrorKind, Limits};
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_terminator_keeps_line_column_and_stack() {
    for sep in ["\n", "\r\n", "\r", "\u{2028}", "\u{2029}"] {
        let code = format!("const a = 1;{sep}const b = 2;{sep}throw new Error('x');");
        let e = failure(&code, ErrorKind::Exception).await;
        assert_eq!(
            json!([e.line, e.column]),
            crate::differences::expected("text.throw.position", json!([3, 11])),
            "{sep:?}"
        );
        let stack =
            crate::differences::expected("text.throw.stack", json!("    at <anonymous> (agent.ts:3:11)"));
        assert_eq!(json!(e.stack), stack, "{sep:?}");
        let code = format!("const a = 1;{sep}const = 2;");
        let e = failure(&code, ErrorKind::Syntax).await;
        assert_eq!((e.line, e.column), (Some(2), Some(7)), "{sep:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_changes_nothing() {
    assert_eq!(value("\u{feff}async () => 42").await, json!(42));
    assert_eq!(value("\u{feff}return 6 * 7").await, json!(42));
    let with = failure("\u{feff}let a = 1; null.x", ErrorKind::Exception).await;
    let without = failure("let a = 1; null.x", ErrorKind::Exception).await;
    assert_eq!((with.line, with.column, with.stack), (without.line, without.column, without.stack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_cannot_be_closed_from_inside() {
    for (code, column, closer) in [
        ("async () => 1); globalThis.x = 1; (0", 14, ')'),
        ("}); globalThis.x = 1; (async () => {", 1, '}'),
        ("return 1 ]", 10, ']'),
    ] {
        let e = failure(code, ErrorKind::Syntax).await;
        assert_eq!(
            (e.message.clone(), e.line, e.column),
            (
                format!("unexpected `{closer}`: it closes a bracket that was never opened"),
                Some(1),
                Some(column)
            ),
            "{code}"
        );
    }
    // Nothing ran: a later program in the same engine finds no such global.
    assert_eq!(value("return typeof (globalThis as any).x").await, json!("undefined"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_program_and_an_impossible_limit_are_refused_clearly() {
    let big = format!("return {}1", "1+".repeat(2_600_000));
    let o = run(&big).await;
    let e = o.error.unwrap();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::Limit,
            "the program is 5200008 bytes, more than the 1048576 bytes accepted (max_program_bytes)"
        )
    );
    let limits = Limits { max_program_bytes: 10, ..Limits::default() };
    assert_eq!(run_with("return 12345678", limits).await.error.unwrap().kind, ErrorKind::Limit);
    let limits = Limits { memory_bytes: 0, ..Limits::default() };
    let e = run_with("return 1", limits).await.error.unwrap();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Limit, "a memory limit of 0 bytes is below the 1048576 bytes any program needs (memory_mb must be at least 1)")
    );
    // A program of a million lines within the size limit runs.
    let lines = format!("{}return 1", "\n".repeat(1_000_000));
    assert_eq!(value(&lines).await, json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reports_the_same_limit_errors_and_keeps_serving() {
    let d = crate::daemon::daemon();
    let mut c = crate::daemon::connect(&d);
    let r = c
        .call(
            1,
            "code/execute",
            json!({"code": "return 1", "limits": {"memory_mb": 0}}),
            crate::daemon::no_answer,
        )
        .await;
    assert_eq!(r["result"]["error"]["kind"], json!("limit"), "{r}");
    let r =
        c.call(2, "code/execute", json!({"code": "\u{feff}async () => 42"}), crate::daemon::no_answer).await;
    assert_eq!(r["result"]["value"], json!(42), "{r}");
}
