//! Saved programs: parsed with their types, declared and type-checked like tools, listed,
//! searched and described in the namespace `skills`, called from programs inside their
//! sandbox and limits, kept as files, and reported when they no longer type-check.

use std::time::Duration;

use codemode::{
    Detail, Engine, ErrorKind, ExecuteOptions, Limits, Registry, Skill, SkillError, SkillStore, TypeCheck,
};
use serde_json::{json, Value};

use crate::harness::*;

/// Totals a status's amounts in a sheet; the demo's rows.
const TOTAL: &str = "/**
 * Totals the amounts of a sheet's rows with one status.
 */
interface Input { sheetId: string; status: string }
type Output = { rows: number; total: number };
const rows = await sheets.getRows({ sheetId: input.sheetId });
const mine = rows.filter((r) => r.status === input.status);
console.log(`totalling ${mine.length} rows`);
return { rows: mine.length, total: mine.reduce((sum, r) => sum + r.amount, 0) };
";

/// The demo's `sales` rows of a status, counted and totalled here.
fn expected(status: usize) -> Value {
    let mine: Vec<usize> = (0..codemode::demo::SALES_ROWS).filter(|i| i % 3 == status).collect();
    json!({ "rows": mine.len(), "total": mine.iter().map(|i| (i * 7919) % 1000).sum::<usize>() })
}

fn checked_engine(registry: Registry, name: &str) -> Engine {
    crate::harness::builder().registry(registry).type_checker(type_checker(name)).workers(1).build().unwrap()
}

fn unchecked_engine() -> Engine {
    crate::harness::builder().registry(codemode::demo::registry()).workers(1).build().unwrap()
}

#[tokio::test]
async fn a_saved_program_is_called_inside_the_calling_program() {
    let engine = unchecked_engine();
    assert_eq!(engine.add_skill(Skill::parse("statusTotal", TOTAL).unwrap()).await.unwrap(), vec![]);
    let o = engine
        .execute(
            "const a = await skills.statusTotal({ sheetId: 'sales', status: 'active' });\n\
             const c = await skills.statusTotal({ sheetId: 'sales', status: 'churned' });\n\
             return { a, c };",
            ExecuteOptions { audit: true, ..Default::default() },
        )
        .await;
    assert!(o.is_ok(), "{:?}", o.error);
    assert_eq!(o.value, json!({ "a": expected(0), "c": expected(1) }));
    // Its logs, tool calls and audit are the calling program's.
    assert_eq!(logs(&o), ["totalling 3334 rows", "totalling 3333 rows"]);
    assert_eq!(o.stats.tool_calls, 2);
    let tools: Vec<&str> = o.calls.iter().map(|c| c.tool.as_str()).collect();
    assert_eq!(tools, ["sheets.getRows", "sheets.getRows"]);
}

#[tokio::test]
async fn a_skill_runs_within_the_callers_limits_and_its_errors_say_where() {
    let engine = unchecked_engine();
    let spin = Skill::parse("spin", "while (true) {}").unwrap();
    let throws = Skill::parse(
        "throws",
        "// Fails on purpose.\nawait sheets.listSheets();\nthrow new Error(`no ${input}`);",
    )
    .unwrap();
    let outer = Skill::parse("outer", "return (await skills.inner(input)) * 2;").unwrap();
    let inner =
        Skill::parse("inner", "/** @param {number} input\n @returns {number} */\nreturn input + 1;").unwrap();
    for skill in [spin, throws, outer, inner] {
        engine.add_skill(skill).await.unwrap();
    }
    let limits = Limits { timeout: Duration::from_millis(200), ..Limits::default() };
    let o = engine
        .execute("await skills.spin();", ExecuteOptions { limits: Some(limits), ..Default::default() })
        .await;
    assert_eq!(o.error.unwrap().kind, ErrorKind::Timeout);

    let e = engine.execute("await skills.throws('luck');", ExecuteOptions::default()).await.error.unwrap();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Exception, "no luck"));
    assert_eq!(
        json!(e.stack),
        crate::differences::expected(
            "skills.throw.stack",
            json!("    at <anonymous> (skills/throws.ts:3:23)")
        )
    );
    // On the first line, where the wrapper sits, the skill's columns are the program's.
    let line = "const a = 1; throw new Error('first line');";
    engine.add_skill(Skill::parse("firstLine", line).unwrap()).await.unwrap();
    let direct = engine.execute(line, ExecuteOptions::default()).await.error.unwrap();
    let called = engine.execute("await skills.firstLine();", ExecuteOptions::default()).await.error.unwrap();
    let direct = direct.stack.unwrap();
    assert_eq!(
        called.stack.unwrap().lines().next().unwrap(),
        direct.lines().next().unwrap().replace("agent.ts", "skills/firstLine.ts")
    );

    assert_eq!(
        engine.execute("return await skills.outer(20);", ExecuteOptions::default()).await.value,
        json!(42)
    );

    let e = engine.execute("return await skills.innr(1);", ExecuteOptions::default()).await.error.unwrap();
    assert_eq!(e.message, "skills.innr is not a tool of skills; did you mean skills.inner?");
}

