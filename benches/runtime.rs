//! The runtime's own costs, against the targets in BENCHMARKS.md.
//! Run: `cargo bench --features __internals --bench runtime`

use std::time::{Duration, Instant};

use codemode::{Engine, ExecuteOptions, Registry, Tool, ToolError};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

fn engine(warm: usize) -> Engine {
    builder(warm).build().unwrap()
}

fn builder(warm: usize) -> codemode::EngineBuilder {
    let mut registry = codemode::demo::registry();
    registry
        .register(
            "bench",
            Tool::new("noop", "Returns its input.", json!({"type": "object"}), |v: Value| async move {
                Ok::<_, ToolError>(v)
            }),
        )
        .unwrap();
    let _: &Registry = &registry;
    Engine::builder().registry(registry).warm_sandboxes(warm)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = rt();
    let warm = engine(4);
    let cold = engine(0);
    let spreadsheet = include_str!("../examples/spreadsheet.ts");

    // Building a sandbox, as the pool does: after the previous one was freed (untimed; freeing
    // comes after the reply), so the allocator reuses its memory. Keeping every built sandbox
    // alive until the end instead would time page faults on fresh memory, which the pool does
    // not see.
    c.bench_function("sandbox/new_with_prelude", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let sandbox = codemode::__bench::cold_sandbox();
                total += started.elapsed();
                drop(sandbox);
            }
            total
        })
    });
    c.bench_function("sandbox/free", |b| {
        b.iter_batched(codemode::__bench::cold_sandbox, drop, criterion::BatchSize::SmallInput)
    });
    c.bench_function("transpile/spreadsheet_example", |b| {
        b.iter(|| codemode::__bench::transpile(spreadsheet))
    });

    // What a warm checkout leaves: run a cached program on a sandbox built beforehand, on this
    // thread, with no channel hop and no refill in the way.
    let _ = rt.block_on(warm.execute("return 1 + 1", ExecuteOptions::default()));
    c.bench_function("sandbox/run_on_warm/return_1_plus_1", |b| {
        let _runtime = rt.enter();
        b.iter_batched(
            || codemode::__bench::prepare(&warm, "return 1 + 1"),
            |prepared| {
                let (outcome, used) = codemode::__bench::run(prepared);
                assert_eq!(outcome.value, json!(2));
                used
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("execute/return_1_plus_1/warm_pool", |b| {
        b.to_async(&rt).iter(|| async {
            let o = warm.execute("return 1 + 1", ExecuteOptions::default()).await;
            assert_eq!(o.value, json!(2));
        })
    });
    c.bench_function("execute/return_1_plus_1/warm_pool_paced", |b| {
        b.to_async(&rt).iter_custom(|iters| paced(warm.clone(), iters))
    });
    c.bench_function("execute/return_1_plus_1/cold_sandbox", |b| {
        b.to_async(&rt).iter(|| async {
            let o = cold.execute("return 1 + 1", ExecuteOptions::default()).await;
            assert_eq!(o.value, json!(2));
        })
    });
    // Per-call cost: one program making 1,000 sequential calls, divided by 1,000.
    c.bench_function("tool_call/round_trip", |b| {
        b.to_async(&rt).iter_custom(|iters| round_trips(warm.clone(), iters))
    });
    c.bench_function("execute/demo_workflow", |b| {
        b.to_async(&rt).iter(|| async {
            let o = warm.execute(spreadsheet, ExecuteOptions::default()).await;
            assert_eq!(o.value["active"], json!(3334));
        })
    });
    // Sessions: the same program in a live session's sandbox (kept between executions) against
    // a fresh one from the pool; and a follow-up question answered from rows an earlier program
    // of the session fetched, against fetching them again.
    let session = warm.session("bench");
    c.bench_function("session/return_1_plus_1/live_session", |b| {
        b.to_async(&rt).iter(|| async {
            let o = session.execute("return 1 + 1", ExecuteOptions::default()).await;
            assert_eq!(o.value, json!(2));
        })
    });
    const FETCH: &str = "const rows = await sheets.getRows({ sheetId: 'sales' });";
    const COUNT: &str = "return rows.filter((r: any) => r.status === 'active').length;";
    rt.block_on(session.execute(FETCH, ExecuteOptions::default()));
    c.bench_function("session/follow_up/reuse_rows", |b| {
        b.to_async(&rt).iter(|| async {
            let o = session.execute(COUNT, ExecuteOptions::default()).await;
            assert_eq!(o.value, json!(3334), "{:?}", o.error);
        })
    });
    let refetch = format!("{FETCH}\n{COUNT}");
    c.bench_function("session/follow_up/fetch_again", |b| {
        b.to_async(&rt).iter(|| async {
            let o = warm.execute(&refetch, ExecuteOptions::default()).await;
            assert_eq!(o.value, json!(3334), "{:?}", o.error);
        })
    });
    // Privacy: what tokenizing costs. All 100 demo contacts returned (200 values to replace),
    // and the demo workflow (nothing private in its result), with privacy on and off.
    let private = {
        let privacy = codemode::Privacy::new(codemode::PRIVACY_KINDS.iter().copied(), []).unwrap();
        let mut registry = codemode::demo::registry();
        codemode::demo::register_crm(&mut registry).unwrap();
        Engine::builder().registry(registry).privacy(privacy).build().unwrap()
    };
    const CONTACTS: &str = "return await crm.listContacts();";
    let plain = {
        let mut registry = codemode::demo::registry();
        codemode::demo::register_crm(&mut registry).unwrap();
        Engine::builder().registry(registry).build().unwrap()
    };
    for (name, engine) in [("off", &plain), ("on", &private)] {
        c.bench_function(&format!("privacy/contacts/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let o = engine.execute(CONTACTS, ExecuteOptions::default()).await;
                assert_eq!(o.value.as_array().map(Vec::len), Some(100));
            })
        });
        c.bench_function(&format!("privacy/demo_workflow/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let o = engine.execute(spreadsheet, ExecuteOptions::default()).await;
                assert_eq!(o.value["active"], json!(3334));
            })
        });
    }
    // Approvals: a program whose one write pauses, then is approved, against the same program
    // with the tool not needing approval (the pause costs a trip back to the caller and on).
    let approving = {
        let mut registry = codemode::demo::registry();
        registry.require_approval("sheets.updateRow");
        Engine::builder().registry(registry).build().unwrap()
    };
    const UPDATE: &str =
        "await sheets.updateRow({ sheetId: 'sales', id: 1, fields: { status: 'won' } }); return 1";
    c.bench_function("approval/write/no_approval", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(warm.execute(UPDATE, ExecuteOptions::default()).await.value, json!(1));
        })
    });
    c.bench_function("approval/write/pause_and_approve", |b| {
        b.to_async(&rt).iter(|| async {
            let paused = approving.execute(UPDATE, ExecuteOptions::default()).await;
            let approval = paused.paused.expect("paused").approval;
            assert_eq!(approving.resume(&approval, true, None).await.unwrap().value, json!(1));
        })
    });
    // Skills: the same work written in the program, and called as a saved program (which the
    // sandbox compiles the first time the program calls it: it is not cached as bytecode).
    const WORK: &str = "const list = await sheets.listSheets();\nreturn list.map((s) => s.id).join(',');";
    let skilled = Engine::builder().registry(codemode::demo::registry()).build().unwrap();
    rt.block_on(skilled.add_skill(codemode::Skill::parse("sheetIds", WORK).unwrap())).unwrap();
    for (name, code) in [("inline", WORK), ("skill", "return await skills.sheetIds();")] {
        c.bench_function(&format!("skills/sheet_ids/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let o = skilled.execute(code, ExecuteOptions::default()).await;
                assert_eq!(o.value, json!("sales"));
            })
        });
    }
    // The same three with every sandbox in a sealed worker process, for the ratios.
    let sealed = builder(4)
        .isolation(codemode::Isolation::Process)
        .worker_program(env!("CARGO_BIN_EXE_codemode"))
        .build()
        .unwrap();
    let _ = rt.block_on(sealed.execute("return 1 + 1", ExecuteOptions::default()));
    c.bench_function("sealed/execute/return_1_plus_1/warm_pool", |b| {
        b.to_async(&rt).iter(|| async {
            let o = sealed.execute("return 1 + 1", ExecuteOptions::default()).await;
            assert_eq!(o.value, json!(2));
        })
    });
    c.bench_function("sealed/execute/return_1_plus_1/warm_pool_paced", |b| {
        b.to_async(&rt).iter_custom(|iters| paced(sealed.clone(), iters))
    });
    c.bench_function("sealed/tool_call/round_trip", |b| {
        b.to_async(&rt).iter_custom(|iters| round_trips(sealed.clone(), iters))
    });
    c.bench_function("sealed/execute/demo_workflow", |b| {
        b.to_async(&rt).iter(|| async {
            let o = sealed.execute(spreadsheet, ExecuteOptions::default()).await;
            assert_eq!(o.value["active"], json!(3334));
        })
    });
    // The same three on the V8 engine, and a compute-heavy program on each engine.
    let v8 = builder(4).engine(codemode::EngineKind::V8).node_program(node()).build().unwrap();
    let _ = rt.block_on(v8.execute("return 1 + 1", ExecuteOptions::default()));
    c.bench_function("v8/execute/return_1_plus_1/warm_pool", |b| {
        b.to_async(&rt).iter(|| async {
            let o = v8.execute("return 1 + 1", ExecuteOptions::default()).await;
            assert_eq!(o.value, json!(2));
        })
    });
    c.bench_function("v8/execute/return_1_plus_1/warm_pool_paced", |b| {
        b.to_async(&rt).iter_custom(|iters| paced(v8.clone(), iters))
    });
    c.bench_function("v8/tool_call/round_trip", |b| {
        b.to_async(&rt).iter_custom(|iters| round_trips(v8.clone(), iters))
    });
    c.bench_function("v8/execute/demo_workflow", |b| {
        b.to_async(&rt).iter(|| async {
            let o = v8.execute(spreadsheet, ExecuteOptions::default()).await;
            assert_eq!(o.value["active"], json!(3334));
        })
    });
    // Compute-heavy programs, where a JIT shows: a sum, a loop whose body is an integer
    // division (which a JIT speeds up least), and sorting a million numbers.
    const COMPUTE: [(&str, &str, i64); 3] = [
        (
            "sum_10m",
            "let n = 0;\nfor (let i = 0; i < 10_000_000; i++) n += i;\nreturn n;",
            49_999_995_000_000,
        ),
        (
            "loop_10m",
            "let n = 0;\nfor (let i = 0; i < 10_000_000; i++) n = (n + i * 7) % 1_000_003;\nreturn n;",
            3255,
        ),
        (
            "sort_1m",
            "const a = Array.from({ length: 1_000_000 }, (_, i) => (i * 7919) % 1_000_003);\n\
             a.sort((x, y) => x - y);\nreturn a[500_000];",
            500_000,
        ),
    ];
    let roomy = codemode::Limits { timeout: Duration::from_secs(60), ..codemode::Limits::default() };
    for (workload, code, expected) in COMPUTE {
        for (name, engine) in [("quickjs", &warm), ("v8", &v8)] {
            c.bench_function(&format!("compute/{workload}/{name}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let options = ExecuteOptions { limits: Some(roomy.clone()), ..ExecuteOptions::default() };
                    let o = engine.execute(code, options).await;
                    assert_eq!(o.value, json!(expected), "{:?}", o.error);
                })
            });
        }
    }
    // Throughput: 1,000 trivial executions in flight at once; time per execution.
    c.bench_function("throughput/trivial_x1000", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let warm = warm.clone();
            async move {
                let started = Instant::now();
                for _ in 0..iters {
                    let handles: Vec<_> = (0..1000)
                        .map(|_| {
                            let e = warm.clone();
                            tokio::spawn(
                                async move { e.execute("return 1 + 1", ExecuteOptions::default()).await },
                            )
                        })
                        .collect();
                    for h in handles {
                        assert!(h.await.unwrap().is_ok());
                    }
                }
                started.elapsed() / 1000
            }
        })
    });
}

