//! The schema → TypeScript generator, the Rust generator's input side, and search.
//! Run: `cargo bench --bench typegen`

use codemode::{definitions, Detail, Registry, Tool, ToolError};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;

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

criterion_group! {
    name = typegen;
    config = Criterion::default().sample_size(50);
    targets = benches
}
criterion_main!(typegen);