#[tokio::test]
async fn skills_are_listed_searched_and_described_like_tools() {
    let mut registry = codemode::demo::registry();
    registry.add_skill(Skill::parse("statusTotal", TOTAL).unwrap());
    let skills = registry.list().into_iter().find(|n| n.namespace == "skills").unwrap();
    assert_eq!(skills.tools, 1);
    let hits = registry.search("total amounts of a status", Detail::Summary, 1);
    assert_eq!(hits[0].path, "skills.statusTotal");
    assert_eq!(hits[0].to_text(), "skills.statusTotal(input: statusTotal.Input): Promise<statusTotal.Output> — Totals the amounts of a sheet's rows with one status.");
    assert_eq!(
        registry.describe(&["skills.statusTotal"]).unwrap(),
        "/**
 * Saved programs: call one as `await skills.name(input)`; it runs inside your program, with its limits.
 */
declare namespace skills {
  /**
   * Totals the amounts of a sheet's rows with one status.
   *
   * A saved program (skills/statusTotal.ts); it runs inside the calling program, with its limits.
   */
  function statusTotal(input: statusTotal.Input): Promise<statusTotal.Output>;
  namespace statusTotal {
    interface Input { sheetId: string; status: string }
    type Output = { rows: number; total: number };
  }
}
"
    );
    assert!(registry.declarations().contains("declare namespace skills {"));
    let prompt = codemode::prompt(&registry, &Limits::default(), false);
    assert!(prompt.contains("\n- `skills.<name>(input)` are saved programs that worked before: call them like tools; they run inside your program, within its limits.\n"), "{prompt}");
    assert!(prompt.contains("\n- skills (1 tool): Saved programs: call one as `await skills.name(input)`; it runs inside your program, with its limits. — statusTotal\n"), "{prompt}");
    // Nobody registers tools in it.
    let tool = codemode::Tool::new("x", "", json!({"type": "object"}), |_: Value| async {
        Ok::<_, codemode::ToolError>(json!(1))
    });
    assert_eq!(
        registry.register("skills", tool).unwrap_err().to_string(),
        "namespace \"skills\" is reserved"
    );
    assert!(registry.remove_skill("statusTotal"));
    assert!(registry.list().iter().all(|n| n.namespace != "skills"));
}

