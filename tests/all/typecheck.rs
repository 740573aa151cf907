//! Programs are type-checked against the declarations of the registry they run with, by
//! TypeScript 7 kept warm, before any of them runs: a corpus of mistakes agents make (each
//! stopped before its first tool call, with a diagnostic on the right line) and a corpus of
//! correct programs in the styles agents write (none rejected).

use std::sync::OnceLock;

use codemode::{CheckStatus, Engine, ErrorKind, ExecuteOptions, Limits, TypeCheck};
use serde_json::json;

use crate::harness::*;

/// The real servers' tools plus the demo, checked.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::builder()
            .registry(real_registry())
            .type_checker(type_checker("corpus"))
            .workers(2)
            .build()
            .unwrap()
    })
}

async fn run_mode(code: &str, mode: TypeCheck) -> codemode::Outcome {
    let limits = Limits { typecheck: mode, ..Limits::default() };
    engine().execute(code, ExecuteOptions { limits: Some(limits), ..Default::default() }).await
}

/// Mistakes, each with the line and TypeScript code of its first diagnostic. The first line of
/// each calls a tool before the mistake, where that fits, so "nothing ran" is visible.
const WRONG: &[(&str, u32, u32)] = &[
    ("const f = await filesystem.read_text_file({ path: 'a' });\nreturn f.contents;", 2, 2551),
    ("const r = await sheets.getRows({ sheetId: 's' });\nreturn r.map(x => x.amuont);", 2, 2551),
    ("await sheets.listSheets();\nconst n: number = 'x';\nreturn n;", 2, 2322),
    ("return await filesystem.read_text_file({ path: 'a', haed: 3 });", 1, 2353),
    ("return await sheets.getRows({});", 1, 2741),
    ("return await sheets.getRows({ sheetId: 5 });", 1, 2322),
    ("return await sheets.getRow({ sheetId: 'a' });", 1, 2551),
    ("return await sheet.getRows({ sheetId: 'a' });", 1, 2552),
    ("const rows = sheets.getRows({ sheetId: 'a' });\nreturn rows.length;", 2, 2339),
    (
        "const r = await sheets.getRows({ sheetId: 'a' });\nreturn r.filter(x => x.status === 'cancelled');",
        2,
        2367,
    ),
    ("const r = await sheets.getRows({ sheetId: 'a' });\nreturn r[0].amount.toUpperCase();", 2, 2339),
    ("const g = await memory.read_graph();\nreturn g.entities.map(e => e.type);", 2, 2339),
    (
        "await memory.create_entities({ entities: [{ name: 'a', type: 'person', observations: [] }] });",
        1,
        2353,
    ),
    ("await sheets.listSheets();\nconst a = [1, 2, 3];\nreturn a.lenght;", 3, 2551),
    ("await sheets.listSheets();\nconst o = { a: 1 };\no.b = 2;\nreturn o;", 3, 2339),
    ("await sheets.listSheets();\nlet s = 'x';\ns = 5;", 3, 2322),
    ("await sheets.listSheets();\nreturn JSON.stringify({}).foo();", 2, 2339),
    ("return await sheets.updateRow({ sheetId: 'a', id: '1', fields: {} });", 1, 2322),
    ("return await sheets.updateRow({ sheetId: 'a', id: 1 });", 1, 2741),
    ("const list = await sheets.listSheets();\nreturn list.map(s => s.rowcount);", 2, 2551),
    ("return await codemode.search(5);", 1, 2345),
    ("const d = await codemode.describe('sheets');\nreturn d.length.toFixed(1).foo;", 2, 2339),
    ("await sheets.listSheets();\nconsole.lg('x');", 2, 2339),
    ("await sheets.listSheets();\nsetTimeout(() => {}, '10');", 2, 2345),
    ("await sheets.listSheets();\nconst p = new Promise<number>((resolve) => resolve('x'));", 2, 2345),
    ("const [a, b] = await sheets.listSheets();\nreturn a.title + b.titel;", 2, 2551),
    ("await sheets.listSheets();\nreturn undefinedVariable + 1;", 2, 2304),
    ("return await sheets.getRows({ sheetId: 'a', limit: '10' });", 1, 2322),
    ("await sheets.listSheets();\nconst x: string[] = [1, 2];", 2, 2322),
    (
        "await sheets.listSheets();\nfunction add(a: number, b: number) { return a + b; }\nreturn add(1);",
        3,
        2554,
    ),
    ("return await filesystem.write_file({ path: 'a', contents: 'x' });", 1, 2561),
    ("const g = await memory.search_nodes({ qeury: 'x' });", 1, 2561),
    ("async () => {\n  const s = await sheets.listSheets();\n  return s.map(x => x.name);\n}", 3, 2339),
];

