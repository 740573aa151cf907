//! Sessions: programs of one session share a sandbox (top-level declarations and `globalThis`
//! carry over, as in a REPL), `codemode.store` outlives the sandbox, and every end of a session
//! the caller did not ask for is reported on its next use.

use std::time::Duration;

use codemode::{Engine, ErrorKind, ExecuteOptions, Limits, SessionLimits, TypeCheck};
use serde_json::json;

use crate::harness::*;

fn engine_with(limits: SessionLimits) -> Engine {
    crate::harness::builder().registry(registry()).sessions(limits).workers(2).build().unwrap()
}

#[tokio::test]
async fn top_level_declarations_and_globals_carry_over_within_a_session_only() {
    let engine = engine_with(SessionLimits::default());
    let a = engine.session("a");
    let first = a
        .execute(
            "const rows = [1, 2, 3];\nlet total = rows.length;\nvar note;\nfunction double(x: number) { return x * 2 }\n\
             class Box { constructor(public v: number) {} }\nconst { p, q: [r] } = { p: 'p', q: ['r'] };\nglobalThis.extra = 'g';\nreturn total;",
            ExecuteOptions::default(),
        )
        .await;
    // Parameter properties need a transform: refused as syntax, nothing declared.
    assert_eq!(first.error.as_ref().map(|e| e.kind), Some(ErrorKind::Syntax), "{:?}", first.error);
    let first = a
        .execute(
            "const rows = [1, 2, 3];\nlet total = rows.length\nvar note;\nfunction double(x: number) { return x * 2 }\n\
             class Box { v: number; constructor(v: number) { this.v = v } }\nglobalThis.extra = 'g'\n\
             const { p, q: [r] } = { p: 'p', q: ['r'] };\ntotal += 1;\nreturn total;",
            ExecuteOptions::default(),
        )
        .await;
    assert!(first.is_ok(), "{:?}", first.error);
    assert_eq!(first.value, json!(4));
    let info = first.session.clone().unwrap();
    assert_eq!((info.id.as_str(), info.execution, info.reset), ("a", 2, None));

    let second = a
        .execute(
            "return [rows, total, note, double(21), new Box(5).v, p, r, extra, typeof codemode.store];",
            ExecuteOptions::default(),
        )
        .await;
    assert!(second.is_ok(), "{:?}", second.error);
    assert_eq!(second.value, json!([[1, 2, 3], 4, null, 42, 5, "p", "r", "g", "function"]));
    assert_eq!(second.session.unwrap().execution, 3);

    // Another session, and no session, see none of it.
    let b = engine
        .session("b")
        .execute("return typeof rows + ' ' + typeof extra;", ExecuteOptions::default())
        .await;
    assert_eq!(b.value, json!("undefined undefined"));
    let none = engine.execute("return typeof rows;", ExecuteOptions::default()).await;
    assert_eq!((none.value, none.session), (json!("undefined"), None));

    // Redeclaring in a later program replaces, as a REPL does.
    let again = a.execute("const rows = ['x'];\nreturn rows;", ExecuteOptions::default()).await;
    assert_eq!(again.value, json!(["x"]));
    assert_eq!(a.execute("return rows.length;", ExecuteOptions::default()).await.value, json!(1));
    assert_eq!(engine.sessions(), ["a", "b"]);
    assert!(a.close());
    assert!(!a.close());
    let after = a.execute("return typeof rows;", ExecuteOptions::default()).await;
    assert_eq!(after.value, json!("undefined"));
    assert_eq!(after.session.unwrap(), codemode::SessionInfo { id: "a".into(), execution: 1, reset: None });
}

#[tokio::test]
async fn errors_in_a_session_keep_their_positions_and_the_session() {
    let engine = engine_with(SessionLimits::default());
    let s = engine.session("s");
    let e = s.execute("const a = 1; const b = 2;\nthrow new Error('x');", ExecuteOptions::default()).await;
    let error = e.error.unwrap();
    assert_eq!(error.kind, ErrorKind::Exception);
    assert_eq!(
        json!([error.line, error.column]),
        crate::differences::expected("sessions.error.position", json!([2, 11]))
    );
    // The program threw after declaring: what it declared stays.
    let next = s.execute("return a + b;", ExecuteOptions::default()).await;
    assert_eq!(next.value, json!(3));
    // Columns of the first line stay the agent's, after the declarations' preamble.
    let e = s.execute("const c = 3; undefinedThing();", ExecuteOptions::default()).await.error.unwrap();
    assert_eq!(e.kind, ErrorKind::Exception);
    assert_eq!(
        json!([e.line, e.column]),
        crate::differences::expected("sessions.undefined_name.position", json!([1, 14]))
    );
    assert_eq!(e.message, "undefinedThing is not defined");
}

