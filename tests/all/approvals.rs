//! Tools that need a person's approval: a call pauses the execution with nothing sent to the
//! tool, and the execution goes on when someone approves (the call runs) or rejects it (the
//! call throws a `ToolError` whose code is `rejected`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use codemode::{Engine, ExecuteOptions, Limits, Outcome, Registry, ResumeError, Tool, ToolError};
use serde_json::{json, Value};

/// `mail.send` (needs approval, records what it sent), `mail.drafts` (does not), and the
/// record of sends.
fn mail() -> (Registry, Arc<Mutex<Vec<Value>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    let record = Arc::clone(&sent);
    let schema = json!({"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]});
    r.register(
        "mail",
        Tool::new("send", "Send a mail.", schema, move |args: Value| {
            let record = Arc::clone(&record);
            async move {
                record.lock().unwrap().push(args["to"].clone());
                Ok::<_, ToolError>(json!({"sent": true, "to": args["to"]}))
            }
        })
        .requiring_approval(),
    )
    .unwrap();
    r.register(
        "mail",
        Tool::new("drafts", "List drafts.", json!({"type": "object"}), |_args: Value| async move {
            Ok::<_, ToolError>(json!(["a", "b"]))
        }),
    )
    .unwrap();
    (r, sent)
}

fn engine(registry: Registry) -> Engine {
    crate::harness::builder().registry(registry).workers(2).build().unwrap()
}

fn audited() -> ExecuteOptions {
    ExecuteOptions { audit: true, ..Default::default() }
}

fn paused(o: &Outcome) -> &codemode::Paused {
    o.paused.as_ref().unwrap_or_else(|| panic!("not paused: {:?} {:?}", o.error, o.value))
}

const SEND: &str = "console.log('drafts', (await mail.drafts()).length);\n\
    const r = await mail.send({ to: 'ada@example.com' });\n\
    console.log('after');\n\
    return r;";

#[tokio::test]
async fn an_approved_call_runs_after_the_pause_and_the_execution_finishes() {
    let (registry, sent) = mail();
    let engine = engine(registry);
    let o = engine.execute(SEND, audited()).await;
    let p = paused(&o);
    assert!(!o.is_ok() && o.error.is_none());
    assert_eq!((p.tool.as_str(), &p.arguments), ("mail.send", &json!({"to": "ada@example.com"})));
    assert!(p.approval.starts_with("apr_") && p.approval.len() == 28, "{}", p.approval);
    assert!(p.pending_since.ends_with('Z') && p.pending_since.len() == 24, "{}", p.pending_since);
    assert_eq!(o.logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["drafts 2"]);
    // Nothing reached the tool.
    assert!(sent.lock().unwrap().is_empty());
    assert_eq!(o.calls.iter().map(|c| c.approval.as_deref()).collect::<Vec<_>>(), [None, Some("pending")]);
    let report = o.to_report();
    assert_eq!(report["ok"], json!(false));
    assert_eq!(report["paused"]["tool"], json!("mail.send"));

    let done = engine.resume(&p.approval, true, None).await.unwrap();
    assert!(done.is_ok(), "{:?}", done.error);
    assert_eq!(done.value, json!({"sent": true, "to": "ada@example.com"}));
    assert_eq!(done.logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["after"]);
    assert_eq!(*sent.lock().unwrap(), [json!("ada@example.com")]);
    // The audit of the whole execution: the approved call ran and succeeded.
    let record: Vec<_> =
        done.calls.iter().map(|c| (c.tool.as_str(), c.outcome.as_str(), c.approval.as_deref())).collect();
    assert_eq!(record, [("mail.drafts", "ok", None), ("mail.send", "ok", Some("approved"))]);
    assert_eq!(done.stats.tool_calls, 2);
    // Decided once: the id is spent.
    assert_eq!(
        engine.resume(&p.approval, true, None).await.unwrap_err(),
        ResumeError::Unknown(p.approval.clone())
    );
}

#[tokio::test]
async fn a_rejected_call_throws_a_tool_error_the_program_may_catch() {
    let (registry, sent) = mail();
    let engine = engine(registry);
    let code = "try { await mail.send({ to: 'bob@example.com' }); return 'sent' }\n\
        catch (e) { return [e.name, e.code, e.tool, e.message] }";
    let o = engine.execute(code, audited()).await;
    let approval = paused(&o).approval.clone();
    let done = engine.resume(&approval, false, Some("not this one")).await.unwrap();
    assert_eq!(
        done.value,
        json!(["ToolError", "rejected", "mail.send", "mail.send: the call was rejected: not this one"])
    );
    assert!(sent.lock().unwrap().is_empty());
    assert_eq!(done.calls[0].approval.as_deref(), Some("rejected"));
    assert_eq!(done.calls[0].error_code.as_deref(), Some("rejected"));
    // Uncaught, the rejection is the execution's error, at the call.
    let o = engine
        .execute("const x = 1;\nawait mail.send({ to: 'c@example.com' });", ExecuteOptions::default())
        .await;
    let done = engine.resume(&paused(&o).approval, false, None).await.unwrap();
    let e = done.error.unwrap();
    assert_eq!(
        (e.code.as_deref(), e.tool.as_deref(), e.line),
        (Some("rejected"), Some("mail.send"), Some(2))
    );
}

#[tokio::test]
async fn paused_time_counts_in_neither_the_deadline_nor_the_duration() {
    let (registry, _) = mail();
    let engine = engine(registry);
    let limits = Limits { timeout: Duration::from_millis(300), ..Limits::default() };
    let o = engine
        .execute(
            "await mail.send({ to: 'a@b.c' });\nreturn 'done';",
            ExecuteOptions { limits: Some(limits), ..Default::default() },
        )
        .await;
    let approval = paused(&o).approval.clone();
    // Longer than the execution's whole deadline.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let done = engine.resume(&approval, true, None).await.unwrap();
    assert_eq!(done.value, json!("done"), "{:?}", done.error);
    assert!(done.stats.duration < Duration::from_millis(300), "{:?}", done.stats.duration);
}

#[tokio::test]
async fn calls_made_together_pause_one_at_a_time() {
    let (registry, sent) = mail();
    let engine = engine(registry);
    let code =
        "const r = await Promise.allSettled([mail.send({ to: 'x@y.z' }), mail.send({ to: 'w@y.z' })]);\n\
        return r.map(s => s.status);";
    let first = engine.execute(code, ExecuteOptions::default()).await;
    assert_eq!(paused(&first).arguments, json!({"to": "x@y.z"}));
    let second = engine.resume(&paused(&first).approval, true, None).await.unwrap();
    assert_eq!(paused(&second).arguments, json!({"to": "w@y.z"}));
    assert_ne!(paused(&second).approval, paused(&first).approval);
    let done = engine.resume(&paused(&second).approval, false, None).await.unwrap();
    assert_eq!(done.value, json!(["fulfilled", "rejected"]));
    assert_eq!(*sent.lock().unwrap(), [json!("x@y.z")]);
}

#[tokio::test]
async fn an_approval_nobody_decides_expires_and_frees_its_execution() {
    let (registry, sent) = mail();
    let engine = crate::harness::builder()
        .registry(registry)
        .workers(1)
        .approval_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let o = engine.execute("await mail.send({ to: 'a@b.c' })", ExecuteOptions::default()).await;
    let approval = paused(&o).approval.clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        engine.resume(&approval, true, None).await.unwrap_err(),
        ResumeError::Expired(approval.clone())
    );
    // And stays expired, not unknown.
    assert_eq!(engine.resume(&approval, true, None).await.unwrap_err(), ResumeError::Expired(approval));
    assert!(sent.lock().unwrap().is_empty());
    assert_eq!(engine.execute("return 2", ExecuteOptions::default()).await.value, json!(2));
}

#[tokio::test]
async fn a_paused_session_keeps_its_state_and_runs_nothing_else_until_decided() {
    let (registry, _) = mail();
    let engine = engine(registry);
    let s = engine.session("s");
    assert!(s.execute("const who = 'ada@example.com';", ExecuteOptions::default()).await.is_ok());
    let o = s
        .execute("const r = await mail.send({ to: who });\nconst after = 1;", ExecuteOptions::default())
        .await;
    let p = paused(&o);
    assert_eq!(p.arguments, json!({"to": "ada@example.com"}));
    assert_eq!(o.session.as_ref().map(|s| s.execution), Some(2));
    let refused = s.execute("return 1", ExecuteOptions::default()).await;
    let e = refused.error.unwrap();
    assert_eq!(e.kind, codemode::ErrorKind::Limit);
    assert!(e.message.contains(&p.approval), "{}", e.message);
    let done = engine.resume(&p.approval, true, None).await.unwrap();
    assert!(done.is_ok(), "{:?}", done.error);
    assert_eq!(done.session.as_ref().map(|s| s.execution), Some(2));
    // What the paused program declared is there for the next one.
    let next = s.execute("return [r.sent, after, who]", ExecuteOptions::default()).await;
    assert_eq!(next.value, json!([true, 1, "ada@example.com"]), "{:?}", next.error);
    // A closed session takes its paused execution with it.
    let o = s.execute("await mail.send({ to: who })", ExecuteOptions::default()).await;
    let approval = paused(&o).approval.clone();
    assert!(s.close());
    assert_eq!(engine.resume(&approval, true, None).await.unwrap_err(), ResumeError::SessionEnded(approval));
}

#[tokio::test]
async fn a_session_waiting_on_a_person_is_not_evicted() {
    let (registry, _) = mail();
    let limits = codemode::SessionLimits { max_sessions: 1, ..Default::default() };
    let engine = crate::harness::builder().registry(registry).workers(1).sessions(limits).build().unwrap();
    let o = engine
        .session("a")
        .execute("await mail.send({ to: 'a@b.c' }); return 1", ExecuteOptions::default())
        .await;
    let approval = paused(&o).approval.clone();
    let e = engine.session("b").execute("return 2", ExecuteOptions::default()).await.error.unwrap();
    assert_eq!(e.kind, codemode::ErrorKind::Limit);
    assert_eq!(
        e.message,
        "too many live sessions: every one of them is running an execution or waiting on an approval"
    );
    assert_eq!(engine.resume(&approval, true, None).await.unwrap().value, json!(1));
    assert_eq!(engine.session("b").execute("return 2", ExecuteOptions::default()).await.value, json!(2));
}

#[tokio::test]
async fn patterns_require_approval_and_declarations_say_so() {
    let (mut registry, _) = mail();
    assert_eq!(registry.require_approval("mail.dr*"), 1);
    assert!(registry.get("mail", "drafts").unwrap().requires_approval());
    let declarations = registry.declarations();
    assert_eq!(declarations.matches("Needs a person's approval").count(), 2, "{declarations}");
    // A tool registered later under a matching name needs approval too.
    registry
        .register(
            "mail",
            Tool::new("draftNew", "", json!({"type": "object"}), |_a: Value| async move {
                Ok::<_, ToolError>(json!(1))
            }),
        )
        .unwrap();
    assert!(registry.get("mail", "draftNew").unwrap().requires_approval());
    // The prompt says that some calls wait for a person; without such tools it does not.
    let line = "\n- Some tools need a person's approval (their declarations say so): the run pauses at such a call until someone decides; a rejected call throws an Error whose `code` is \"rejected\".\n";
    assert!(codemode::prompt(&registry, &codemode::Limits::default(), false).contains(line));
    assert!(
        !codemode::prompt(&codemode::demo::registry(), &codemode::Limits::default(), false).contains(line)
    );
    let engine = engine(registry);
    let o = engine.execute("return await mail.drafts()", ExecuteOptions::default()).await;
    assert_eq!(paused(&o).tool, "mail.drafts");
    // Arguments that do not validate never pause: the program learns at once.
    let o = engine.execute("return await mail.send({} as any)", ExecuteOptions::default()).await;
    assert!(o.paused.is_none());
    assert_eq!(
        o.error.unwrap().message,
        "mail.send: invalid arguments at args: \"to\" is a required property"
    );
}

/// The demo engine with `sheets.updateRow` needing approval, as `[approvals] tools` does it.
fn demo_needing_approval() -> Engine {
    let mut registry = codemode::demo::registry();
    assert_eq!(registry.require_approval("sheets.updateRow"), 1);
    engine(registry)
}

const UPDATE: &str = "await sheets.updateRow({ sheetId: 'sales', id: 1, fields: { status: 'won' } });\n\
    return (await sheets.getRows({ sheetId: 'sales', offset: 1, limit: 1 }))[0].status;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_cancel_stops_a_resumed_execution_by_its_resume_request() {
    use crate::daemon::{connect, no_answer, running};
    use codemode::daemon::{Daemon, DaemonConfig};
    let d = Daemon::new(demo_needing_approval(), DaemonConfig::default());
    let mut c = connect(&d);
    let code =
        "await sheets.updateRow({ sheetId: 'sales', id: 1, fields: { status: 'won' } });\nwhile (true) {}";
    let r = c.call(1, "code/execute", json!({ "code": code }), no_answer).await;
    let approval = r["result"]["paused"]["approval"].as_str().unwrap().to_string();
    c.send(json!({"jsonrpc": "2.0", "id": 2, "method": "code/resume", "params": {"approval": approval, "approve": true}}))
        .await;
    running(&mut c, 1).await;
    c.send(json!({"jsonrpc": "2.0", "id": 3, "method": "code/cancel", "params": {"id": 2}})).await;
    let (mut cancel, mut resumed) = (None, None);
    while cancel.is_none() || resumed.is_none() {
        let m = c.recv().await;
        match m["id"].as_u64() {
            Some(3) => cancel = Some(m),
            Some(2) => resumed = Some(m),
            _ => {}
        }
    }
    assert_eq!(cancel.unwrap()["result"], json!({ "cancelled": true }));
    let resumed = resumed.unwrap();
    // Without the cancel, the loop would run to the 10 s deadline and end with `timeout`.
    assert_eq!(resumed["result"]["error"]["kind"], json!("cancelled"), "{resumed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_pauses_and_code_resume_continues() {
    use crate::daemon::{connect, no_answer};
    use codemode::daemon::{Daemon, DaemonConfig};
    let d = Daemon::new(demo_needing_approval(), DaemonConfig::default());
    let mut c = connect(&d);
    let r = c.call(1, "code/execute", json!({ "code": UPDATE }), no_answer).await;
    let paused = &r["result"]["paused"];
    assert_eq!(
        (r["result"]["ok"].clone(), paused["tool"].clone()),
        (json!(false), json!("sheets.updateRow")),
        "{r}"
    );
    assert_eq!(paused["arguments"], json!({"sheetId": "sales", "id": 1, "fields": {"status": "won"}}));
    let approval = paused["approval"].as_str().unwrap().to_string();
    // Another connection may decide: holding the id is what counts.
    let mut person = connect(&d);
    let r = person
        .call(2, "code/resume", json!({ "approval": approval, "approve": true, "calls": true }), no_answer)
        .await;
    assert_eq!((r["result"]["ok"].clone(), r["result"]["value"].clone()), (json!(true), json!("won")), "{r}");
    let approvals: Vec<_> =
        r["result"]["calls"].as_array().unwrap().iter().map(|c| c["approval"].clone()).collect();
    assert_eq!(approvals, [json!("approved"), Value::Null]);
    let r = person.call(3, "code/calls", json!({ "id": 2 }), no_answer).await;
    assert_eq!(r["result"]["calls"][0]["outcome"], json!("ok"), "{r}");
    // Spent, and bad parameters: structured errors, the connection keeps serving.
    let r = person.call(4, "code/resume", json!({ "approval": approval, "approve": true }), no_answer).await;
    assert_eq!(r["error"]["code"], json!(-32002), "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("no execution waits on approval"), "{r}");
    let r = person.call(5, "code/resume", json!({ "approval": approval }), no_answer).await;
    assert_eq!(
        r["error"]["message"],
        json!("approve must be true (the call runs) or false (it is rejected)"),
        "{r}"
    );
    // Rejected with a reason, in a session.
    let r = c.call(6, "code/execute", json!({ "code": UPDATE, "session": "s" }), no_answer).await;
    let approval = r["result"]["paused"]["approval"].as_str().unwrap().to_string();
    assert_eq!(r["result"]["session"], json!({"id": "s", "execution": 1, "shared": false}), "{r}");
    let r = c
        .call(7, "code/resume", json!({ "approval": approval, "approve": false, "reason": "no" }), no_answer)
        .await;
    let error = &r["result"]["error"];
    assert_eq!(
        (error["code"].clone(), error["message"].clone()),
        (json!("rejected"), json!("sheets.updateRow: the call was rejected: no")),
        "{r}"
    );
    assert_eq!(r["result"]["session"], json!({"id": "s", "execution": 1, "shared": false}), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_without_elicitation_gets_the_pause_and_resume_execution() {
    use crate::harness::in_memory_session;
    use codemode::mcp::McpServer;
    use tokio::io::AsyncWriteExt;
    let (mut lines, mut w) = in_memory_session(McpServer::new(demo_needing_approval()), json!({})).await;
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/list\"}\n").await.unwrap();
    let listed: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let names: Vec<_> =
        listed["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, ["search_tools", "describe_tools", "execute_code", "resume_execution"]);
    let r = crate::sessions::mcp_execute(&mut lines, &mut w, 1, json!({ "code": UPDATE })).await;
    let approval = r["paused"]["approval"].as_str().unwrap().to_string();
    assert_eq!(r["paused"]["tool"], json!("sheets.updateRow"), "{r}");
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "resume_execution", "arguments": {"approval": approval, "approve": true}}});
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let answer: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let result = &answer["result"];
    assert_eq!(result["structuredContent"]["value"], json!("won"), "{answer}");
    assert_eq!(result["structuredContent"]["session"]["id"], json!("default"), "{answer}");
    assert_eq!(result["content"][0]["text"], json!("result: \"won\""), "{answer}");
    // Without tools needing approval, the tool is not offered.
    let (mut lines, mut w) =
        in_memory_session(McpServer::new(engine(codemode::demo::registry())), json!({})).await;
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/list\"}\n").await.unwrap();
    let listed: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 3, "{listed}");
}

