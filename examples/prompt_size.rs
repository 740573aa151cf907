//! How many tokens an agent spends to learn the tools: the raw MCP `tools/list` JSON it would
//! get up front with direct tool calling, against codemode's prompt helper (instructions plus
//! the namespace index) and against the declarations of every tool. Run with
//! `cargo run --release --example prompt_size`; BENCHMARKS.md quotes its table.

#![allow(clippy::print_stdout, reason = "an example prints its table")]

use codemode::{count_tokens, definitions, prompt, Limits, Registry, Tool, ToolError};
use serde_json::Value;

fn main() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/typegen/real");
    println!("| tools | raw tools/list JSON | prompt helper | all declarations | prompt ÷ raw |");
    println!("|---|---:|---:|---:|---:|");
    let demo = codemode::demo::registry();
    let demo_raw: String = ["getRows", "listSheets", "updateRow"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(format!("{}/schemas/demo/{n}.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
        })
        .collect();
    row("demo `sheets` (3)", &demo_raw, &demo);
    for server in ["everything", "filesystem", "memory", "github"] {
        let raw = std::fs::read_to_string(format!("{dir}/{server}.json")).unwrap();
        // Only the list of tools, as a client would put it in the model's context.
        let tools: Value = serde_json::from_str::<Value>(&raw).unwrap()["tools"].clone();
        let mut registry = Registry::new();
        for def in definitions::parse(&raw).unwrap() {
            let tool = Tool::from_definition(def, |_: Value| async { Ok::<_, ToolError>(Value::Null) });
            registry.register(server, tool).unwrap();
        }
        let n = tools.as_array().map_or(0, Vec::len);
        row(&format!("`{server}` ({n})"), &tools.to_string(), &registry);
    }
}

fn row(label: &str, raw: &str, registry: &Registry) {
    let raw = count_tokens(raw);
    let prompt = count_tokens(&prompt(registry, &Limits::default(), false));
    let declarations = count_tokens(&registry.declarations());
    println!("| {label} | {raw} | {prompt} | {declarations} | {:.0} % |", 100.0 * prompt as f64 / raw as f64);
    assert!(prompt < raw.max(700), "{label}: the prompt helper should not cost more than the schemas");
}

#[test]
fn runs() {
    main();
}