#[tokio::test]
async fn stored_values_survive_a_sandbox_replaced_after_memory_limit() {
    let engine = engine_with(SessionLimits::default());
    let s = engine.session("mem");
    let stored = s
        .execute(
            "const kept = 'declared';\nawait codemode.store('rows', [{ id: 1 }, { id: 2 }]);\nawait codemode.store('n', 7);\nreturn await codemode.load('n');",
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(stored.value, json!(7), "{:?}", stored.error);
    let limits = Limits { memory_bytes: 8 << 20, ..Limits::default() };
    let blown = s
        .execute(
            "const big = []; while (true) big.push('x'.repeat(1000) + big.length);",
            ExecuteOptions { limits: Some(limits), ..Default::default() },
        )
        .await;
    assert_eq!(blown.error.as_ref().map(|e| e.kind), Some(ErrorKind::MemoryLimit));
    let reset = blown.session.unwrap().reset.unwrap();
    assert_eq!(reset.reason, "memory_limit");
    assert_eq!(
        reset.message,
        "the execution ended with memory_limit, so the session's sandbox was replaced: the declarations and \
         globals of its earlier programs are gone; values kept with codemode.store remain"
    );
    let after = s
        .execute(
            "return [typeof kept, await codemode.load('rows'), await codemode.load('missing')];",
            ExecuteOptions::default(),
        )
        .await;
    assert!(after.is_ok(), "{:?}", after.error);
    assert_eq!(after.value, json!(["undefined", [{ "id": 1 }, { "id": 2 }], null]));
    let info = after.session.unwrap();
    assert_eq!((info.execution, info.reset), (3, None));
    // Removing a value, and the store outside a session.
    let removed = s
        .execute(
            "await codemode.store('n', undefined);\nreturn await codemode.load('n') === undefined;",
            Default::default(),
        )
        .await;
    assert_eq!(removed.value, json!(true));
    let outside = engine.execute("await codemode.store('k', 1);", ExecuteOptions::default()).await;
    let e = outside.error.unwrap();
    assert_eq!(
        e.message,
        "codemode.store: this execution is not part of a session, so nothing it stores could outlive it; run it \
         in a session to keep values between executions"
    );
    assert_eq!(e.line, Some(1));
}

#[tokio::test]
async fn a_timeout_replaces_the_sandbox_and_later_programs_run() {
    let engine = engine_with(SessionLimits::default());
    let s = engine.session("t");
    assert!(s.execute("var x = 1;", ExecuteOptions::default()).await.is_ok());
    let limits = Limits { timeout: Duration::from_millis(100), ..Limits::default() };
    let out =
        s.execute("while (true) {}", ExecuteOptions { limits: Some(limits), ..Default::default() }).await;
    assert_eq!(out.error.map(|e| e.kind), Some(ErrorKind::Timeout));
    assert_eq!(out.session.unwrap().reset.unwrap().reason, "timeout");
    let next = s.execute("return typeof x;", ExecuteOptions::default()).await;
    assert_eq!(next.value, json!("undefined"));
}

#[tokio::test]
async fn the_store_and_the_heap_keep_the_session_limits() {
    let engine =
        engine_with(SessionLimits { store_bytes: 100, memory_bytes: 24 << 20, ..SessionLimits::default() });
    let s = engine.session("limits");
    let full = s.execute("await codemode.store('a', 'x'.repeat(200));", ExecuteOptions::default()).await;
    let e = full.error.unwrap();
    assert!(
        e.message.starts_with("codemode.store: the session's store would hold 203 bytes, more than its 100"),
        "{}",
        e.message
    );
    // Each execution adds 8 MB that stays reachable: the third passes the session's 24 MB.
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let out = s
            .execute(
                "globalThis.keep = globalThis.keep ?? []; keep.push('y'.repeat(8 << 20)); return keep.length;",
                ExecuteOptions::default(),
            )
            .await;
        kinds.push(out.error.map(|e| e.kind.code()).unwrap_or("ok"));
    }
    assert_eq!(
        json!(kinds),
        crate::differences::expected("sessions.heap_cap.kinds", json!(["ok", "ok", "memory_limit"]))
    );
}

