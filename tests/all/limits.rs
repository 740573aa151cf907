//! Each limit, tested by attack. After every attack the same engine runs a normal program.

use std::time::Duration;

use codemode::{ErrorKind, Limits};
use serde_json::json;

use crate::harness::*;

fn short() -> Limits {
    Limits { timeout: Duration::from_millis(300), ..Limits::default() }
}

async fn expect_kind(code: &str, limits: Limits, kind: ErrorKind) -> codemode::Outcome {
    let o = run_with(code, limits).await;
    let e = o.error.clone().unwrap_or_else(|| panic!("{code}: expected {kind}, got {}", o.value));
    assert_eq!(e.kind, kind, "{code}: {e:?}");
    still_healthy().await;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_times_out() {
    let o = expect_kind("while (true) {}", short(), ErrorKind::Timeout).await;
    assert_eq!(o.error.unwrap().message, "the program ran past its 300 ms deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_not_waited_on_before_a_loop_that_times_out() {
    let o = expect_kind("t.echo({ n: 1 });\nwhile (true) {}", short(), ErrorKind::Timeout).await;
    assert_eq!(
        json!(o.stats.tool_calls),
        crate::differences::expected("limits.unwaited_call_then_loop", json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_in_try_finally_times_out() {
    expect_kind(
        "for (;;) { try { while (true) {} } catch (e) {} finally { continue; } }",
        short(),
        ErrorKind::Timeout,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catastrophic_regex_times_out() {
    expect_kind("return /^(a+)+$/.test('a'.repeat(40) + 'b')", short(), ErrorKind::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_sort_times_out() {
    expect_kind(
        "const a = Array.from({ length: 200000 }, (_, i) => (i * 7919) % 1000);\nfor (;;) a.sort((x, y) => x - y || 0).reverse();",
        short(),
        ErrorKind::Timeout,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_promise_job_chain_times_out() {
    expect_kind(
        "const spin = () => { Promise.resolve().then(spin); }; spin(); await new Promise(() => {});",
        short(),
        ErrorKind::Timeout,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promise_chain_that_keeps_growing_hits_the_memory_limit() {
    // Time enough for V8, whose heap fills more slowly here than QuickJS's.
    let limits = Limits { memory_bytes: 16 << 20, timeout: Duration::from_secs(5), ..Limits::default() };
    expect_kind(
        "const spin = (): Promise<void> => Promise.resolve().then(spin); await spin();",
        limits,
        ErrorKind::MemoryLimit,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_a_promise_that_never_settles_ends_at_once() {
    let started = std::time::Instant::now();
    let o = expect_kind("await new Promise(() => {});", Limits::default(), ErrorKind::Deadlock).await;
    assert!(started.elapsed() < Duration::from_secs(5), "did not wait for the 10 s deadline");
    assert!(o.error.unwrap().message.contains("can never settle"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_tool_past_the_deadline_times_out() {
    expect_kind("await t.sleep({ ms: 5000 })", short(), ErrorKind::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_string_hits_the_memory_limit() {
    let limits = Limits { memory_bytes: 32 << 20, ..Limits::default() };
    let o = run_with("const s = 'x'.repeat((1 << 30) - 1); return s.length", limits).await;
    let kind = o.error.map(|e| e.kind.code());
    assert_eq!(json!(kind), crate::differences::expected("limits.huge_string.kind", json!("memory_limit")));
    still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_loop_that_catches_its_oom_still_ends() {
    let limits = Limits { memory_bytes: 32 << 20, ..Limits::default() };
    let code = "const keep: any[] = [];\nfor (;;) { try { keep.push(new Array(100000).fill(1)); } catch (e) { /* ignore */ } }";
    expect_kind(code, limits, ErrorKind::MemoryLimit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_is_a_range_error() {
    let v = value("function f(n: number): number { return f(n + 1) + 1; }\ntry { f(0); } catch (e) { return [e.name, e.message]; }").await;
    assert_eq!(v, serde_json::json!(["RangeError", "Maximum call stack size exceeded"]));
    let e = error("function f(n: number): number { return f(n + 1) + 1; }\nf(0);").await;
    assert_eq!(e.name.as_deref(), Some("RangeError"));
    still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_parse_is_a_range_error() {
    let v = value(
        "try { JSON.parse('['.repeat(1000000)); return 'parsed'; } catch (e) { return [e.name, e.message]; }",
    )
    .await;
    assert_eq!(
        v,
        crate::differences::expected(
            "limits.deep_json_parse",
            json!(["RangeError", "Maximum call stack size exceeded"])
        )
    );
    still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_call_limit_ends_the_run() {
    let limits = Limits { max_tool_calls: 5, ..Limits::default() };
    let o = expect_kind(
        "for (let i = 0; i < 100; i++) { try { await t.echo({ i }); } catch {} }",
        limits,
        ErrorKind::ToolCallLimit,
    )
    .await;
    assert_eq!(o.stats.tool_calls, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_queues_calls_in_order() {
    let limits = Limits { max_concurrent_tool_calls: 2, ..Limits::default() };
    let o = run_with("return await Promise.all([1,2,3,4,5].map(i => t.sleep({ ms: i * 10 })))", limits).await;
    assert_eq!(o.value, json!([10, 20, 30, 40, 50]));
    assert_eq!(o.stats.tool_calls, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flood_ends_with_output_limit() {
    let limits = Limits { max_output_bytes: 1 << 20, ..Limits::default() };
    let o = expect_kind("for (;;) console.log('flood '.repeat(100));", limits, ErrorKind::OutputLimit).await;
    let kept: usize = o.logs[..o.logs.len() - 1].iter().map(|l| l.message.len()).sum();
    assert!(kept <= 64 << 10 && kept > 60 << 10, "{kept} bytes kept");
    assert!(o.logs.last().unwrap().message.starts_with("[codemode] "), "{:?}", o.logs.last());
    assert!(o.stats.logs_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_interrupts_a_spinning_program() {
    let token = codemode::CancelToken::new();
    let t2 = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        t2.cancel();
    });
    let o = engine()
        .execute("while (true) {}", codemode::ExecuteOptions { cancel: Some(token), ..Default::default() })
        .await;
    assert_eq!(o.error.unwrap().kind, ErrorKind::Cancelled);
    still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_and_atomics_do_not_exist() {
    let v = value("return [typeof Atomics, typeof SharedArrayBuffer, typeof ArrayBuffer]").await;
    assert_eq!(v, json!(["undefined", "undefined", "undefined"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyclic_garbage_is_collected_within_the_memory_limit() {
    // About 100 MB of cyclic garbage in total, never more than one cycle alive: only the cycle
    // collector can free it, so this fails with memory_limit if collection stopped.
    let limits = Limits { memory_bytes: 32 << 20, ..Limits::default() };
    let o = run_with(
        "let n = 0;\nfor (let i = 0; i < 100000; i++) { const a: any = { pad: new Array(120).fill(i) }; const b: any = { a }; a.b = b; n += a.pad.length; }\nreturn n;",
        limits,
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.value, json!(12_000_000));
}

/// Kilobytes of the process's anonymous memory that sit on transparent huge pages.
fn anon_huge_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").expect("/proc/self/smaps_rollup");
    let line = rollup.lines().find(|l| l.starts_with("AnonHugePages:")).expect("an AnonHugePages line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a size in kB")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_heaps_are_on_small_pages() {
    // Huge-page faults made about one run in sixty several times slower (ARCHITECTURE.md,
    // "…on small pages"). Only where the kernel gives huge pages on request does the heap's
    // page size say anything: with "always" it is the kernel's choice, with "never" it is moot.
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !mode.contains("[madvise]") {
        eprintln!("skipped: transparent huge pages are not in madvise mode here ({})", mode.trim());
        return;
    }
    let mut registry = codemode::Registry::new();
    registry
        .register(
            "host",
            codemode::Tool::new(
                "hugePages",
                "AnonHugePages of this process, in KiB.",
                json!({"type": "object"}),
                |_| async { Ok::<_, codemode::ToolError>(json!(anon_huge_kib())) },
            ),
        )
        .unwrap();
    let engine = crate::harness::builder().registry(registry).workers(1).build().unwrap();
    // About 40 MB of live objects, measured while they are alive.
    let code = "const keep: any[] = [];\nfor (let i = 0; i < 300000; i++) keep.push({ i, s: 'row ' + i });\nreturn [keep.length, await host.hugePages()];";
    let limits = Limits { memory_bytes: 256 << 20, ..Limits::default() };
    let o =
        engine.execute(code, codemode::ExecuteOptions { limits: Some(limits), ..Default::default() }).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.value, json!([300000, 0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_executions_is_not_charged_its_wait_for_a_sandbox_thread() {
    // 60 executions of 50 ms each on 2 sandbox threads: the last waits about 1.5 s in line,
    // far past its 400 ms deadline, which counts only its own run.
    let engine = crate::harness::builder().registry(registry()).workers(2).build().unwrap();
    let limits = Limits { timeout: Duration::from_millis(400), ..Limits::default() };
    let runs = (0..60).map(|_| {
        let engine = engine.clone();
        let options = codemode::ExecuteOptions { limits: Some(limits.clone()), ..Default::default() };
        tokio::spawn(async move { engine.execute("return await t.sleep({ ms: 50 })", options).await })
    });
    let outcomes: Vec<codemode::Outcome> = futures_join(runs).await;
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.error.as_ref().map(|e| e.kind)).collect();
    assert_eq!(failed, vec![], "none times out in line");
    let waited = outcomes.iter().map(|o| o.stats.queued).max().unwrap();
    assert!(waited > Duration::from_millis(500), "{waited:?}");
}

async fn futures_join(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<codemode::Outcome>>,
) -> Vec<codemode::Outcome> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}
