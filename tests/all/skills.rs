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
    Engine::builder().registry(registry).type_checker(type_checker(name)).workers(1).build().unwrap()
}

fn unchecked_engine() -> Engine {
    Engine::builder().registry(codemode::demo::registry()).workers(1).build().unwrap()
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
    assert_eq!(e.stack.as_deref(), Some("    at <anonymous> (skills/throws.ts:3:23)"));
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
    let warn = Engine::builder()
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
    // With the sheets back, both load.
    let engine = checked_engine(codemode::demo::registry(), "skills-fresh");
    assert_eq!(engine.load_skills(&store).await.unwrap().len(), 3);
    let registry = engine.registry();
    let names: Vec<&str> = registry.skills().map(|s| s.name()).collect();
    assert_eq!(names, ["caller", "statusTotal"]);
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
