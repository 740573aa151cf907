//! The schema → TypeScript generator, the Rust generator's input side, and search.
//! Run: `cargo bench --features __internals --bench typegen`

use codemode::{definitions, Detail, Registry, Tool, ToolError};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

const GITHUB: &str = include_str!("../tests/fixtures/typegen/real/github.json");

fn benches(c: &mut Criterion) {
    let defs = definitions::parse(GITHUB).unwrap();
    assert_eq!(defs.len(), 26);
    let mut group = c.benchmark_group("typegen");
    // Throughput in tools: criterion reports declarations (tools) per second.
    group.throughput(Throughput::Elements(defs.len() as u64));
    group.bench_function("github_26_tools", |b| {
        b.iter(|| definitions::declarations("github", "", &defs).render())
    });
    group.finish();

    let mut registry = Registry::new();
    for def in defs {
        let tool = Tool::from_definition(def, |_: Value| async { Ok::<_, ToolError>(Value::Null) });
        registry.register("github", tool).unwrap();
    }
    registry.search("warm up the index", Detail::Name, 1);
    c.bench_function("search/github_summary_top5", |b| {
        b.iter(|| registry.search("list pull request comments", Detail::Summary, 5))
    });
    c.bench_function("describe/github_two_tools_cached", |b| {
        b.iter(|| registry.describe(&["github.create_issue", "github.get_issue"]).unwrap())
    });
}

/// Learning the shape of an untyped upstream tool's result, as each of its calls does.
fn learned(c: &mut Criterion) {
    let rows: Vec<Value> = (0..100)
        .map(|i| {
            json!({"id": i, "name": format!("row {i}"), "email": format!("u{i}@example.com"),
                        "active": i % 2 == 0, "tags": ["a", "b"], "score": i as f64 / 3.0})
        })
        .collect();
    let sheet = json!({ "rows": rows, "next": null });
    let text = json!("Echo: hello there");
    let json_text = json!(sheet.to_string());
    let mut group = c.benchmark_group("learned_shape");
    for (name, value) in [("text", &text), ("sheet_100_rows", &sheet), ("json_text_100_rows", &json_text)] {
        let learner = codemode::__bench::Learner::new();
        learner.observe(value);
        group.bench_function(name, |b| b.iter(|| learner.observe(value)));
    }
    group.finish();
}

/// Hostile sizes: the generator must stay near-linear (issue #17).
fn huge(c: &mut Criterion) {
    let tool =
        |schema: Value| definitions::parse(&json!({"name": "t", "inputSchema": schema}).to_string()).unwrap();
    let enum_1m = tool(
        json!({"type": "object", "properties": {"x": {"enum": (0..1_000_000).map(|i| format!("v{i}")).collect::<Vec<_>>()}}}),
    );
    let mut defs = serde_json::Map::new();
    for i in 0..100_000 {
        defs.insert(format!("d{i}"), json!({"$ref": format!("#/$defs/d{}", i + 1)}));
    }
    defs.insert("d100000".into(), json!({"type": "string"}));
    let chain_100k =
        tool(json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs}));
    let all_of_100k = tool(json!({"type": "object", "properties": {"x": {"allOf": (0..100_000)
        .map(|i| json!({"type": "object", "properties": {format!("p{i}"): {"type": "string"}}}))
        .collect::<Vec<_>>()}}}));
    let mut group = c.benchmark_group("typegen_huge");
    group.sample_size(10);
    group.bench_function("enum_1m_values", |b| {
        b.iter(|| definitions::declarations("ns", "", &enum_1m).render())
    });
    group.bench_function("ref_chain_100k", |b| {
        b.iter(|| definitions::declarations("ns", "", &chain_100k).render())
    });
    group.bench_function("all_of_100k", |b| {
        b.iter(|| definitions::declarations("ns", "", &all_of_100k).render())
    });
    group.finish();
}

criterion_group! {
    name = typegen;
    config = Criterion::default().sample_size(50);
    targets = benches, learned, huge
}
criterion_main!(typegen);
