//! Limits end hostile or runaway programs with a structured error, and the engine keeps serving.
//!
//! Run: `cargo run --release --example limits`
#![allow(clippy::print_stdout, reason = "an example shows its output")]

use std::time::Duration;

use codemode::{Engine, ErrorKind, ExecuteOptions, Limits};

#[tokio::main]
async fn main() {
    let limits = Limits { timeout: Duration::from_millis(200), memory_bytes: 16 << 20, ..Limits::default() };
    let engine = Engine::builder().limits(limits).build().expect("engine starts");

    for (program, expected) in [
        ("while (true) {}", ErrorKind::Timeout),
        (
            "const keep = []; for (;;) { try { keep.push('x'.repeat(1 << 20)); } catch {} }",
            ErrorKind::MemoryLimit,
        ),
        ("await new Promise(() => {});", ErrorKind::Deadlock),
        ("const x: number = ;", ErrorKind::Syntax),
    ] {
        let outcome = engine.execute(program, ExecuteOptions::default()).await;
        let error = outcome.error.expect("each program fails");
        assert_eq!(error.kind, expected, "{program}");
        println!("{:<14} {}", error.kind.code(), error.message);
    }
    let outcome = engine.execute("return 'still serving'", ExecuteOptions::default()).await;
    assert_eq!(outcome.value, "still serving");
    println!("{}", outcome.value);
}

#[test]
fn runs() {
    main();
}