#[test]
fn the_python_sdk_approves_and_rejects_through_elicitation() {
    let dir = std::env::temp_dir().join(format!("codemode-approvals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("codemode.toml");
    std::fs::write(&config, "[approvals]\ntools = [\"sheets.updateRow\"]\n").unwrap();
    let out = crate::harness::python()
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_approval.py"))
        .arg(env!("CARGO_BIN_EXE_codemode"))
        .arg(&config)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let one = "tools: describe_tools, execute_code, resume_execution, search_tools\n\
         execute: False {\"second\": \"rejected: sheets.updateRow: the call was rejected: not row 2\", \"statuses\": [\"active\", \"won\", \"trial\"]}\n\
         paused: False\n\
         asked: The program calls sheets.updateRow with {\"sheetId\":\"sales\",\"id\":1,\"fields\":{\"status\":\"won\"}}. Allow this call?\n\
         asked: The program calls sheets.updateRow with {\"sheetId\":\"sales\",\"id\":2,\"fields\":{\"status\":\"won\"}}. Allow this call?\n";
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("mode: legacy\n{one}mode: auto\n{one}"));
}

/// `codemode run` asks the person at the terminal; without a terminal it reports the pause.
#[test]
fn codemode_run_asks_on_the_terminal_and_reports_a_pause_without_one() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("approvals-run");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("codemode.toml");
    std::fs::write(&config, "[approvals]\ntools = [\"crm.sendEmail\"]\n").unwrap();
    let program = dir.join("send.ts");
    std::fs::write(
        &program,
        "console.log('sending');\n\
         const a = await crm.sendEmail({ to: 'a@example.com', subject: 'Hi' });\n\
         let b = 'sent';\n\
         try { await crm.sendEmail({ to: 'b@example.com', subject: 'Hi' }) } catch (e) { b = e.message }\n\
         return [a.sent, b];",
    )
    .unwrap();
    let args = |json: bool| {
        let mut args = vec![
            env!("CARGO_BIN_EXE_codemode").to_string(),
            "run".into(),
            "--demo".into(),
            "--typecheck".into(),
            "off".into(),
            "--config".into(),
        ];
        args.push(config.display().to_string());
        args.push(program.display().to_string());
        if json {
            args.push("--json".into());
        }
        args
    };
    // Not a terminal: the pause is the outcome, and the process ends with it.
    let out = std::process::Command::new(&args(false)[0]).args(&args(false)[1..]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "sending\npaused: crm.sendEmail({\"to\":\"a@example.com\",\"subject\":\"Hi\"}) needs a person's approval; \
             codemode run asks on a terminal, and the daemon and codemode mcp can wait for one\n— paused in "
        ),
        "{text}"
    );
    // On a terminal (a pseudo-terminal Python's standard library opens): yes, then no.
    let driver = r#"
import os, pty, sys, json
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen, answers = b"", [b"y\n", b"n\n"]
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if answers and seen.count(b"Allow it? [y/N]") > 2 - len(answers):
        os.write(fd, answers.pop(0))
_, status = os.waitpid(pid, 0)
sys.stdout.write(json.dumps({"status": os.waitstatus_to_exitcode(status), "seen": seen.decode()}))
"#;
    let out = std::process::Command::new("python3").arg("-c").arg(driver).args(args(true)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = run["seen"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(run["status"], json!(0), "{seen}");
    assert!(seen.contains(
        "codemode: the program calls crm.sendEmail with {\"to\":\"a@example.com\",\"subject\":\"Hi\"}. Allow it? [y/N] y\n"
    ), "{seen}");
    let report: Value = serde_json::from_str(seen.lines().last().unwrap()).unwrap();
    assert_eq!(
        report["value"],
        json!([true, "crm.sendEmail: the call was rejected: declined at the terminal"]),
        "{seen}"
    );
    assert_eq!(report["logs"][0]["message"], json!("sending"));
}
