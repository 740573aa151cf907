//! The smallest embedding: register one async tool, run one program, read the outcome.
//!
//! Run: `cargo run --release --example basic`
#![allow(clippy::print_stdout, reason = "an example shows its output")]

use codemode::{Engine, ExecuteOptions, Registry, Tool, ToolError};
use serde_json::{json, Value};

#[tokio::main]
async fn main() {
    let mut registry = Registry::new();
    registry
        .register(
            "weather",
            Tool::new(
                "get-forecast",
                "Forecast for a city: temperature in °C per day.",
                json!({
                    "type": "object",
                    "properties": { "city": { "type": "string" }, "days": { "type": "integer", "minimum": 1 } },
                    "required": ["city"]
                }),
                |args: Value| async move {
                    let days = args["days"].as_u64().unwrap_or(3);
                    let temps: Vec<u64> = (0..days).map(|d| 18 + d * 2).collect();
                    Ok::<_, ToolError>(json!({ "city": args["city"], "temps": temps }))
                },
            ),
        )
        .expect("valid tool");
    let engine = Engine::builder().registry(registry).build().expect("engine starts");

    // `get-forecast` is `weather.getForecast` inside the sandbox.
    let program = r#"
        const cities = ["Oslo", "Lima", "Pune"];
        const forecasts = await Promise.all(cities.map((city) => weather.getForecast({ city, days: 5 })));
        const warmest = forecasts
            .map((f) => ({ city: f.city, max: Math.max(...f.temps) }))
            .sort((a, b) => b.max - a.max)[0];
        console.log(`checked ${forecasts.length} cities`);
        return warmest;
    "#;
    let outcome = engine.execute(program, ExecuteOptions::default()).await;
    assert!(outcome.is_ok(), "{:?}", outcome.error);
    assert_eq!(outcome.value, json!({ "city": "Oslo", "max": 26 }));
    for line in &outcome.logs {
        println!("log: {}", line.message);
    }
    println!("value: {}", outcome.value);
    println!("tool calls: {}", outcome.stats.tool_calls);
}

#[test]
fn runs() {
    main();
}
