//! Program text nested 100,000 levels deep, of every kind: each ends in a `syntax` error at the
//! token that passed the limit, through the library and through the daemon, and the same
//! process then runs a normal program. Before the pre-scan, 20,000 `[` overflowed a sandbox
//! thread's stack inside swc's parser and aborted the whole process.

use codemode::{ErrorKind, Limits};
use serde_json::json;

use crate::harness::*;

const LEVELS: usize = 100_000;
const LIMIT: usize = 256;
const MESSAGE: &str = "the program nests deeper than 256 levels here (brackets, functions and operators \
                       together); split the expression into named parts";

/// One kind of nesting: `prefix`, then `unit` repeated, then `suffix`; `at` is the offset in
/// `unit` of the token that adds one level.
struct Kind {
    name: &'static str,
    prefix: &'static str,
    unit: &'static str,
    at: usize,
    suffix: &'static str,
}

const KINDS: &[Kind] = &[
    Kind { name: "arrays", prefix: "return ", unit: "[", at: 0, suffix: "" },
    Kind { name: "objects", prefix: "return ", unit: "{a:", at: 0, suffix: "1" },
    Kind { name: "parentheses", prefix: "return ", unit: "(", at: 0, suffix: "1" },
    Kind { name: "unary operators", prefix: "return ", unit: "!", at: 0, suffix: "1" },
    Kind { name: "prefix minus", prefix: "return ", unit: "- ", at: 0, suffix: "1" },
    Kind { name: "type arguments", prefix: "let x: ", unit: "A<", at: 1, suffix: "number" },
    Kind { name: "nested functions", prefix: "", unit: "function f() {", at: 10, suffix: "" },
    Kind { name: "arrow chains", prefix: "return ", unit: "x => ", at: 2, suffix: "1" },
    Kind { name: "template literals", prefix: "return ", unit: "`${", at: 1, suffix: "1" },
    Kind { name: "optional calls", prefix: "return ", unit: "a?.(", at: 3, suffix: "1" },
    Kind { name: "?: chains", prefix: "return ", unit: "1 ? 1 : ", at: 2, suffix: "1" },
    Kind { name: "awaits", prefix: "return ", unit: "await ", at: 0, suffix: "1" },
];

impl Kind {
    fn program(&self) -> String {
        self.program_of(LEVELS)
    }
    fn program_of(&self, levels: usize) -> String {
        format!("{}{}{}", self.prefix, self.unit.repeat(levels), self.suffix)
    }
    /// Each unit adds one level; the one that makes it `LIMIT + 1` is refused.
    fn column(&self) -> u32 {
        (self.prefix.len() + LIMIT * self.unit.len() + self.at + 1) as u32
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_deep_nesting_is_a_syntax_error_at_the_limit() {
    // Room for 100,000 levels of the longest unit; the size limit has its own tests.
    let limits = Limits { max_program_bytes: 4 << 20, ..Limits::default() };
    for kind in KINDS {
        let o = run_with(&kind.program(), limits.clone()).await;
        let e = o.error.unwrap_or_else(|| panic!("{}: ran", kind.name));
        assert_eq!(e.kind, ErrorKind::Syntax, "{}", kind.name);
        assert_eq!(
            (e.message.as_str(), e.line, e.column),
            (MESSAGE, Some(1), Some(kind.column())),
            "{}",
            kind.name
        );
        still_healthy().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_up_to_the_limit_runs() {
    let arrays = format!("return {}{}.length", "[".repeat(LIMIT), "]".repeat(LIMIT));
    assert_eq!(value(&arrays).await, json!(1));
    let negations = format!("return {}1", "!".repeat(LIMIT - 1));
    assert_eq!(value(&negations).await, json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_flat_chains_are_not_nesting() {
    let sum = format!("return 1{}", " + 1".repeat(LEVELS));
    assert_eq!(value(&sum).await, json!(LEVELS + 1));
    let chain = format!("const a: any = undefined;\nreturn a{} ?? 'end'", "?.b".repeat(LEVELS));
    assert_eq!(value(&chain).await, json!("end"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_through_the_daemon_leaves_it_serving() {
    let d = crate::daemon::daemon();
    let mut c = crate::daemon::connect(&d);
    for (i, kind) in KINDS.iter().enumerate() {
        // As deep as the daemon's default 1 MiB program limit allows (100,000 for most kinds).
        let levels = LEVELS.min(1_000_000 / kind.unit.len());
        let code = kind.program_of(levels);
        let r = c.call(i as u64, "code/execute", json!({"code": code}), crate::daemon::no_answer).await;
        let e = &r["result"]["error"];
        assert_eq!(
            (&e["kind"], &e["message"], &e["line"], &e["column"]),
            (&json!("syntax"), &json!(MESSAGE), &json!(1), &json!(kind.column())),
            "{}: {r}",
            kind.name
        );
        let r = c
            .call(1000 + i as u64, "code/execute", json!({"code": "return 6 * 7"}), crate::daemon::no_answer)
            .await;
        assert_eq!(r["result"]["value"], json!(42), "{r}");
    }
}