/// Correct programs as agents write them: none is refused.
const RIGHT: &[&str] = &[
    "const rows = await sheets.getRows({ sheetId: 'q3' });\nreturn rows.filter((r) => r.status === 'active').length;",
    "const data = JSON.parse('{\"a\": {\"b\": 1}}');\nreturn data.a.b;",
    "const totals: Record<string, number> = {};\nfor (const r of await sheets.getRows({ sheetId: 'q3' })) {\n  totals[r.region] = (totals[r.region] ?? 0) + r.amount;\n}\nreturn Object.entries(totals).sort((a, b) => b[1] - a[1]);",
    "function helper(x) { return x * 2; }\nreturn helper(21);",
    "const m = new Map();\nm.set('a', 1);\nreturn [...m.entries()];",
    "try {\n  await sheets.getRows({ sheetId: 'missing' });\n} catch (e) {\n  return e.code ?? e.message;\n}",
    "async () => {\n  const s = await sheets.listSheets();\n  return s.map(x => x.id);\n}",
    "const g = await memory.read_graph();\nreturn g.entities?.[0]?.name ?? 'none';",
    "let count = 0;\nawait Promise.all([1, 2, 3].map(async (i) => { count += i; }));\nreturn count;",
    "const rows = await sheets.getRows({ sheetId: 'q3' });\nconst first = rows.find(r => r.amount > 100);\nreturn first.customer;",
    "const x: any = await memory.search_nodes({ query: 'a' });\nreturn x.whatever?.deep;",
    "const byRegion = Object.groupBy(await sheets.getRows({ sheetId: 'q3' }), (r) => r.region);\nreturn Object.keys(byRegion);",
    "const s = new Set([1, 2, 2]);\nreturn s.size;",
    "console.log('rows', 1, { a: 2 });\nreturn null;",
    "const text = await filesystem.read_text_file({ path: '/tmp/a', head: 3 });\nreturn String(text.content).split('\\n').length;",
    "const hits = await codemode.search('rows', { detail: 'name' });\nreturn hits.map(h => h.path);",
    "await new Promise((r) => setTimeout(r, 1));\nreturn Date.now() > 0;",
    "type Row = { id: number };\nconst rows: Row[] = [{ id: 1 }];\nreturn rows.map(({ id }) => id);",
    "const nums = [3, 1, 2];\nreturn nums.toSorted((a, b) => a - b);",
    "class Acc {\n  total = 0;\n  add(n: number) { this.total += n; return this; }\n}\nreturn new Acc().add(1).add(2).total;",
    "const r = await sheets.updateRow({ sheetId: 'q3', id: 1, fields: { status: 'churned' } });\nreturn r.ok;",
    "const res = await Promise.allSettled([sheets.listSheets()]);\nreturn res[0].status;",
    "outer: for (const i of [1, 2]) {\n  for (const j of [3]) { if (i === 2 && j === 3) break outer; }\n}\nreturn 'done';",
    "const obj = { a: 1, b: 'x' };\nfor (const [k, v] of Object.entries(obj)) console.log(k, v);\nreturn Object.keys(obj).length;",
    "const text = `total: ${(1.5).toFixed(2)}`;\nreturn text;",
    "const g = await memory.read_graph({});\nreturn g.relations.length;",
    "return [1, 2, 3].reduce((acc, n) => acc + n, 0);",
    "const e = new Error('x') as any;\ne.code = 5;\nreturn e.code;",
    "const unused = 1;\nreturn 2;",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mistake_is_stopped_before_its_first_tool_call_on_its_line() {
    assert!(WRONG.len() >= 30);
    let mut wrong = Vec::new();
    for &(code, line, ts) in WRONG {
        let o = run_mode(code, TypeCheck::Strict).await;
        let e = o.error.as_ref().unwrap_or_else(|| panic!("{code}: ran, returning {}", o.value));
        assert_eq!(e.kind, ErrorKind::TypeError, "{code}: {e:?}");
        let first = &e.diagnostics[0];
        if (first.line, first.code) != (line, ts) {
            wrong.push(format!(
                "{code:?}: expected {line} TS{ts}, got {} TS{} {}",
                first.line, first.code, first.message
            ));
            continue;
        }
        assert_eq!((e.line, e.column), (Some(first.line), Some(first.column)), "{code}");
        assert!(e.message.starts_with(&format!("TS{ts}: {}", first.message)), "{}", e.message);
        assert!(!first.message.contains("log(...data"), "types are named, not spelt out: {}", first.message);
        assert_eq!((o.stats.tool_calls, o.stats.typecheck), (0, CheckStatus::Failed), "{code}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_programs_in_agent_styles_pass() {
    assert!(RIGHT.len() >= 20);
    let mut refused = Vec::new();
    for code in RIGHT {
        let o = run_mode(code, TypeCheck::Strict).await;
        if o.stats.typecheck != CheckStatus::Passed {
            refused.push(format!("{code:?}: {:?}", o.error.map(|e| e.diagnostics)));
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issues_mistakes_come_with_did_you_mean_hints() {
    let e = run_mode(
        "const f = await filesystem.read_text_file({ path: 'a' });\nreturn f.contents;",
        TypeCheck::Strict,
    )
    .await
    .error
    .unwrap();
    assert_eq!(
        (e.diagnostics[0].line, e.diagnostics[0].column, e.diagnostics[0].message.as_str()),
        (2, 10, "Property 'contents' does not exist on type 'ReadTextFileOutput'. Did you mean 'content'?")
    );
    // The column of a first-line error is the agent's, not the wrapper's.
    let e = run_mode("const n: number = 'x';", TypeCheck::Strict).await.error.unwrap();
    assert_eq!((e.line, e.column), (Some(1), Some(7)));
    assert_eq!(e.message, "TS2322: Type 'string' is not assignable to type 'number'. — nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_runs_and_returns_the_diagnostics_beside_the_result() {
    let o = run_mode(
        "const n: number = 'x' as any as string as any;\nconst s: string = 5;\nreturn 41 + 1;",
        TypeCheck::Warn,
    )
    .await;
    assert_eq!((o.error.as_ref(), &o.value), (None, &json!(42)));
    assert_eq!(o.stats.typecheck, CheckStatus::Failed);
    assert_eq!(o.diagnostics.len(), 1);
    assert_eq!((o.diagnostics[0].line, o.diagnostics[0].code), (2, 2322));
    let report = o.to_report();
    assert_eq!(report["diagnostics"][0]["line"], json!(2));
    assert_eq!(report["stats"]["typecheck"], json!("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_mode_and_engines_without_a_checker_run_unchecked() {
    let o = run_mode("const s: string = 5;\nreturn s;", TypeCheck::Off).await;
    assert_eq!((o.value.clone(), o.stats.typecheck), (json!(5), CheckStatus::NotChecked));
    assert!(o.stats.warnings.is_empty());
    // The shared engine of the other tests has no checker: one clear warning, never a failure.
    let o = run("const s: string = 5;\nreturn s;").await;
    assert_eq!((o.value.clone(), o.stats.typecheck), (json!(5), CheckStatus::Unavailable));
    assert_eq!(
        o.stats.warnings,
        vec!["not type-checked: this engine has no TypeScript checker (`codemode setup` installs one)"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_errors_come_before_the_check_and_the_library_checks_on_request() {
    let o = run_mode("const = 1;", TypeCheck::Strict).await;
    assert_eq!((o.error.unwrap().kind, o.stats.typecheck), (ErrorKind::Syntax, CheckStatus::NotChecked));
    let diagnostics =
        engine().check("const r = await sheets.listSheets();\nreturn r[0].titel;").await.unwrap();
    assert_eq!(diagnostics.len(), 1);
    assert_eq!((diagnostics[0].line, diagnostics[0].column, diagnostics[0].code), (2, 13, 2551));
    assert_eq!(engine().check("return 1;").await.unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_clients_own_tools_are_checked_too() {
    let mut registry = codemode::Registry::new();
    registry
        .register(
            "crm",
            codemode::Tool::new(
                "find",
                "Find a customer.",
                json!({"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}),
                |_args: serde_json::Value| async move { Ok::<_, codemode::ToolError>(json!({"plan": "pro"})) },
            ),
        )
        .unwrap();
    let options = |registry: &codemode::Registry| ExecuteOptions {
        registry: Some(registry.clone()),
        ..Default::default()
    };
    let o = engine().execute("return await crm.find({ mail: 'a' });", options(&registry)).await;
    assert_eq!(o.error.unwrap().diagnostics[0].code, 2561);
    let o = engine().execute("return (await crm.find({ email: 'a' })) as any;", options(&registry)).await;
    assert_eq!((o.value, o.stats.typecheck), (json!({"plan": "pro"}), CheckStatus::Passed));
    // And back to the engine's own tools: the checker follows the registry of each execution.
    let o = run_mode("return await crm.find({ email: 'a' });", TypeCheck::Strict).await;
    assert_eq!(o.error.unwrap().diagnostics[0].code, 2304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checker_that_dies_fails_one_check_and_is_replaced() {
    // A "compiler" that exits at once: every check fails clearly, and never hangs.
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fake-tsc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("tsc");
    std::fs::write(&fake, "#!/bin/sh\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Without the compiler's ECMAScript library beside it, it is refused, naming the file.
    let bare = codemode::TypeChecker::start(&fake, dir.join("work")).unwrap_err().to_string();
    assert!(bare.contains("lib.esnext.d.ts: No such file"), "{bare}");
    for entry in std::fs::read_dir(typescript7().parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ts") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let checker = codemode::TypeChecker::start(&fake, dir.join("work")).unwrap();
    let engine = Engine::builder().registry(registry()).type_checker(checker).workers(1).build().unwrap();
    let o = engine.execute("return 1;", ExecuteOptions::default()).await;
    let e = o.error.unwrap();
    assert_eq!(e.kind, ErrorKind::TypeError);
    assert!(e.message.starts_with("the TypeScript checker"), "{}", e.message);
    let limits = Limits { typecheck: TypeCheck::Warn, ..Limits::default() };
    let o = engine.execute("return 1;", ExecuteOptions { limits: Some(limits), ..Default::default() }).await;
    assert_eq!((o.value, o.stats.typecheck), (json!(1), CheckStatus::Unavailable));
    assert_eq!(o.stats.warnings.len(), 1, "{:?}", o.stats.warnings);
    // A compiler that does not exist is refused when the checker is made.
    let missing = codemode::TypeChecker::start(dir.join("nope"), dir.join("work2")).unwrap_err();
    assert!(missing.to_string().contains("does not exist"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_global_of_the_sandbox_is_declared_for_the_checker() {
    let names: Vec<&str> = codemode::SANDBOX_GLOBALS.iter().copied().filter(|n| *n != "codemode").collect();
    let code =
        format!("const all: unknown[] = [{}, codemode.version];\nreturn all.length;", names.join(", "));
    assert_eq!(engine().check(&code).await.unwrap(), vec![], "{code}");
}

/// The checker's library is no wider than the sandbox: what the sandbox leaves out (binary
/// buffers, shared memory, `Intl`, `Temporal`) fails the check, and the newest library
/// features the sandbox has pass it and run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkers_library_is_no_wider_than_the_sandbox() {
    let absent = [
        ("ArrayBuffer", 2693),
        ("SharedArrayBuffer", 2693),
        ("Atomics", 2693),
        ("DataView", 2693),
        ("Uint8Array", 2693),
        ("Float16Array", 2693),
        ("Float64Array", 2693),
        ("BigInt64Array", 2693),
        ("Intl", 2304),
        ("Temporal", 2304),
    ];
    for (name, code) in absent {
        let o = run_mode(&format!("return typeof globalThis.{name}"), TypeCheck::Off).await;
        assert_eq!(o.value, json!("undefined"), "{name} is in the sandbox");
        let found = engine().check(&format!("return {name};")).await.unwrap();
        assert_eq!(
            found.iter().map(|d| (d.line, d.code)).collect::<Vec<_>>(),
            [(1, code)],
            "{name}: {found:?}"
        );
    }
    let found = engine().check("return new Date().toTemporalInstant();").await.unwrap();
    assert_eq!(found.iter().map(|d| d.code).collect::<Vec<_>>(), [2550], "{found:?}");
    let modern = r#"const byParity = Object.groupBy([1, 2, 3], (x) => (x % 2 ? "odd" : "even"));
        const { promise, resolve } = Promise.withResolvers<number>();
        resolve(7);
        const doubled = Iterator.from([1, 2]).map((x) => x * 2).toArray();
        using stack = new DisposableStack();
        const all = await Array.fromAsync([Promise.resolve(1), 2]);
        return [byParity.odd, await promise, doubled, [...new Set([1]).union(new Set([2]))],
            Error.isError(new Error("x")), RegExp.escape("a.b"), Math.f16round(1.5), [3, 1].toSorted(),
            [1, 2, 3].findLast((x) => x < 3), all, "x".isWellFormed(), stack.disposed];"#;
    let o = run_mode(modern, TypeCheck::Strict).await;
    assert_eq!(o.stats.typecheck, CheckStatus::Passed, "{:?}", o.error);
    assert_eq!(
        o.value,
        json!([[1, 3], 7, [2, 4], [1, 2], true, "\\x61\\.b", 1.5, [1, 3], 2, [1, 2], true, false])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_checks_too_and_a_client_may_ask_for_warn() {
    let engine = Engine::builder()
        .registry(codemode::demo::registry())
        .type_checker(type_checker("daemon"))
        .workers(1)
        .build()
        .unwrap();
    let d = codemode::daemon::Daemon::new(engine, Default::default());
    let mut c = crate::daemon::connect(&d);
    let code = "const rows = await sheets.listSheets();\nreturn rows.map((r) => r.titel);";
    let r = c.call(1, "code/execute", json!({"code": code}), crate::daemon::no_answer).await;
    let e = &r["result"]["error"];
    assert_eq!(
        (&e["kind"], &e["diagnostics"][0]["line"], &e["diagnostics"][0]["code"]),
        (&json!("type_error"), &json!(2), &json!(2551)),
        "{r}"
    );
    assert_eq!(r["result"]["stats"]["tool_calls"], json!(0));
    let r = c
        .call(
            2,
            "code/execute",
            json!({"code": code, "limits": {"typecheck": "warn"}}),
            crate::daemon::no_answer,
        )
        .await;
    assert_eq!(
        (&r["result"]["ok"], &r["result"]["diagnostics"][0]["code"]),
        (&json!(true), &json!(2551)),
        "{r}"
    );
    assert_eq!(r["result"]["stats"]["typecheck"], json!("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_says_whether_programs_are_checked() {
    let checked = engine().prompt(false);
    assert!(checked.contains("type-checked against the tools' declarations before it runs"), "{checked}");
    let unchecked = crate::harness::engine().prompt(false);
    assert!(!unchecked.contains("type-checked"), "{unchecked}");
}

#[test]
fn the_checker_never_writes_into_someone_elses_project() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("their-project-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("package.json"), "{}\n").unwrap();
    std::fs::write(dir.join("tsconfig.json"), "{ \"theirs\": true }\n").unwrap();
    let Err(e) = codemode::TypeChecker::start(crate::harness::typescript7(), &dir) else {
        panic!("not refused")
    };
    let message = e.to_string();
    assert!(
        message.contains("which codemode did not write; the type check needs a directory of its own"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("tsconfig.json")).unwrap(), "{ \"theirs\": true }\n");
    assert!(!dir.join(".codemode-typecheck").exists());
}
