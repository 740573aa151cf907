use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_reviewed_globals_exist() {
    let v = value(
        "return Object.getOwnPropertyNames(globalThis).filter(n => !['t', 'sheets'].includes(n)).sort()",
    )
    .await;
    let mut names: Vec<String> = serde_json::from_value(v).unwrap();
    names.sort();
    // SANDBOX_GLOBALS is the reviewed list: a new intrinsic fails here until it is added there.
    let mut reviewed: Vec<String> = codemode::SANDBOX_GLOBALS.iter().map(|s| s.to_string()).collect();
    if crate::ENGINE == codemode::EngineKind::V8 {
        reviewed.retain(|n| !codemode::V8_GLOBALS_REMOVED.contains(&n.as_str()));
        reviewed.extend(codemode::V8_GLOBALS_ADDED.iter().map(|s| s.to_string()));
    }
    reviewed.sort();
    assert_eq!(names, reviewed);
    let symbols = value("return Object.getOwnPropertySymbols(globalThis).map(String)").await;
    assert_eq!(
        symbols,
        crate::differences::expected("isolation.global_symbols", json!(["Symbol(Symbol.toStringTag)"]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_capabilities() {
    let v = value("return [typeof require, typeof process, typeof fetch, typeof Deno, typeof std, typeof os, typeof print, typeof scriptArgs, typeof XMLHttpRequest, typeof WebAssembly]").await;
    assert_eq!(v, json!(vec!["undefined"; 10]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_import_fails() {
    let v = value("try { await import('fs'); return 'imported'; } catch (e) { return e.name; }").await;
    assert_eq!(v, json!("ReferenceError"));
    let v = value("try { await import('data:text/javascript,export default 1'); return 'imported'; } catch (e) { return e.name; }").await;
    assert_eq!(v, json!("ReferenceError"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructor_escape_reaches_only_the_sandbox_global() {
    let v = value("const g = (function(){}).constructor.constructor('return this')();\nreturn [g === globalThis, typeof g.process, typeof g.require];").await;
    assert_eq!(v, json!([true, "undefined", "undefined"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_survives_into_the_next_execution() {
    let v = value("globalThis.leak = 1; Object.prototype.polluted = 'yes'; Array.prototype.map = () => 'hijacked'; Promise.prototype.then = () => 'hijacked'; (globalThis as any).pending = new Promise(() => {}); return 1").await;
    assert_eq!(v, json!(1));
    let v =
        value("return [typeof (globalThis as any).leak, ({} as any).polluted, [1].map(x => x + 1)]").await;
    assert_eq!(v, json!(["undefined", null, [2]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prototype_pollution_does_not_change_the_bridge() {
    let code = "Object.prototype.toJSON = () => 'polluted';\nArray.prototype.join = () => 'polluted';\nJSON.stringify = () => 'polluted';\nconst r = await t.echo({ a: [1, 2] });\nconsole.log({ a: [1, 2] });\nreturn { r, plain: { b: 1 } };";
    let o = run(code).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.value, json!({"r": {"a": [1, 2]}, "plain": {"b": 1}}));
    assert_eq!(logs(&o), vec!["{ a: [ 1, 2 ] }".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_namespace_function_only_affects_the_program() {
    let v = value(
        "try { (t as any).echo = () => 'fake'; } catch (e) { return [e.name, e.message, typeof t.echo] }",
    )
    .await;
    let message = crate::differences::expected("isolation.read_only.message", json!("'echo' is read-only"));
    assert_eq!(v, json!(["TypeError", message, "function"]), "namespaces are frozen");
    still_healthy().await;
}
