use codemode::ErrorKind;
use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_body_returns_its_value() {
    assert_eq!(value("return 1 + 1").await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_return_is_null() {
    assert_eq!(value("const a = 1;").await, json!(null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_level_await_works() {
    assert_eq!(value("const v = await Promise.resolve(5); return v * 2").await, json!(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_arrow_function_expression_is_called() {
    assert_eq!(
        value("async () => {\n  const r = await t.echo({ a: 1 });\n  return r.a + 1;\n}").await,
        json!(2)
    );
    assert_eq!(value("async () => 7;").await, json!(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_only_syntax_is_stripped() {
    let code = r#"
interface Point { x: number; y: number }
type Pair<T> = [T, T];
function add<T extends number>(a: T, b: T): number { return a + b; }
const p = { x: 1, y: 2 } satisfies Point;
const pair: Pair<number> = [p.x, p.y];
const n = (pair[0] as number)!;
class C { private v: number = 3; get(): number { return this.v; } }
return add(n, pair[1]) + new C().get();
"#;
    assert_eq!(value(code).await, json!(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_is_reported_at_the_agent_line_before_running() {
    let o = run("await t.echo({});\nconst x = ;\n").await;
    let e = o.error.unwrap();
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert_eq!((e.line, e.column), (Some(2), Some(11)));
    assert_eq!(o.stats.tool_calls, 0, "nothing ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_on_first_line_has_agent_column() {
    let e = failure("const x = ;", ErrorKind::Syntax).await;
    assert_eq!((e.line, e.column), (Some(1), Some(11)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_nul_character_is_a_syntax_error_with_its_position() {
    // Found by the `program` fuzz target: it used to be an internal error.
    let e = failure("const a = 1;\nconst s = \"é\0\";", ErrorKind::Syntax).await;
    assert_eq!(
        (e.message.as_str(), e.line, e.column),
        ("the program contains a raw NUL character; write \\0 in a string instead", Some(2), Some(13))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructs_needing_a_transform_fail_clearly() {
    for (code, word, line) in [
        ("const a = 1;\nenum Color { Red, Green }\nreturn a", "enum", 2),
        ("namespace N { export const x = 1 }", "namespace", 1),
        ("const a = 1;\n\nclass P { constructor(private x: number) {} }", "parameter property", 3),
    ] {
        let e = failure(code, ErrorKind::Syntax).await;
        assert!(e.message.contains(word), "{code}: {}", e.message);
        assert_eq!(e.line, Some(line), "{code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decorators_fail_as_syntax() {
    let e = failure("function d(x: any) { return x }\n@d class A {}\nreturn 1", ErrorKind::Syntax).await;
    assert_eq!(e.line, Some(2), "{e:?}");
    assert!(e.message.starts_with("Decorators (`@decorator`) are not supported"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaught_exception_has_name_message_and_agent_lines() {
    let code = "const a = 1;\nfunction boom(): never {\n  throw new RangeError('too far');\n}\nboom();";
    let e = failure(code, ErrorKind::Exception).await;
    assert_eq!(e.name.as_deref(), Some("RangeError"));
    assert_eq!(e.message, "too far");
    assert_eq!(e.line, Some(3));
    let stack = e.stack.unwrap();
    assert!(stack.contains("agent.ts:3:"), "{stack}");
    assert!(stack.contains("agent.ts:5:"), "{stack}");
    assert!(!stack.contains("prelude"), "{stack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_on_first_line_has_agent_column() {
    let e = failure("null.x", ErrorKind::Exception).await;
    assert_eq!(e.name.as_deref(), Some("TypeError"));
    assert_eq!(
        json!([e.line, e.column]),
        crate::differences::expected("scripts.first_line.position", json!([1, 1]))
    );
    assert_eq!(
        json!(e.message),
        crate::differences::expected(
            "scripts.null_property.message",
            json!("cannot read property 'x' of null")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throwing_a_non_error_is_reported() {
    let e = failure("throw 'plain string'", ErrorKind::Exception).await;
    assert_eq!(e.message, "Uncaught plain string");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_scripts_run_from_the_cache_with_the_same_result() {
    for _ in 0..3 {
        assert_eq!(value("return [1,2,3].map(x => x * 2)").await, json!([2, 4, 6]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_work_within_the_deadline() {
    let code = "let order: number[] = [];\nsetTimeout(() => order.push(2), 20);\nsetTimeout(() => order.push(1), 5);\nconst h = setTimeout(() => order.push(9), 10);\nclearTimeout(h);\nawait new Promise(r => setTimeout(r, 40));\nreturn order;";
    assert_eq!(value(code).await, json!([1, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throwing_timer_callback_fails_the_run() {
    let e = error(
        "setTimeout(() => { throw new Error('in timer') }, 1);\nawait new Promise(r => setTimeout(r, 50));",
    )
    .await;
    assert_eq!(e.kind, ErrorKind::Exception);
    assert_eq!(e.message, "in timer");
}
