use std::sync::OnceLock;
use std::time::Duration;

use codemode::{Engine, ExecuteOptions, Limits, Outcome, Registry, Tool, ToolError, ToolOutput};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Tools for tests: `t.echo`, `t.sleep`, `t.fail`, `t.panic`, `t.big`, and names that need mapping.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    let any = json!({"type": "object"});
    r.register(
        "t",
        Tool::new("echo", "Return the arguments.", any.clone(), |args: Value| async move {
            Ok::<_, ToolError>(args)
        }),
    )
    .unwrap();
    r.register(
        "t",
        Tool::new(
            "sleep",
            "Sleep for ms milliseconds, then return ms.",
            json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}),
            |args: Value| async move {
                let ms = args["ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, ToolError>(json!(ms))
            },
        ),
    )
    .unwrap();
    r.register(
        "t",
        Tool::new("fail", "Always fails.", any.clone(), |_args: Value| async move {
            Err::<Value, _>(ToolError::with_code("nope", "it did not work"))
        }),
    )
    .unwrap();
    r.register(
        "t",
        Tool::new("panic", "Always panics.", any.clone(), |_args: Value| async move {
            if true {
                panic!("handler exploded");
            }
            Ok::<Value, ToolError>(Value::Null)
        }),
    )
    .unwrap();
    r.register(
        "t",
        Tool::new(
            "big",
            "Return n bytes of text.",
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
            |args: Value| async move {
                Ok::<_, ToolError>(json!("x".repeat(args["n"].as_u64().unwrap_or(0) as usize)))
            },
        ),
    )
    .unwrap();
    r.register("t", Tool::new("get-sum", "Sum a and b.", json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}), |args: Value| async move {
        Ok::<_, ToolError>(json!(args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0)))
    }))
    .unwrap();
    r.register(
        "t",
        Tool::new("delete", "Reserved word name.", any, |_args: Value| async move {
            Ok::<_, ToolError>(json!("deleted"))
        }),
    )
    .unwrap();
    r.register(
        "t",
        Tool::new(
            "raw",
            "Return the given JSON text as it is.",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
            |args: Value| async move {
                Ok::<_, ToolError>(ToolOutput::Json(args["text"].as_str().unwrap_or_default().to_string()))
            },
        ),
    )
    .unwrap();
    codemode::demo::register(&mut r).unwrap();
    r
}

/// An engine builder for the engine this test binary runs against (`crate::ISOLATION`): every
/// test that builds an engine starts here, so the same tests run in each.
pub fn builder() -> codemode::EngineBuilder {
    let mut builder = Engine::builder().isolation(crate::ISOLATION).engine(crate::ENGINE);
    if crate::ENGINE == codemode::EngineKind::V8 {
        builder = builder.node_program(node());
    }
    // The binary is a worker when started as one; the test binary is not.
    match option_env!("CARGO_BIN_EXE_codemode") {
        Some(program) => builder.worker_program(program),
        None => builder,
    }
}

/// Node.js for the V8 engine, installed on first use by `codemode setup v8` into this test
/// binary's temporary folder (so the README's test command does its own set-up). Without npm
/// the V8 tests fail, saying so; they never pass silently.
pub fn node() -> std::path::PathBuf {
    static INSTALLED: OnceLock<std::path::PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("node-{}", codemode::NODE_VERSION));
            let node = codemode::installed_node(&dir);
            if !node.is_file() {
                let status = std::process::Command::new(env!("CARGO_BIN_EXE_codemode"))
                    .args(["setup", "v8", "--dir"])
                    .arg(&dir)
                    .status()
                    .expect("codemode setup v8 runs");
                assert!(
                    status.success(),
                    "`codemode setup v8` failed: the V8 tests need npm to install Node.js"
                );
            }
            assert!(node.is_file(), "{} is missing after `codemode setup v8`", node.display());
            node
        })
        .clone()
}

/// One engine shared by the tests of this binary (the pool is what production uses too).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| builder().registry(registry()).build().unwrap())
}

pub async fn run(code: &str) -> Outcome {
    engine().execute(code, ExecuteOptions::default()).await
}

pub async fn run_with(code: &str, limits: Limits) -> Outcome {
    engine().execute(code, ExecuteOptions { limits: Some(limits), ..Default::default() }).await
}

/// Runs a program that must succeed and returns its value.
pub async fn value(code: &str) -> Value {
    let o = run(code).await;
    assert!(o.error.is_none(), "unexpected error: {:?}\nlogs: {:?}", o.error, o.logs);
    o.value
}