/// Node.js for the V8 engine, installed by `codemode setup v8` on first use.
fn node() -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("node-{}", codemode::NODE_VERSION));
    let node = codemode::installed_node(&dir);
    if !node.is_file() {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_codemode"))
            .args(["setup", "v8", "--dir"])
            .arg(&dir)
            .status()
            .expect("codemode setup v8 runs");
        assert!(status.success(), "`codemode setup v8` failed");
    }
    node
}

/// The agent pattern: executions seconds apart, so the pool (or the worker) has refilled in
/// between. A 2 ms pause (untimed) before each execution stands in for that gap.
async fn paced(engine: Engine, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let started = Instant::now();
        let o = engine.execute("return 1 + 1", ExecuteOptions::default()).await;
        total += started.elapsed();
        assert_eq!(o.value, json!(2));
    }
    total
}

/// `iters` sequential tool calls, 1,000 per program: the time they took.
async fn round_trips(engine: Engine, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(1000);
        let code = format!("for (let i = 0; i < {n}; i++) await bench.noop({{}}); return {n}");
        let started = Instant::now();
        let o = engine.execute(&code, ExecuteOptions::default()).await;
        total += started.elapsed();
        assert!(o.is_ok(), "{:?}", o.error);
        left -= n;
    }
    total
}

criterion_group! {
    name = runtime;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(runtime);