#[tokio::test]
async fn evicted_and_expired_sessions_say_so_on_their_next_use() {
    let engine = engine_with(SessionLimits { max_sessions: 2, ..SessionLimits::default() });
    for name in ["one", "two"] {
        engine.session(name).execute("const here = 1;", ExecuteOptions::default()).await;
    }
    engine.session("two").execute("return here;", ExecuteOptions::default()).await;
    // A third session ends the least recently used one.
    engine.session("three").execute("return 1;", ExecuteOptions::default()).await;
    assert_eq!(engine.sessions(), ["three", "two"]);
    let back = engine.session("one").execute("return typeof here;", ExecuteOptions::default()).await;
    assert_eq!(back.value, json!("undefined"));
    let info = back.session.unwrap();
    let reset = info.reset.unwrap();
    assert_eq!((info.execution, reset.reason.as_str()), (1, "evicted"));
    assert_eq!(
        reset.message,
        "this session had ended to make room: at most 2 sessions live at once, and it was the least recently \
         used; its declarations, globals and stored values are gone"
    );

    let engine =
        engine_with(SessionLimits { idle_timeout: Duration::from_millis(200), ..SessionLimits::default() });
    engine.session("idle").execute("const here = 1;", ExecuteOptions::default()).await;
    // Idle sandbox threads end it on their own (they sweep every few seconds).
    eventually(Duration::from_secs(15), "the idle session to end", || engine.sessions().is_empty()).await;
    let back = engine.session("idle").execute("return typeof here;", ExecuteOptions::default()).await;
    assert_eq!(back.value, json!("undefined"));
    let reset = back.session.unwrap().reset.unwrap();
    assert_eq!(
        (reset.reason.as_str(), reset.message.as_str()),
        (
            "expired",
            "this session had ended after 0.2 s idle (its idle timeout); its declarations, globals and stored \
             values are gone"
        )
    );
}

#[tokio::test]
async fn the_checker_sees_what_earlier_programs_of_the_session_declared() {
    let engine = crate::harness::builder()
        .registry(registry())
        .type_checker(type_checker("sessions"))
        .workers(2)
        .build()
        .unwrap();
    let strict = || ExecuteOptions {
        limits: Some(Limits { typecheck: TypeCheck::Strict, ..Limits::default() }),
        ..Default::default()
    };
    let s = engine.session("typed");
    let first = s
        .execute(
            "const rows = [{ id: 1, amount: 2.5 }];\nfunction label(n: number) { return `#${n}` }\nreturn rows.length;",
            strict(),
        )
        .await;
    assert!(first.is_ok(), "{:?}", first.error);
    let ok = s.execute("return rows.map(r => label(r.id) + r.amount);", strict()).await;
    assert!(ok.is_ok(), "{:?}", ok.error);
    assert_eq!(ok.value, json!(["#12.5"]));
    // A misspelt property of an earlier declaration is caught before anything runs.
    let wrong = s.execute("console.log('ran');\nreturn rows[0].amuont;", strict()).await;
    let e = wrong.error.unwrap();
    assert_eq!((e.kind, e.line), (ErrorKind::TypeError, Some(2)));
    assert!(e.message.starts_with("TS2551: Property 'amuont' does not exist"), "{}", e.message);
    assert!(wrong.logs.is_empty());
    // A later declaration of the same name wins, with its own type.
    assert!(s.execute("const rows = 'text';", strict()).await.is_ok());
    let e = s.execute("return rows.map(x => x);", strict()).await.error.unwrap();
    assert!(
        e.message.starts_with("TS2339: Property 'map' does not exist on type '\"text\"'"),
        "{}",
        e.message
    );
    // A program of another session does not see them.
    let other = engine.session("other").execute("return rows;", strict()).await.error.unwrap();
    assert!(other.message.starts_with("TS2304: Cannot find name 'rows'"), "{}", other.message);
}