/// Runs a program that must fail and returns its error.
pub async fn error(code: &str) -> codemode::ExecError {
    let o = run(code).await;
    o.error.unwrap_or_else(|| panic!("expected an error, got value {}", o.value))
}

/// Runs a program that must fail with `kind` and returns its error.
pub async fn failure(code: &str, kind: codemode::ErrorKind) -> codemode::ExecError {
    let e = error(code).await;
    assert_eq!(e.kind, kind, "{code}: {e:?}");
    e
}

/// After any attack, the same engine still runs a normal program.
pub async fn still_healthy() {
    assert_eq!(value("return (await t.echo({ v: 41 })).v + 1").await, json!(42));
}

pub fn logs(o: &Outcome) -> Vec<String> {
    o.logs.iter().map(|l| l.message.clone()).collect()
}

/// Compares `actual` with the golden file at `path`; with `UPDATE_EXPECTED=1`, rewrites it.
pub fn expect_file(path: &std::path::Path, actual: &str) {
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECTED=1 to create it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| expected.lines().count().min(actual.lines().count()) + 1, |i| i + 1);
        panic!(
            "{} differs from the generated text at line {line} (UPDATE_EXPECTED=1 rewrites it):\n--- expected\n{}\n--- actual\n{}",
            path.display(),
            expected.lines().nth(line - 1).unwrap_or("<end>"),
            actual.lines().nth(line - 1).unwrap_or("<end>"),
        );
    }
}

/// A command running `bin` from the npm packages in tests/npm, which the first caller installs
/// with `npm ci` (so the README's test command does its own set-up). `None` when node or npm
/// is not on this machine.
pub fn node_tool(bin: &str) -> std::process::Command {
    let dir = npm_packages();
    let script = match bin {
        "tsc" => "node_modules/typescript/bin/tsc",
        other => panic!("no npm tool {other:?} in tests/npm"),
    };
    let mut cmd = std::process::Command::new("node");
    cmd.arg(dir.join(script));
    cmd
}

/// The entry script of an npm package in tests/npm (installed on first use), to run with node.
pub fn npm_script(package: &str) -> std::path::PathBuf {
    let dir = npm_packages().join("node_modules").join(package);
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let bin = match &meta["bin"] {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.values().next().and_then(Value::as_str).unwrap().to_string(),
        other => panic!("{package}: no bin in package.json ({other})"),
    };
    dir.join(bin)
}

/// TypeScript 7's native compiler, installed in tests/npm as `typescript7`. The type-checker
/// tests need it: without node and npm they fail, they never pass silently.
pub fn typescript7() -> std::path::PathBuf {
    let binary = codemode::TypeChecker::installed_binary(npm_packages());
    assert!(binary.is_file(), "{} is missing after npm ci", binary.display());
    binary
}

/// A type checker over TypeScript 7, with its project in this test binary's temporary folder.
pub fn type_checker(name: &str) -> codemode::TypeChecker {
    let work = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("typecheck-{name}-{}", std::process::id()));
    codemode::TypeChecker::start(typescript7(), work).unwrap()
}

/// tests/npm with its packages installed by `npm ci`. The tests that need node and npm fail
/// without them, saying so; they never pass silently (CI has both).
pub fn npm_dir() -> std::path::PathBuf {
    npm_packages().clone()
}

fn npm_packages() -> &'static std::path::PathBuf {
    static INSTALLED: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let dir = INSTALLED.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm");
        let have = |cmd: &str| {
            std::process::Command::new(cmd).arg("--version").output().is_ok_and(|o| o.status.success())
        };
        if !have("node") || !have("npm") {
            return None;
        }
        let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
        let installed = std::fs::read_to_string(dir.join("node_modules/.package-lock.json")).ok();
        // npm ci rewrites node_modules; skip it when the install already matches the lock.
        if installed.is_none_or(|i| !same_packages(&i, &lock)) {
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm runs");
            assert!(status.success(), "npm ci in tests/npm failed");
        }
        Some(dir)
    });
    dir.as_ref().expect(
        "this test needs node (20 or newer) and npm on PATH, to install tests/npm's packages; \
         install Node.js, then run the tests again",
    )
}

