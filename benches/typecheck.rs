//! The type check before a run: one check of a 30-line program against the real servers'
//! tools (more than 50), and its share of a warm execution of the demo workflow.
//! Run: `cargo bench --features __internals --bench typecheck` (after `cargo test`, which installs TypeScript 7 in
//! tests/npm; or with CODEMODE_TYPESCRIPT_DIR naming a `codemode setup` directory).

use std::path::PathBuf;
use std::time::Duration;

use codemode::{Engine, ExecuteOptions, Limits, Registry, Tool, ToolError, TypeCheck, TypeChecker};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

/// The 30-line program: reads, groups, a helper, a loop, optional chaining, a tool per server.
const PROGRAM: &str = r#"const [first] = await sheets.listSheets();
const rows = await sheets.getRows({ sheetId: first.id, limit: 500 });
type Totals = Record<string, { count: number; amount: number }>;
const totals: Totals = {};
for (const row of rows) {
  const t = (totals[row.region] ??= { count: 0, amount: 0 });
  t.count += 1;
  t.amount += row.amount;
}
function top(n: number) {
  return Object.entries(totals)
    .sort((a, b) => b[1].amount - a[1].amount)
    .slice(0, n)
    .map(([region, t]) => ({ region, ...t }));
}
const graph = await memory.read_graph();
const people = graph.entities.filter((e) => e.entityType === "person").map((e) => e.name);
const text = await filesystem.read_text_file({ path: "/tmp/notes.txt", head: 10 });
const lines = text.content.split("\n").filter((l) => l.trim().length > 0);
const hits = await codemode.search("issues", { detail: "name", limit: 3 });
const churned = rows.filter((r) => r.status === "churned");
console.log("rows", rows.length, "churned", churned.length);
const summary = {
  top: top(3),
  people: people.slice(0, 5),
  notes: lines.length,
  tools: hits.map((h) => h.path),
  churnRate: rows.length ? Math.round((churned.length / rows.length) * 1000) / 10 : 0,
};
return summary;"#;

fn registry() -> Registry {
    let mut r = codemode::demo::registry();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/typegen/real");
    for ns in ["everything", "filesystem", "github", "memory"] {
        let text = std::fs::read_to_string(dir.join(format!("{ns}.json"))).unwrap();
        for def in codemode::definitions::parse(&text).unwrap() {
            r.register(ns, Tool::from_definition(def, |_: Value| async { Ok::<_, ToolError>(json!({})) }))
                .unwrap();
        }
    }
    r
}

fn checker() -> TypeChecker {
    let dir = std::env::var_os("CODEMODE_TYPESCRIPT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/npm"));
    let binary = TypeChecker::installed_binary(&dir);
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo test` (it installs tests/npm) or `codemode setup`",
        binary.display()
    );
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-typecheck");
    TypeChecker::start(binary, work).unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let registry = registry();
    assert!(registry.tools().count() >= 50, "{} tools", registry.tools().count());
    let engine = Engine::builder().registry(registry).type_checker(checker()).build().unwrap();
    assert_eq!(PROGRAM.lines().count(), 30);
    assert_eq!(rt.block_on(engine.check(PROGRAM)).unwrap(), vec![]);

    c.bench_function("typecheck/check_30_lines_50_tools", |b| {
        b.to_async(&rt).iter(|| async { engine.check(PROGRAM).await.unwrap() });
    });
    // A different program each time, as an agent sends them (no cache can help).
    let mut n = 0u64;
    c.bench_function("typecheck/check_30_lines_50_tools/changing", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let code = format!("{PROGRAM}\n// {n}");
            let engine = engine.clone();
            async move { engine.check(&code).await.unwrap() }
        });
    });
    let demo = include_str!("../examples/spreadsheet.ts");
    for mode in [TypeCheck::Off, TypeCheck::Strict] {
        let options = ExecuteOptions {
            limits: Some(Limits { typecheck: mode, ..Limits::default() }),
            ..Default::default()
        };
        let name = format!("typecheck/demo_workflow/{mode:?}").to_lowercase();
        c.bench_function(&name, |b| {
            b.to_async(&rt).iter(|| async {
                let o = engine.execute(demo, options.clone()).await;
                assert!(o.is_ok(), "{:?}", o.error);
            });
        });
    }
}

criterion_group! {
    name = typecheck;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(typecheck);