#[tokio::test]
async fn skills_are_type_checked_and_so_are_their_callers() {
    let engine = checked_engine(codemode::demo::registry(), "skills");
    engine.add_skill(Skill::parse("statusTotal", TOTAL).unwrap()).await.unwrap();
    // A caller with the wrong input is stopped before anything runs.
    let o = engine
        .execute("return await skills.statusTotal({ sheetId: 'sales' });", ExecuteOptions::default())
        .await;
    let e = o.error.unwrap();
    assert_eq!((e.kind, e.diagnostics[0].line, e.diagnostics[0].code), (ErrorKind::TypeError, 1, 2741));
    // Its output type is what callers see.
    let o = engine
        .execute(
            "const t = await skills.statusTotal({ sheetId: 'sales', status: 'trial' });\nreturn t.totl;",
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(o.error.unwrap().diagnostics[0].code, 2551);

    // A skill whose body does not match its own types, or today's tools, is refused.
    let wrong = Skill::parse("wrong", "interface Input { sheetId: string }\ntype Output = number;\nconst rows = await sheets.getRows({ sheetId: input.sheetId });\nreturn rows[0].customer;").unwrap();
    let SkillError::TypeErrors { diagnostics, .. } = engine.add_skill(wrong).await.unwrap_err() else {
        panic!()
    };
    assert_eq!((diagnostics[0].line, diagnostics[0].code), (4, 2322), "{diagnostics:?}");
    let misspelt = Skill::parse("misspelt", "return await sheets.getRow({ sheetId: 'a' });").unwrap();
    let SkillError::TypeErrors { diagnostics, .. } = engine.add_skill(misspelt).await.unwrap_err() else {
        panic!()
    };
    assert_eq!((diagnostics[0].line, diagnostics[0].column, diagnostics[0].code), (1, 21, 2551));
    assert!(engine.registry().skill("wrong").is_none() && engine.registry().skill("misspelt").is_none());
    // In `warn` mode the limits ask for, it is added with its diagnostics.
    let warn = crate::harness::builder()
        .registry(codemode::demo::registry())
        .type_checker(type_checker("skills-warn"))
        .limits(Limits { typecheck: TypeCheck::Warn, ..Limits::default() })
        .build()
        .unwrap();
    let misspelt = Skill::parse("misspelt", "return await sheets.getRow({ sheetId: 'a' });").unwrap();
    assert_eq!(warn.add_skill(misspelt).await.unwrap()[0].code, 2551);
    assert!(warn.registry().skill("misspelt").is_some());
}

#[tokio::test]
async fn a_store_keeps_skills_as_files_and_reports_the_ones_that_no_longer_check() {
    let dir = tempdir("store");
    let store = SkillStore::new(dir.join("skills"));
    assert!(store.load().unwrap().is_empty());
    let total = Skill::parse("statusTotal", TOTAL).unwrap();
    assert!(!store.save(&total).unwrap());
    assert!(store.save(&total).unwrap(), "the second save replaces the first");
    assert_eq!(std::fs::read_to_string(dir.join("skills/statusTotal.ts")).unwrap(), TOTAL);
    store.save(&Skill::parse("caller", "interface Input { status: string }\nreturn await skills.statusTotal({ sheetId: 'sales', status: input.status });").unwrap()).unwrap();
    // Files that are not skills are listed with why, never loaded, never touched.
    std::fs::write(dir.join("skills/bad-name.ts"), "return 1").unwrap();
    std::fs::write(dir.join("skills/broken.ts"), "return (1").unwrap();
    std::fs::write(dir.join("skills/notes.txt"), "mine").unwrap();
    std::fs::create_dir(dir.join("skills/folder.ts")).unwrap();
    let names: Vec<(String, bool)> =
        store.load().unwrap().into_iter().map(|s| (s.name, s.skill.is_ok())).collect();
    assert_eq!(
        names,
        [
            ("bad-name".into(), false),
            ("broken".into(), false),
            ("caller".into(), true),
            ("folder".into(), false),
            ("statusTotal".into(), true)
        ]
    );
    assert!(matches!(store.save(&Skill::parse("folder", "return 1").unwrap()), Err(SkillError::Io { .. })));
    assert!(matches!(store.remove("folder"), Err(SkillError::Io { .. })));
    assert_eq!(store.get("nothing").unwrap_err(), SkillError::NotFound("nothing".into()));

    // Today the sheets are gone: both skills are stale (the caller once its callee is out).
    let mut other = Registry::new();
    codemode::demo::register_crm(&mut other).unwrap();
    let engine = checked_engine(other, "skills-stale");
    let problems = engine.load_skills(&store).await.unwrap();
    let reported: Vec<(&str, String)> = problems
        .iter()
        .map(|(name, e)| {
            let what = match e {
                SkillError::TypeErrors { diagnostics, .. } => format!("TS{}", diagnostics[0].code),
                SkillError::InvalidName(_) => "name".into(),
                SkillError::Syntax { .. } => "syntax".into(),
                SkillError::Io { .. } => "io".into(),
                other => format!("{other}"),
            };
            (name.as_str(), what)
        })
        .collect();
    assert_eq!(
        reported,
        [
            ("bad-name", "name".into()),
            ("broken", "syntax".into()),
            ("folder", "io".into()),
            ("statusTotal", "TS2304".into()),
            ("caller", "TS2339".into())
        ]
    );
    assert_eq!(engine.registry().skills().count(), 0);
    // A program that calls one is told why it is not there, by the checker and at run time.
    let why = "skill statusTotal does not type-check: line 6, column 20: TS2304 Cannot find name 'sheets'.";
    let call = "return await skills.statusTotal({ sheetId: 'sales', status: 'active' });";
    let e = engine.execute(call, ExecuteOptions::default()).await.error.unwrap();
    let message = &e.diagnostics[0].message;
    assert_eq!(e.diagnostics[0].code, 2304);
    assert!(
        message.starts_with("Cannot find name 'skills'.; the saved skills were left out when loaded: "),
        "{message}"
    );
    assert!(message.contains(why), "{message}");
    let unchecked = || ExecuteOptions {
        limits: Some(Limits { typecheck: TypeCheck::Off, ..Limits::default() }),
        ..Default::default()
    };
    let e = engine.execute(call, unchecked()).await.error.unwrap();
    assert_eq!(
        e.message,
        format!(
            "skills is not defined; the saved skills were left out when loaded: skill caller does not \
             type-check: line 2, column 21: TS2339 Property 'statusTotal' does not exist on type \
             'typeof skills'.; {why}"
        )
    );

    // With the sheets back, both load; a skill of the crm is left out now, and said so.
    store.save(&Skill::parse("contactCount", "return (await crm.listContacts()).length;").unwrap()).unwrap();
    let engine = checked_engine(codemode::demo::registry(), "skills-fresh");
    assert_eq!(engine.load_skills(&store).await.unwrap().len(), 4);
    let registry = engine.registry();
    let names: Vec<&str> = registry.skills().map(|s| s.name()).collect();
    assert_eq!(names, ["caller", "statusTotal"]);
    let why = "; it was left out when the saved skills were loaded: skill contactCount does not type-check: line 1, column 15: TS2304 Cannot find name 'crm'.";
    let e = engine.execute("return await skills.contactCount();", unchecked()).await.error.unwrap();
    assert_eq!(e.message, format!("skills.contactCount is not a tool of skills{why}"));
    let e =
        engine.execute("return await skills.contactCount();", ExecuteOptions::default()).await.error.unwrap();
    assert_eq!(e.diagnostics[0].code, 2339);
    assert!(e.diagnostics[0].message.ends_with(why), "{:?}", e.diagnostics);
    assert!(store.remove("caller").unwrap());
    assert!(!store.remove("caller").unwrap());
    assert!(dir.join("skills/notes.txt").is_file() && dir.join("skills/bad-name.ts").is_file());
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("skills-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_saves_lists_shows_calls_and_removes_skills() {
    use crate::daemon::{connect, no_answer};
    let dir = tempdir("daemon");
    let engine = checked_engine(codemode::demo::registry(), "skills-daemon");
    let config = codemode::daemon::DaemonConfig {
        skills: Some(SkillStore::new(dir.join("skills"))),
        ..Default::default()
    };
    let d = codemode::daemon::Daemon::new(engine, config);
    let mut c = connect(&d);
    let mut other = connect(&d);
    let r = c.call(1, "skills/save", json!({ "name": "statusTotal", "source": TOTAL }), no_answer).await;
    assert_eq!(
        r["result"],
        json!({ "name": "statusTotal", "signature": "statusTotal(input: statusTotal.Input): Promise<statusTotal.Output>", "replaced": false, "diagnostics": [] })
    );
    assert_eq!(std::fs::read_to_string(dir.join("skills/statusTotal.ts")).unwrap(), TOTAL);
    // Another connection sees it, lists it and calls it.
    let r = other.call(2, "skills/list", json!({}), no_answer).await;
    assert_eq!(
        r["result"]["skills"],
        json!([{ "name": "statusTotal", "signature": "statusTotal(input: statusTotal.Input): Promise<statusTotal.Output>", "summary": "Totals the amounts of a sheet's rows with one status." }])
    );
    let r = other
        .call(
            3,
            "code/execute",
            json!({ "code": "return await skills.statusTotal({ sheetId: 'sales', status: 'trial' })" }),
            no_answer,
        )
        .await;
    assert_eq!(r["result"]["value"], expected(2), "{r}");
    let r =
        other.call(4, "tools/search", json!({ "query": "statusTotal", "detail": "name" }), no_answer).await;
    assert_eq!(r["result"]["hits"][0]["path"], "skills.statusTotal");
    let r = c.call(5, "skills/show", json!({ "name": "statusTotal" }), no_answer).await;
    assert_eq!(r["result"]["source"], TOTAL);
    assert!(r["result"]["declarations"]
        .as_str()
        .unwrap()
        .contains("function statusTotal(input: statusTotal.Input)"));

    // A save that cannot be written leaves the engine with the version it had.
    let file = dir.join("skills/statusTotal.ts");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let r =
        c.call(50, "skills/save", json!({ "name": "statusTotal", "source": "return 1" }), no_answer).await;
    assert_eq!(r["error"]["code"], -32005, "{r}");
    let r = c.call(51, "skills/show", json!({ "name": "statusTotal" }), no_answer).await;
    assert_eq!(r["result"]["source"], TOTAL);
    std::fs::remove_dir(&file).unwrap();
    std::fs::write(&file, TOTAL).unwrap();

    // Refusals say why, with the diagnostics.
    let r = c
        .call(
            6,
            "skills/save",
            json!({ "name": "wrong", "source": "return await sheets.getRow({ sheetId: 'a' });" }),
            no_answer,
        )
        .await;
    assert_eq!(r["error"]["code"], -32005, "{r}");
    assert_eq!(r["error"]["data"]["diagnostics"][0]["code"], 2551);
    assert!(!dir.join("skills/wrong.ts").exists());
    let r = c.call(7, "skills/save", json!({ "name": "bad-name", "source": "return 1" }), no_answer).await;
    assert_eq!((r["error"]["code"].as_i64(), r["error"]["message"].as_str()), (Some(-32005), Some("invalid skill name \"bad-name\": use letters, digits and `_` (not first), at most 64, not a reserved word")));
    let r = c.call(8, "skills/save", json!({ "name": "broken", "source": "return (1" }), no_answer).await;
    assert_eq!(r["error"]["data"]["error"]["kind"], "syntax", "{r}");
    let r = c.call(9, "skills/save", json!({ "name": "x" }), no_answer).await;
    assert_eq!(r["error"]["code"], -32602);

    let r = c.call(10, "skills/remove", json!({ "name": "statusTotal" }), no_answer).await;
    assert_eq!(r["result"], json!({ "removed": true }));
    assert!(!dir.join("skills/statusTotal.ts").exists());
    let r = c.call(11, "skills/remove", json!({ "name": "statusTotal" }), no_answer).await;
    assert_eq!(
        (r["error"]["code"].as_i64(), r["error"]["message"].as_str()),
        (Some(-32005), Some("no skill named \"statusTotal\""))
    );
    let r = other.call(12, "skills/list", json!({}), no_answer).await;
    assert_eq!(r["result"]["skills"], json!([]));
}

/// The binary with a state directory of this test's own and TypeScript from tests/npm.
fn cli(data: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_codemode"));
    let binary = typescript7();
    cmd.env("XDG_CACHE_HOME", data.join("cache"))
        .env("XDG_DATA_HOME", data.join("data"))
        .env("CODEMODE_TYPESCRIPT_DIR", binary.ancestors().nth(5).unwrap());
    cmd
}

fn output(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_cli_saves_lists_runs_and_removes_skills_and_reports_stale_ones() {
    let dir = tempdir("cli");
    std::fs::write(dir.join("total.ts"), TOTAL).unwrap();
    std::fs::write(
        dir.join("use.ts"),
        "return await skills.statusTotal({ sheetId: 'sales', status: 'active' });",
    )
    .unwrap();
    let skills = dir.join("data/codemode/skills");
    let (code, out, err) =
        output(cli(&dir).args(["skills", "save", "statusTotal"]).arg(dir.join("total.ts")).arg("--demo"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "saved skills.statusTotal(input: statusTotal.Input): Promise<statusTotal.Output> in {}\n",
            skills.display()
        )
    );
    let (_, out, _) =
        output(cli(&dir).args(["skills", "save", "statusTotal"]).arg(dir.join("total.ts")).arg("--demo"));
    assert!(out.starts_with("updated skills.statusTotal"), "{out}");
    let (code, out, err) = output(cli(&dir).args(["skills", "list", "--demo"]));
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "skills.statusTotal(input: statusTotal.Input): Promise<statusTotal.Output> — Totals the amounts of a sheet's rows with one status.\n");
    let (code, out, err) = output(cli(&dir).args(["run"]).arg(dir.join("use.ts")).args(["--demo", "--json"]));
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["value"], expected(0));
    let (_, out, _) =
        output(cli(&dir).args(["tools", "search", "totals a status", "--demo", "--detail", "name"]));
    assert_eq!(out.lines().next(), Some("skills.statusTotal"));

    // A skill that does not type-check is not saved.
    std::fs::write(dir.join("wrong.ts"), "return await sheets.getRow({ sheetId: 'a' });").unwrap();
    let wrong = std::fs::File::open(dir.join("wrong.ts")).unwrap();
    let (code, out, err) = output(cli(&dir).args(["skills", "save", "wrong", "-", "--demo"]).stdin(wrong));
    assert_eq!(code, 1);
    assert!(err.starts_with("codemode: skill wrong does not type-check: line 1, column 21: TS2551"), "{err}");
    assert!(out.starts_with("error[type_error]: the skill was not saved\n  1:21 TS2551: "), "{out}");
    assert!(!skills.join("wrong.ts").exists());

    // Without the sheets, the saved skill is stale: listed so, left out of a run, said on stderr.
    let (code, out, _) = output(cli(&dir).args(["skills", "list"]));
    assert_eq!(code, 0);
    assert!(out.starts_with("skills.statusTotal [stale] skill statusTotal does not type-check: line 6, column 20: TS2304 Cannot find name 'sheets'."), "{out}");
    let (code, out, err) = output(
        cli(&dir).args(["run", "-", "--json"]).stdin(std::fs::File::open(dir.join("use.ts")).unwrap()),
    );
    assert_eq!(code, 1);
    assert_eq!(err.lines().next(), Some("codemode: warning: skill statusTotal does not type-check: line 6, column 20: TS2304 Cannot find name 'sheets'. (left out)"));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["error"]["kind"], "type_error");

    let (code, out, _) = output(cli(&dir).args(["skills", "remove", "statusTotal"]));
    assert_eq!((code, out.as_str()), (0, "removed skills.statusTotal\n"));
    let (code, _, err) = output(cli(&dir).args(["skills", "remove", "statusTotal"]));
    assert_eq!((code, err.as_str()), (1, "codemode: no skill named \"statusTotal\"\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_finds_and_calls_a_skill() {
    use tokio::io::AsyncWriteExt;
    let engine = unchecked_engine();
    engine.add_skill(Skill::parse("statusTotal", TOTAL).unwrap()).await.unwrap();
    let (mut lines, mut w) = in_memory_session(codemode::mcp::McpServer::new(engine), json!({})).await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "search_tools", "arguments": {"query": "total a status's amounts", "limit": 1}}});
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let answer: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"],
        "skills.statusTotal(input: statusTotal.Input): Promise<statusTotal.Output> — Totals the amounts of a sheet's rows with one status.",
        "{answer}"
    );
    let code = "return await skills.statusTotal({ sheetId: 'sales', status: 'churned' })";
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "execute_code", "arguments": {"code": code}}});
    w.write_all(format!("{call}\n").as_bytes()).await.unwrap();
    let answer: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(answer["result"]["structuredContent"]["value"], expected(1), "{answer}");
    assert_eq!(
        answer["result"]["content"][0]["text"],
        format!("[log] totalling 3333 rows\nresult: {}", expected(1)),
        "{answer}"
    );
}
