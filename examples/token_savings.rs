//! Tokens (o200k_base) an agent carries in its context for the same task, with direct tool
//! calling against code mode, in three scenarios. Every figure is counted from text this
//! program produces by running the real tools: nothing is estimated.
//!
//! 1. The demo spreadsheet. Direct: the `listSheets` and `getRows` calls and their results (all
//!    10,000 rows as JSON), then the model's own summary. Code mode: `examples/spreadsheet.ts`
//!    plus its outcome (logs and value), as the MCP server's `execute_code` returns it.
//! 2. A long document moved between two tools. Direct: `docs.read` returns the text into the
//!    context and the model writes it out again as the argument of `docs.write`. Code mode: a
//!    two-line program and its outcome.
//! 3. Tool definitions for a task that needs two tools. Direct: every tool of the four real MCP
//!    servers in `tests/fixtures/typegen/real` as JSON tool definitions up front. Code mode: the
//!    prompt helper (instructions and the namespace index) plus `describe` of the two tools.
//!
//! Run with `cargo run --release --example token_savings`; BENCHMARKS.md quotes its table.

#![allow(clippy::print_stdout, reason = "an example prints its table")]

use codemode::{
    count_tokens, definitions, estimate_tokens, prompt, Engine, ExecuteOptions, Limits, Registry, Tool,
    ToolError,
};
use serde_json::{json, Value};

/// A direct tool call as it sits in a transcript: the call the model writes and the result the
/// client appends.
fn call(name: &str, arguments: &Value, result: &str) -> String {
    format!("{}\n{result}\n", json!({ "type": "tool_use", "name": name, "input": arguments }))
}

