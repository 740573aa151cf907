//! The schema → TypeScript generator, the Rust generator's input side, and search.
//! Run: `cargo bench --bench typegen`

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
    targets = benches, huge
}
criterion_main!(typegen);
