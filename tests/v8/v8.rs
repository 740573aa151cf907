//! What only the V8 engine has: its isolates and their heap limit, the globals it takes away,
//! a deadline that terminates an isolate, and the process it runs in.

use codemode::{EngineKind, ErrorKind, ExecuteOptions, Isolation, Limits, LogLevel};
use serde_json::json;

use crate::harness::{builder, engine, registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_run_in_v8() {
    let engine = engine();
    assert_eq!(engine.kind(), EngineKind::V8);
    assert_eq!(engine.isolation(), Isolation::Process);
    // V8's own wording of a TypeError (QuickJS says "cannot read property 'x' of null").
    let outcome = engine.execute("const o: any = null;\nreturn o.x;", ExecuteOptions::default()).await;
    let error = outcome.error.expect("an error");
    assert_eq!(error.kind, ErrorKind::Exception);
    assert_eq!(error.message, "Cannot read properties of null (reading 'x')");
    assert_eq!((error.line, error.column), (Some(2), Some(10)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_buffers_and_webassembly_are_absent() {
    // V8's heap limit does not count ArrayBuffer memory: without them, it covers everything.
    let outcome = engine()
        .execute(
            "return [typeof ArrayBuffer, typeof Uint8Array, typeof SharedArrayBuffer, typeof Atomics, \
         typeof WebAssembly, typeof DataView, typeof Float64Array];",
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.value, json!(vec!["undefined"; 7]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heap_breach_ends_that_execution_only() {
    let engine = builder().registry(registry()).workers(1).build().unwrap();
    let limits = Limits { memory_bytes: 32 << 20, ..Limits::default() };
    let outcome = engine.execute(
        "console.log('before');\nconst keep: string[] = [];\nfor (let i = 0; ; i++) keep.push('x'.repeat(64) + i);",
        ExecuteOptions { limits: Some(limits), ..ExecuteOptions::default() },
    ).await;
    let error = outcome.error.expect("an error");
    assert_eq!(error.kind, ErrorKind::MemoryLimit, "{error:?}");
    assert_eq!(error.message, format!("the program used more than its {} byte memory limit", 32 << 20));
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!(outcome.logs[0].message, "before");
    // The same engine process serves the next program, from a new isolate.
    let next = engine.execute("return 1 + 1;", ExecuteOptions::default()).await;
    assert_eq!(next.error, None);
    assert_eq!(next.value, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_terminates_a_spinning_isolate() {
    let engine = builder().registry(registry()).workers(1).build().unwrap();
    let limits = Limits { timeout: std::time::Duration::from_millis(300), ..Limits::default() };
    let outcome = engine
        .execute(
            "console.warn('spinning');\nwhile (true) {}",
            ExecuteOptions { limits: Some(limits), ..ExecuteOptions::default() },
        )
        .await;
    let error = outcome.error.expect("an error");
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert_eq!(error.message, "the program ran past its 300 ms deadline");
    assert_eq!(outcome.logs.len(), 1);
    assert_eq!((outcome.logs[0].level, outcome.logs[0].message.as_str()), (LogLevel::Warn, "spinning"));
    let next = engine.execute("return 'again';", ExecuteOptions::default()).await;
    assert_eq!(next.value, json!("again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_runs_jitted() {
    // Ten million steps: V8 compiles the loop (QuickJS interprets it, about 25 times slower).
    let outcome = engine()
        .execute(
            "let n = 0;\nfor (let i = 0; i < 10_000_000; i++) n = (n + i * 7) % 1_000_003;\nreturn n;",
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(outcome.error, None);
    let mut n: u64 = 0;
    for i in 0..10_000_000u64 {
        n = (n + i * 7) % 1_000_003;
    }
    assert_eq!(outcome.value, json!(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_process_is_kept_from_the_network_and_the_environment() {
    let engine = engine();
    let seal = engine.seal().expect("a report");
    assert!(!seal.seccomp);
    assert_eq!(seal.rlimits, ["fsize=0", "core=0"]);
    // This kernel allows unprivileged namespaces (the sealed workers' tests check it too).
    assert!(seal.namespaces.contains(&"net".to_string()), "{seal:?}");
    assert!(seal.landlock.contains("--permission"), "{}", seal.landlock);
}

#[test]
fn without_node_the_build_says_what_to_run() {
    let missing = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-node");
    let error =
        codemode::Engine::builder().engine(EngineKind::V8).node_program(&missing).build().unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("could not start the V8 engine: could not start Node.js for the V8 engine ("),
        "{text}"
    );
    assert!(text.ends_with("run `codemode setup v8` to install it"), "{text}");
    let error = codemode::Engine::builder().engine(EngineKind::V8).build().unwrap_err();
    assert!(error.to_string().contains("run `codemode setup v8`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_of_the_hosts_realm_reaches_the_program() {
    // Node's own rejection of `import()` is an error of the host's realm, whose constructor's
    // constructor would be the host's `Function`: every path to it must give the context's.
    let outcome = engine()
        .execute(
            "const probe = async (f: () => Promise<unknown>) => {\n\
               try { await f(); return 'loaded'; } catch (e) {\n\
                 return [e instanceof ReferenceError, e.constructor.constructor('return typeof process')()];\n\
               }\n\
             };\n\
             return [\n\
               await probe(() => import('fs')),\n\
               await probe(() => eval(\"import('fs')\")),\n\
               await probe(() => new Function(\"return import('fs')\")()),\n\
             ];",
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.value, json!([[true, "undefined"], [true, "undefined"], [true, "undefined"]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_programs_stack_frames_give_it_nothing_of_the_host() {
    // V8's stack trace API hands a program's `prepareStackTrace` every frame under it, the host
    // script's and Node's included (their names and files: see README, "The V8 engine"). None
    // may give it a function or a receiver: a host-realm function would reach `process`.
    // Through `Error.prepareStackTrace`, through a replaced `Error` (Node asks the realm's
    // `globalThis.Error`), from a tool call's site, a program's own error, before and after an
    // await, and from functions of its own that are not strict (V8 gives a frame's function
    // back only up to the first strict frame from the top: the sloppy one on top does).
    let outcome = engine()
        .execute(
            "const leaks: string[] = [];\n\
             let frames = 0, host = 0, own = 0;\n\
             const grab = (e: any, sites: any[]) => {\n\
               for (const s of sites) {\n\
                 frames++;\n\
                 if (!/^(agent\\.ts|codemode:prelude)$/.test(String(s.getFileName()))) host++;\n\
                 for (const k of ['getFunction', 'getThis']) {\n\
                   const v = s[k]();\n\
                   if ((typeof v === 'function' && !(v instanceof Function)) || (typeof v === 'object' && v !== null && !(v instanceof Object))) leaks.push(k);\n\
                   else if (typeof v === 'function') own++;\n\
                 }\n\
               }\n\
               return 'seen';\n\
             };\n\
             const sloppy = new Function('f', 'return f()');\n\
             (Error as any).stackTraceLimit = Infinity;\n\
             (Error as any).prepareStackTrace = grab;\n\
             const stacks: string[] = [];\n\
             try { await t.echo(5 as any); } catch (e) { stacks.push((e as any).stack); }\n\
             try { sloppy(() => (null as any).x); } catch (e) { stacks.push((e as any).stack); }\n\
             try { new Function('return null.x')(); } catch (e) { stacks.push((e as any).stack); }\n\
             await t.echo({});\n\
             try { await sloppy(() => t.echo(6 as any)); } catch (e) { stacks.push((e as any).stack); }\n\
             (globalThis as any).Error = { prepareStackTrace: grab };\n\
             try { (undefined as any).y; } catch (e) { stacks.push((e as any).stack); }\n\
             return { stacks, leaks, framesSeen: frames > 8, hostFramesSeen: host > 0, ownFunctionsSeen: own > 0 };",
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(outcome.error, None);
    assert_eq!(
        outcome.value,
        json!({
            "stacks": ["seen", "seen", "seen", "seen", "seen"],
            "leaks": [],
            "framesSeen": true,
            "hostFramesSeen": true,
            // The sloppy function's frame gives it back: the check above sees functions.
            "ownFunctionsSeen": true
        })
    );
}
