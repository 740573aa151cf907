//! A tool written against serde types instead of `serde_json::Value`, and what the program sees
//! when its arguments break the schema or the handler fails.
//!
//! Run: `cargo run --release --example typed_tool`
#![allow(clippy::print_stdout, reason = "an example shows its output")]

use codemode::{Engine, ExecuteOptions, Registry, Tool, ToolError};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
struct Transfer {
    from: String,
    to: String,
    cents: u64,
}

#[derive(Serialize)]
struct Receipt {
    id: String,
    cents: u64,
}

#[tokio::main]
async fn main() {
    let schema = json!({
        "type": "object",
        "properties": {
            "from": { "type": "string" },
            "to": { "type": "string" },
            "cents": { "type": "integer", "minimum": 1 }
        },
        "required": ["from", "to", "cents"],
        "additionalProperties": false
    });
    let mut registry = Registry::new();
    registry
        .register(
            "bank",
            Tool::typed("transfer", "Move money between accounts.", schema, |t: Transfer| async move {
                if t.from == t.to {
                    return Err(ToolError::with_code("same_account", "cannot transfer to the same account"));
                }
                Ok(Receipt { id: format!("{}->{}", t.from, t.to), cents: t.cents })
            }),
        )
        .expect("valid tool");
    let engine = Engine::builder().registry(registry).build().expect("engine starts");

    let program = r#"
        const ok = await bank.transfer({ from: "a", to: "b", cents: 500 });
        const errors: string[] = [];
        for (const bad of [{ from: "a", to: "b", cents: 0 }, { from: "a", to: "a", cents: 1 }]) {
            try { await bank.transfer(bad); } catch (e) { errors.push(`${e.name}: ${e.message}`); }
        }
        return { ok, errors };
    "#;
    let outcome = engine.execute(program, ExecuteOptions::default()).await;
    assert_eq!(
        outcome.value,
        json!({
            "ok": { "id": "a->b", "cents": 500 },
            "errors": [
                "TypeError: bank.transfer: invalid arguments at args.cents: 0 is less than the minimum of 1",
                "ToolError: bank.transfer: cannot transfer to the same account"
            ]
        })
    );
    println!("{}", serde_json::to_string_pretty(&outcome.value).expect("json"));
}

#[test]
fn runs() {
    main();
}