/// Whether node_modules/.package-lock.json holds the lock file's packages at its versions:
/// every installed package as locked, and every package the lock does not mark optional
/// installed (npm installs only this platform's optional packages, such as TypeScript 7's
/// native compiler, and lists only those).
fn same_packages(installed: &str, lock: &str) -> bool {
    let packages = |text: &str| -> Option<serde_json::Map<String, Value>> {
        let mut v: Value = serde_json::from_str(text).ok()?;
        let mut map = v["packages"].as_object_mut()?.clone();
        map.remove("");
        Some(map)
    };
    let (Some(installed), Some(lock)) = (packages(installed), packages(lock)) else { return false };
    installed.iter().all(|(k, p)| lock.get(k).is_some_and(|l| l["version"] == p["version"]))
        && lock.iter().all(|(k, l)| l["optional"] == json!(true) || installed.contains_key(k))
}

/// The four real MCP servers' tools (tests/fixtures/typegen/real) as namespaces `everything`,
/// `filesystem`, `github`, `memory`, plus the demo. Their handlers echo `{tool, args}`.
pub fn real_registry() -> Registry {
    let mut r = codemode::demo::registry();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/typegen/real");
    for ns in ["everything", "filesystem", "github", "memory"] {
        let text = std::fs::read_to_string(dir.join(format!("{ns}.json"))).unwrap();
        for def in codemode::definitions::parse(&text).unwrap() {
            let name = def.name.clone();
            let tool = Tool::from_definition(def, move |args: Value| {
                let name = name.clone();
                async move { Ok::<_, ToolError>(json!({ "tool": name, "args": args })) }
            });
            r.register(ns, tool).unwrap();
        }
    }
    r
}

/// A `python3` command whose PYTHONPATH holds the packages of tests/python/requirements.txt,
/// which the first caller installs with pip into target/python (so the README's test command
/// does its own set-up). The tests that need it fail without python3 and pip, saying so; they
/// never pass silently (CI has both).
pub fn python() -> std::process::Command {
    static INSTALLED: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    let dir = INSTALLED.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let requirements = std::fs::read_to_string(root.join("tests/python/requirements.txt")).unwrap();
        let target = root.join("target/python");
        let stamp = target.join(".requirements");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
            return Some(target);
        }
        let pip = std::process::Command::new("python3").args(["-m", "pip", "--version"]).output();
        if !pip.is_ok_and(|o| o.status.success()) {
            return None;
        }
        let _ = std::fs::remove_dir_all(&target);
        let status = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&target)
            .arg("-r")
            .arg(root.join("tests/python/requirements.txt"))
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install of tests/python/requirements.txt failed");
        std::fs::write(&stamp, requirements).unwrap();
        Some(target)
    });
    let dir = dir.as_ref().expect(
        "this test needs python3 with pip on PATH, to install tests/python/requirements.txt; \
         install them, then run the tests again",
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.env("PYTHONPATH", dir);
    cmd
}

/// Polls `check` every 20 ms until it holds; fails after `within`. The bound only tells a state
/// that came from the behaviour under test from one that would come much later.
pub async fn eventually(within: std::time::Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "never happened: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>>;

/// `codemode mcp` over an in-memory pipe, initialized by a client declaring `capabilities`: its output lines and its input.
pub async fn in_memory_session(
    server: codemode::mcp::McpServer,
    capabilities: Value,
) -> (Lines, tokio::io::WriteHalf<tokio::io::DuplexStream>) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(theirs);
    tokio::spawn(server.serve_lines(r, w));
    let (r, mut w) = tokio::io::split(ours);
    let hello = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
        "capabilities": capabilities, "clientInfo": {"name": "t", "version": "0"}}});
    w.write_all(
        format!("{hello}\n{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut lines = tokio::io::BufReader::new(r).lines();
    let hello: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(hello["id"], json!(0), "{hello}");
    (lines, w)
}

/// Starts `command` (a face on stdin/stdout), writes each of `lines` and, for a request, waits
/// for its response before the next (the faces answer requests concurrently); then closes its
/// input, checks that it exits with success, and returns everything it wrote.
pub fn converse(mut command: std::process::Command, lines: &[Value]) -> String {
    use std::io::{BufRead, Write};
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    for line in lines {
        writeln!(input, "{line}").unwrap();
        let Some(id) = line.get("id") else { continue };
        loop {
            let mut read = String::new();
            assert!(output.read_line(&mut read).unwrap() > 0, "no response to {line}: {out}");
            out.push_str(&read);
            if serde_json::from_str::<Value>(&read).unwrap().get("id") == Some(id) {
                break;
            }
        }
    }
    drop(input);
    assert!(child.wait().unwrap().success());
    out
}
