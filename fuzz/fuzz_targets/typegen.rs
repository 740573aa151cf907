//! Arbitrary bytes as a definitions file, then as a bare schema: reading and generating must
//! never panic or overflow, and generation is deterministic.
#![no_main]

use codemode::{definitions, typegen};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(defs) = definitions::parse(text) {
        let a = definitions::declarations("fuzz", "", &defs);
        let b = definitions::declarations("fuzz", "", &defs);
        assert_eq!(a.render(), b.render());
    }
    if let Ok(schema) = serde_json::from_str::<serde_json::Value>(text) {
        let tool = typegen::ToolSchema {
            name: "t",
            js_name: "t",
            title: None,
            description: "",
            input: &schema,
            output: Some(&schema),
            untyped: None,
        };
        let _ = typegen::declarations("fuzz", "", &[tool]).render();
    }
});