/// Code mode's transcript: the program the model writes and the outcome the runtime returns.
async fn program(engine: &Engine, code: &str) -> (String, Value) {
    let outcome = engine.execute(code, ExecuteOptions::default()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let logs: Vec<&str> = outcome.logs.iter().map(|l| l.message.as_str()).collect();
    let text = format!(
        "{}\n{}\n{}\n{}\n",
        json!({ "type": "tool_use", "name": "execute_code", "input": { "code": code } }),
        logs.join("\n"),
        outcome.value,
        json!({ "tool_calls": outcome.stats.tool_calls })
    );
    (text, outcome.value)
}

/// A long, varied document: 400 paragraphs of a report, about 60,000 tokens.
fn document() -> String {
    let regions = ["EU", "US", "APAC", "LATAM"];
    let verbs = ["grew", "fell", "held steady", "recovered", "slipped"];
    (0..400)
        .map(|i| {
            format!(
                "Section {i}. In week {w}, revenue in {r} {v} by {p}.{d} percent against the plan, \
                 while {n} new customers signed and {c} churned; the account team attributes the \
                 change to pricing experiment #{e} and to the seasonal pattern seen in quarter {q}.",
                w = i % 52 + 1,
                r = regions[i % 4],
                v = verbs[i % 5],
                p = (i * 7) % 13,
                d = (i * 3) % 10,
                n = 40 + (i * 17) % 90,
                c = 3 + (i * 11) % 20,
                e = 100 + i,
                q = i % 4 + 1
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn docs_registry(text: String) -> Registry {
    let mut r = codemode::demo::registry();
    r.register(
        "docs",
        Tool::new(
            "read",
            "Read a document's text.",
            json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}),
            move |_: Value| {
                let text = text.clone();
                async move { Ok::<_, ToolError>(json!(text)) }
            },
        ),
    )
    .unwrap();
    r.register(
        "docs",
        Tool::new(
            "write",
            "Write a document; returns its id and length.",
            json!({"type": "object", "properties": {"id": {"type": "string"}, "text": {"type": "string"}}, "required": ["id", "text"]}),
            |args: Value| async move {
                let chars = args["text"].as_str().map_or(0, |t| t.chars().count());
                Ok::<_, ToolError>(json!({ "id": args["id"], "chars": chars }))
            },
        ),
    )
    .unwrap();
    r
}

struct Row {
    scenario: &'static str,
    direct: usize,
    code_mode: usize,
    /// The transcripts, to compare `estimate_tokens` with the exact counts.
    texts: [String; 2],
}

impl Row {
    fn new(scenario: &'static str, direct: String, code_mode: String) -> Row {
        Row {
            scenario,
            direct: count_tokens(&direct),
            code_mode: count_tokens(&code_mode),
            texts: [direct, code_mode],
        }
    }
}

async fn scenarios() -> Vec<Row> {
    let text = document();
    let engine = Engine::builder().registry(docs_registry(text.clone())).workers(1).build().unwrap();
    // Big limits so the direct transcript can be produced by the same tools.
    let unlimited = Limits { max_result_bytes: 64 << 20, memory_bytes: 512 << 20, ..Limits::default() };
    let fetch = |code: &'static str| {
        let engine = engine.clone();
        let limits = unlimited.clone();
        async move {
            let o = engine.execute(code, ExecuteOptions { limits: Some(limits), ..Default::default() }).await;
            assert!(o.error.is_none() && !o.stats.result_truncated, "{:?}", o.error);
            o.value
        }
    };

    // 1. The spreadsheet.
    let spreadsheet = include_str!("spreadsheet.ts");
    let (code_mode, summary) = program(&engine, spreadsheet).await;
    let sheets = fetch("return await sheets.listSheets()").await;
    let rows = fetch("return await sheets.getRows({ sheetId: 'sales' })").await;
    assert_eq!(rows.as_array().map(Vec::len), Some(codemode::demo::SALES_ROWS));
    let direct = call("sheets.listSheets", &json!({}), &sheets.to_string())
        + &call("sheets.getRows", &json!({ "sheetId": "sales" }), &rows.to_string())
        + &summary.to_string();
    let mut out = vec![Row::new("1. spreadsheet: 10,000 rows summarised", direct, code_mode)];

    // 2. A document moved between two tools.
    let direct = call("docs.read", &json!({ "id": "q3-report" }), &json!(text).to_string())
        + &call(
            "docs.write",
            &json!({ "id": "q3-report-copy", "text": text }),
            &json!({ "id": "q3-report-copy", "chars": text.chars().count() }).to_string(),
        );
    let (code_mode, moved) = program(
        &engine,
        "const text = await docs.read({ id: 'q3-report' });\nreturn await docs.write({ id: 'q3-report-copy', text });",
    )
    .await;
    assert_eq!(moved["chars"], json!(text.chars().count()));
    out.push(Row::new("2. document moved between two tools", direct, code_mode));

    // 3. Tool definitions: everything up front, against the index and two declarations.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/typegen/real");
    let mut all_tools = Vec::new();
    let mut registry = Registry::new();
    for server in ["everything", "filesystem", "github", "memory"] {
        let raw = std::fs::read_to_string(format!("{dir}/{server}.json")).unwrap();
        let listed: Value = serde_json::from_str(&raw).unwrap();
        all_tools.extend(listed["tools"].as_array().unwrap().iter().cloned());
        for def in definitions::parse(&raw).unwrap() {
            let tool = Tool::from_definition(def, |_: Value| async { Ok::<_, ToolError>(Value::Null) });
            registry.register(server, tool).unwrap();
        }
    }
    let direct = Value::Array(all_tools).to_string();
    let code_mode = prompt(&registry, &Limits::default(), false)
        + &registry.describe(&["github.search_repositories", "github.create_issue"]).unwrap();
    out.push(Row::new("3. tool definitions (4 real servers, task needs 2 tools)", direct, code_mode));
    out
}

fn main() {
    let rows = tokio::runtime::Runtime::new().unwrap().block_on(scenarios());
    println!("| scenario | direct tool calls | code mode | reduction |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.1} % |",
            r.scenario,
            r.direct,
            r.code_mode,
            100.0 * (1.0 - r.code_mode as f64 / r.direct as f64)
        );
    }
    // The estimate the reports carry by default, against the exact count of the same text.
    println!("\n| transcript | exact (o200k_base) | estimate | error |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        for (side, text, exact) in
            [("direct", &r.texts[0], r.direct), ("code mode", &r.texts[1], r.code_mode)]
        {
            let estimate = estimate_tokens(text);
            println!(
                "| {}, {side} | {exact} | {estimate} | {:+.1} % |",
                r.scenario,
                100.0 * (estimate as f64 - exact as f64) / exact as f64
            );
        }
    }
}

#[test]
fn code_mode_beats_the_published_anchor_on_the_spreadsheet() {
    let rows = tokio::runtime::Runtime::new().unwrap().block_on(scenarios());
    // The anchor: 150,000 → 2,000 tokens, a 98.7 % reduction.
    let sheet = &rows[0];
    assert!(sheet.code_mode * 1000 < sheet.direct * 13, "{} → {}", sheet.direct, sheet.code_mode);
    for r in &rows {
        assert!(r.code_mode < r.direct, "{}: {} → {}", r.scenario, r.direct, r.code_mode);
    }
}