#[tokio::test]
async fn daemon_sessions_are_the_connections_own_unless_shared() {
    use crate::daemon::{connect, daemon, no_answer};
    let d = daemon();
    let mut a = connect(&d);
    let mut b = connect(&d);
    let exec = |code: &str, session: serde_json::Value| json!({ "code": code, "session": session });
    let r = a
        .call(
            1,
            "code/execute",
            exec("const mine = 'a'; await codemode.store('k', 1); return 1;", json!("s")),
            no_answer,
        )
        .await;
    assert_eq!(r["result"]["session"], json!({ "id": "s", "execution": 1, "shared": false }), "{r}");
    // The same name on another connection is another session.
    let r = b
        .call(
            1,
            "code/execute",
            exec("return [typeof mine, await codemode.load('k')];", json!("s")),
            no_answer,
        )
        .await;
    assert_eq!(r["result"]["value"], json!(["undefined", null]));
    let r = a
        .call(2, "code/execute", exec("return [mine, await codemode.load('k')];", json!("s")), no_answer)
        .await;
    assert_eq!(r["result"]["value"], json!(["a", 1]));
    // A shared session is the same for both.
    let shared = |code: &str| json!({ "code": code, "session": "team", "shared": true });
    a.call(3, "code/execute", shared("const common = 42;"), no_answer).await;
    let r = b.call(2, "code/execute", shared("return common;"), no_answer).await;
    assert_eq!(r["result"]["value"], json!(42));
    assert_eq!(r["result"]["session"], json!({ "id": "team", "execution": 2, "shared": true }));
    // Closing ends it; a second close says it was not live.
    let r = a.call(4, "session/close", json!({ "session": "s" }), no_answer).await;
    assert_eq!(r["result"], json!({ "closed": true }));
    let r = a.call(5, "session/close", json!({ "session": "s" }), no_answer).await;
    assert_eq!(r["result"], json!({ "closed": false }));
    let r = a.call(6, "code/execute", exec("return typeof mine;", json!("s")), no_answer).await;
    assert_eq!(
        (r["result"]["value"].clone(), r["result"]["session"]["execution"].clone()),
        (json!("undefined"), json!(1))
    );
    // Bad parameters are refused with what is wrong.
    let r = a.call(7, "code/execute", exec("return 1;", json!(5)), no_answer).await;
    assert_eq!(r["error"]["message"], "session must be a string of 1 to 256 bytes");
    let r = a.call(8, "code/execute", json!({ "code": "return 1;", "shared": true }), no_answer).await;
    assert_eq!(r["error"]["message"], "shared needs a session name");
    let r = a.call(9, "session/close", json!({}), no_answer).await;
    assert_eq!(
        r["error"]["message"],
        "session (the name given to code/execute) must be a string of 1 to 256 bytes"
    );
    // A connection's own sessions end with it; shared ones stay.
    let stats = a.call(10, "stats", json!({}), no_answer).await;
    assert_eq!(stats["result"]["sessions"], json!(3));
    drop(b);
    for attempt in 0u64.. {
        let stats = a.call(11 + attempt, "stats", json!({}), no_answer).await;
        if stats["result"]["sessions"] == json!(2) {
            break;
        }
        assert!(attempt < 500, "b's session did not end with it: {stats}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `execute_code` with `arguments` and returns the call's result.
pub(crate) async fn mcp_execute(
    lines: &mut Lines,
    w: &mut tokio::io::WriteHalf<tokio::io::DuplexStream>,
    id: u64,
    arguments: serde_json::Value,
) -> serde_json::Value {
    use tokio::io::AsyncWriteExt;
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "execute_code", "arguments": arguments}});
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    loop {
        let m: serde_json::Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        if m["id"] == json!(id) {
            return m["result"]["structuredContent"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mcp_client_keeps_its_own_session_and_may_name_more() {
    use codemode::mcp::{McpConfig, McpServer};
    let engine = crate::harness::builder().registry(registry()).workers(2).build().unwrap();
    let server = McpServer::new(engine.clone());
    let (mut lines, mut w) = in_memory_session(server.clone(), json!({})).await;
    let (mut lines2, mut w2) = in_memory_session(server, json!({})).await;
    let r = mcp_execute(&mut lines, &mut w, 1, json!({"code": "const seen = 'one'; return 1"})).await;
    assert_eq!(r["session"], json!({"id": "default", "execution": 1}), "{r}");
    let r = mcp_execute(&mut lines, &mut w, 2, json!({"code": "return seen"})).await;
    assert_eq!(r["value"], json!("one"), "{r}");
    // Another client, and another named session of the same client, see nothing of it.
    let r = mcp_execute(&mut lines2, &mut w2, 1, json!({"code": "return typeof seen"})).await;
    assert_eq!(r["value"], json!("undefined"));
    let r =
        mcp_execute(&mut lines, &mut w, 3, json!({"code": "return typeof seen", "session": "side"})).await;
    assert_eq!((r["value"].clone(), r["session"]["id"].clone()), (json!("undefined"), json!("side")));
    assert_eq!(engine.sessions().len(), 3);
    // A client's sessions end when it goes.
    drop((lines2, w2));
    eventually(Duration::from_secs(10), "the second client's session to end", || {
        engine.sessions().len() == 2
    })
    .await;

    // With sessions off, each call starts from nothing unless it names one.
    let config = McpConfig { sessions: false, ..McpConfig::default() };
    let (mut lines, mut w) =
        in_memory_session(McpServer::with_config(engine.clone(), config), json!({})).await;
    mcp_execute(&mut lines, &mut w, 1, json!({"code": "var gone = 1"})).await;
    let r = mcp_execute(&mut lines, &mut w, 2, json!({"code": "return typeof gone"})).await;
    assert_eq!((r["value"].clone(), r.get("session")), (json!("undefined"), None));
}

#[test]
fn the_prompt_says_whether_state_persists() {
    let registry = registry();
    let limits = Limits::default();
    let with = codemode::prompt(&registry, &limits, true);
    assert!(with.contains(
        "- State persists between your programs: top-level `const`/`let`/`var`/`function`/`class` declarations"
    ));
    assert!(!with.contains("starts from nothing"));
    let without = codemode::prompt(&registry, &limits, false);
    assert!(without.contains("- Each program starts from nothing: what one declares is gone for the next.\n"));
    assert!(!without.contains("persists"));
}
