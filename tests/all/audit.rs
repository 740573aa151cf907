//! Every tool call of an execution can be recorded and read back: what was called, with how
//! much (size and hash, never the arguments), when, for how long, and what came of it.

use codemode::ExecuteOptions;
use serde_json::json;

use crate::harness::*;

const PROGRAM: &str = "await sheets.listSheets();\n\
    try { await sheets.getRows({ sheetId: 'nope' }) } catch {}\n\
    try { await sheets.getRows({ sheetId: 5 } as any) } catch {}\n\
    return 1;";

#[tokio::test]
async fn an_audited_execution_records_each_call_with_its_outcome() {
    let o = engine().execute(PROGRAM, ExecuteOptions { audit: true, ..Default::default() }).await;
    assert!(o.is_ok(), "{:?}", o.error);
    let summary: Vec<_> = o
        .calls
        .iter()
        .map(|c| (c.tool.as_str(), c.argument_bytes, c.outcome.as_str(), c.error_code.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("sheets.listSheets", 2, "ok", None),
            ("sheets.getRows", 18, "error", Some("not_found")),
            ("sheets.getRows", 13, "error", Some("invalid_arguments")),
        ]
    );
    // SHA-256 of `{}`.
    assert_eq!(
        o.calls[0].argument_sha256,
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert!(o.calls[0].result_bytes.is_some_and(|b| b > 10));
    assert!(o.calls.windows(2).all(|w| w[0].started_ms <= w[1].started_ms));
    assert!(o.calls.iter().all(|c| c.duration_ms.is_some_and(|d| d >= 0.0)));
    // The arguments themselves are not in the record.
    assert!(!serde_json::to_string(&o.calls).unwrap().contains("nope"));
    // Not asked for, nothing is recorded.
    assert!(engine().execute(PROGRAM, ExecuteOptions::default()).await.calls.is_empty());
}

#[tokio::test]
async fn the_daemon_keeps_each_executions_calls_for_code_calls() {
    use crate::daemon::{connect, daemon, no_answer};
    let d = daemon();
    let mut c = connect(&d);
    let r = c.call(7, "code/execute", json!({ "code": PROGRAM }), no_answer).await;
    assert_eq!(r["result"]["value"], json!(1), "{r}");
    assert!(r["result"].get("calls").is_none(), "{r}");
    let calls = c.call(8, "code/calls", json!({ "id": 7 }), no_answer).await;
    let tools: Vec<_> =
        calls["result"]["calls"].as_array().unwrap().iter().map(|c| c["tool"].clone()).collect();
    assert_eq!(tools, [json!("sheets.listSheets"), json!("sheets.getRows"), json!("sheets.getRows")]);
    let r = c.call(9, "code/execute", json!({ "code": PROGRAM, "calls": true }), no_answer).await;
    let outcomes: Vec<_> =
        r["result"]["calls"].as_array().unwrap().iter().map(|c| c["outcome"].clone()).collect();
    assert_eq!(outcomes, [json!("ok"), json!("error"), json!("error")]);
    let missing = c.call(10, "code/calls", json!({ "id": 99 }), no_answer).await;
    assert_eq!(
        missing["error"]["message"],
        "no finished execution with id 99 on this connection (the last 64 are kept)"
    );
}
