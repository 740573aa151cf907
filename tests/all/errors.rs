//! Errors that tell the agent how to fix the program: where a failed tool call was made, which
//! tool and code; which name was meant; where a forgotten `return` goes; what a timed-out
//! program was waiting on.

use std::time::Duration;

use codemode::{ErrorKind, Limits, PendingCall};
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncaught_tool_error_keeps_tool_code_position_and_the_agents_stack() {
    let code = "async function load(id: string) {\n  return await sheets.getRows({ sheetId: id });\n}\nconst rows = await load('nope');\nreturn rows.length;";
    let e = failure(code, ErrorKind::Exception).await;
    assert_eq!(
        (e.name.as_deref(), e.tool.as_deref(), e.code.as_deref()),
        (Some("ToolError"), Some("sheets.getRows"), Some("not_found"))
    );
    // Positions are the engine's for the call (QuickJS points inside the call's arguments).
    assert_eq!(
        json!([e.line, e.column]),
        crate::differences::expected("errors.tool_error_in_function.position", json!([2, 42]))
    );
    let stack = crate::differences::expected(
        "errors.tool_error_in_function.stack",
        json!("    at load (agent.ts:2:42)\n    at <anonymous> (agent.ts:4:20)"),
    );
    assert_eq!(json!(e.stack), stack);
    // The JSON form carries the same fields.
    let report = run(code).await.to_report();
    assert_eq!(
        (&report["error"]["tool"], &report["error"]["code"], &report["error"]["line"]),
        (&json!("sheets.getRows"), &json!("not_found"), &json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argument_error_is_a_type_error_at_the_call_with_its_tool() {
    let e = failure("const a = 1;\nawait t.getSum({ a, b: 'two' });", ErrorKind::Exception).await;
    assert_eq!(e.name.as_deref(), Some("TypeError"));
    assert_eq!(e.message, "t.getSum: invalid arguments at args.b: \"two\" is not of type \"number\"");
    assert_eq!(
        (e.line, e.column, e.tool.as_deref(), e.code.as_deref()),
        (Some(2), Some(9), Some("t.getSum"), None)
    );
    // Caught, it is still a TypeError with the path, as before.
    let v = value("try { await t.getSum({ a: 1 }); } catch (e) { return [e instanceof TypeError, e.name, e.path, e.tool]; }").await;
    assert_eq!(v, json!([true, "TypeError", "args", "t.getSum"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_tool_says_what_was_meant() {
    let e = failure("return await sheets.getRow({ sheetId: 'sales' });", ErrorKind::Exception).await;
    assert_eq!(
        (e.name.as_deref(), e.message.as_str()),
        (Some("TypeError"), "sheets.getRow is not a tool of sheets; did you mean sheets.getRows?")
    );
    assert_eq!(
        json!([e.line, e.column]),
        crate::differences::expected("errors.misspelt_tool.position", json!([1, 14]))
    );
    // Case and separators are ignored: the JS name of `get-sum` is `getSum`.
    let e = failure("return await t.get_sum({ a: 1, b: 2 });", ErrorKind::Exception).await;
    assert_eq!(e.message, "t.get_sum is not a tool of t; did you mean t.getSum?");
    // No close name: the namespace's tools are listed.
    let e = failure("return await sheets.deleteEverything();", ErrorKind::Exception).await;
    assert_eq!(
        e.message,
        "sheets.deleteEverything is not a tool of sheets; its tools are getRows, listSheets, updateRow"
    );
    // Probing a namespace the way the language does still works, and a caught mistake is an
    // ordinary TypeError.
    let v = value(
        "const ns: any = sheets;\n\
         let caught = '';\n\
         try { ns.nope(); } catch (e) { caught = e.name; }\n\
         return [ns.then, ns.toJSON, typeof ns[Symbol.iterator], (await sheets.listSheets()).length > 0, Object.keys(sheets), caught];",
    )
    .await;
    assert_eq!(
        v,
        json!([null, null, "undefined", true, ["getRows", "listSheets", "updateRow"], "TypeError"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_namespace_says_which_one_was_meant() {
    let e = failure("return await sheet.getRows({ sheetId: 'sales' });", ErrorKind::Exception).await;
    assert_eq!(e.message, "sheet is not defined; did you mean the tool namespace sheets?");
    assert_eq!(e.name.as_deref(), Some("ReferenceError"));
    assert_eq!(
        json!([e.line, e.column]),
        crate::differences::expected("errors.misspelt_namespace.position", json!([1, 14]))
    );
    // An undefined name close to no namespace is left as the engine says it.
    let e = failure("return totalAmount + 1;", ErrorKind::Exception).await;
    assert_eq!(e.message, "totalAmount is not defined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_forgets_return_gets_a_hint() {
    let o =
        run("const rows = await sheets.getRows({ sheetId: 'sales', limit: 3 });\nrows.map((r) => r.id)\n")
            .await;
    assert_eq!((o.error.as_ref(), &o.value), (None, &json!(null)));
    assert_eq!(
        o.hint.as_deref(),
        Some("the program returned nothing, and its last statement (line 2) is an expression whose value is dropped: write `return` before it to get its value back")
    );
    assert_eq!(o.to_report()["hint"], json!(o.hint.clone().unwrap()));
    // Statements for their effect, a returned value, an explicit `return;`: no hint.
    for code in [
        "console.log(1)",
        "let x = 0;\nx = 5",
        "let i = 0;\ni++",
        "return 1",
        "const a = 1;\nreturn;",
        "async () => { 1 }",
    ] {
        assert_eq!(run(code).await.hint, None, "{code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_names_the_calls_still_pending() {
    let limits =
        Limits { timeout: Duration::from_millis(300), max_concurrent_tool_calls: 2, ..Limits::default() };
    let o = run_with(
        "await Promise.all([t.sleep({ ms: 5000 }), t.sleep({ ms: 6000 }), t.sleep({ ms: 7000 })]);",
        limits,
    )
    .await;
    let e = o.error.unwrap();
    assert_eq!(e.kind, ErrorKind::Timeout);
    let shape: Vec<(&str, bool)> =
        e.pending.iter().map(|p: &PendingCall| (p.tool.as_str(), p.queued)).collect();
    assert_eq!(shape, vec![("t.sleep", false), ("t.sleep", false), ("t.sleep", true)]);
    assert!(e.pending.iter().all(|p| (250..2000).contains(&p.waited_ms)), "{:?}", e.pending);
    let expected = format!(
        "the program ran past its 300 ms deadline; still waiting on t.sleep ({} ms), t.sleep ({} ms), t.sleep (queued, {} ms)",
        e.pending[0].waited_ms, e.pending[1].waited_ms, e.pending[2].waited_ms
    );
    assert_eq!(e.message, expected);
    // Waiting on a timer only: nothing to name.
    let limits = Limits { timeout: Duration::from_millis(100), ..Limits::default() };
    let e = run_with("await new Promise((r) => setTimeout(r, 5000));", limits).await.error.unwrap();
    assert_eq!((e.message.as_str(), e.pending.len()), ("the program ran past its 100 ms deadline", 0));
}
