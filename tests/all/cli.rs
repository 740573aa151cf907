use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// The binary, with a cache directory of this test run's own and no TypeScript, so what a
/// developer installed with `codemode setup` does not change what the tests see.
fn codemode() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codemode"));
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    cmd.env("XDG_CACHE_HOME", tmp.join("cli-cache"))
        .env("XDG_DATA_HOME", tmp.join("cli-data"))
        .env_remove("CODEMODE_TYPESCRIPT_DIR");
    cmd
}

/// The same, type-checking with the TypeScript 7 of tests/npm.
fn checked() -> Command {
    let mut cmd = codemode();
    let binary = crate::harness::typescript7();
    // tests/npm is laid out as `codemode setup` lays out its directory.
    let dir = binary.ancestors().nth(5).unwrap().to_path_buf();
    cmd.env("CODEMODE_TYPESCRIPT_DIR", dir);
    cmd
}

fn run_stdin(args: &[&str], code: &str) -> (i32, String) {
    let mut child = codemode()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused as bad usage exits before it reads its input.
    let _ = child.stdin.take().unwrap().write_all(code.as_bytes());
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn a_reader_that_hangs_up_ends_the_output_quietly() {
    // 200 KB of output cannot fit a pipe's buffer, so the writes after the hang-up must fail.
    let mut child = codemode()
        .args(["run", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.stdin.take().unwrap().write_all(b"return 'x'.repeat(200000)").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn run_json_prints_one_object() {
    let (code, out) = run_stdin(&["run", "--json", "-"], "console.log('hi'); return 1 + 1");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["value"], json!(2));
    assert_eq!(v["logs"], json!([{"level": "log", "message": "hi"}]));
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["stats"]["tool_calls"], json!(0));
    assert!(v["stats"]["duration_ms"].is_number());
    assert_eq!(v["stats"]["tokens"], json!({"tool_results": 0, "returned": 2, "estimated": true}));
}

#[test]
fn run_demo_example_summarizes_the_sheet() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/spreadsheet.ts");
    let out = codemode().args(["run", "--demo", "--json", path]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["value"]["active"], json!(3334));
    assert_eq!(v["value"]["totalAmount"], json!(1665027));
    assert_eq!(v["value"]["top"], json!(["Customer 321", "Customer 3321", "Customer 6321"]));
    assert_eq!(v["logs"][0]["message"], json!("10000 rows read, 3334 active"));
    assert_eq!(v["stats"]["tool_calls"], json!(2));
    let tokens = &v["stats"]["tokens"];
    assert!(tokens["tool_results"].as_u64().unwrap() > 200_000, "{tokens}");
    assert!(tokens["returned"].as_u64().unwrap() < 200, "{tokens}");
    assert_eq!(tokens["estimated"], json!(true));
}

#[test]
fn run_counts_tokens_exactly_only_when_asked() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/spreadsheet.ts");
    let tokens = |extra: &[&str]| {
        let out = codemode().args(["run", "--demo", "--json", path]).args(extra).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["stats"]["tokens"].clone()
    };
    let (estimate, exact) = (tokens(&[]), tokens(&["--tokens"]));
    assert_eq!((&estimate["estimated"], &exact["estimated"]), (&json!(true), &json!(false)));
    // The value and logs are the same text both times, so the exact count is the tokenizer's.
    let (e, x) = (estimate["tool_results"].as_f64().unwrap(), exact["tool_results"].as_f64().unwrap());
    assert_ne!(e, x);
    assert!((e - x).abs() / x < 0.2, "estimate {e} against exact {x}");
    let (code, out) = run_stdin(&["run", "--tokens", "-"], "return 'hello world'");
    assert_eq!(code, 0);
    let summary = out.lines().last().unwrap();
    assert!(summary.ends_with("· 0 tokens of tool results kept out of context, 4 returned"), "{summary}");
    let (_, out) = run_stdin(&["run", "-"], "return 'hello world'");
    let summary = out.lines().last().unwrap();
    assert!(summary.ends_with("· ~0 tokens of tool results kept out of context, ~4 returned"), "{summary}");
}

#[test]
fn failing_script_exits_1_with_human_error() {
    let (code, out) = run_stdin(&["run", "-"], "const a = 1;\nthrow new TypeError('bad input');");
    assert_eq!(code, 1);
    assert!(out.contains("error[exception] at line 2, column 11: TypeError: bad input"), "{out}");
}

#[test]
fn timeout_flag_is_applied() {
    let (code, out) = run_stdin(&["run", "--json", "--timeout-ms", "100", "-"], "while(true){}");
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["kind"], json!("timeout"));
    assert_eq!(v["error"]["message"], json!("the program ran past its 100 ms deadline"));
}

#[test]
fn bad_usage_exits_2() {
    let out = codemode().args(["run", "/nonexistent/file.ts"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/file.ts"));
    let out = codemode().args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn output(args: &[&str]) -> (i32, String, String) {
    let out = codemode().args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const GITHUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/typegen/real/github.json");
const BROKEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/typegen/hard/broken.json");

#[test]
fn types_prints_the_declarations_of_every_source() {
    let (code, out, _) = output(&["types", "--demo"]);
    assert_eq!(code, 0);
    let mut demo = codemode::demo::registry();
    codemode::demo::register_crm(&mut demo).unwrap();
    assert_eq!(out, demo.declarations());
    let (code, out, _) = output(&["types", "--demo", "--schema", GITHUB, "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let text = v["declarations"].as_str().unwrap();
    assert_eq!(text.matches("declare namespace ").count(), 3);
    assert!(text.contains("declare namespace github {"));
    assert_eq!(v["problems"], json!([]));
}

#[test]
fn tools_subcommands() {
    let (code, out, _) = output(&["tools", "list", "--demo", "--schema", &format!("gh={GITHUB}")]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "crm (3 tools): Contacts (with private data: emails, phone numbers) and an outbox.\n\
         gh (26 tools)\nsheets (3 tools): A workbook of spreadsheets: list sheets, read rows, update rows.\n"
    );
    let (code, out, _) = output(&[
        "tools",
        "search",
        "fork a repository",
        "--schema",
        GITHUB,
        "--detail",
        "name",
        "--limit",
        "2",
    ]);
    assert_eq!((code, out.lines().next()), (0, Some("github.fork_repository")));
    let (code, out, _) = output(&["tools", "search", "getRows", "--demo", "--json", "--limit", "1"]);
    assert_eq!(code, 0);
    let hits: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hits[0]["signature"], "getRows(args: GetRowsInput): Promise<GetRowsOutput>");
    let (code, out, _) =
        output(&["tools", "show", "sheets.getRows", "tools/sheets/listSheets.d.ts", "--demo"]);
    assert_eq!(code, 0);
    assert_eq!(out, codemode::demo::registry().describe(&["sheets.getRows", "sheets.listSheets"]).unwrap());
    let (code, out, _) = output(&["tools", "files", "--demo", "--json"]);
    assert_eq!(code, 0);
    let files = serde_json::from_str::<Value>(&out).unwrap();
    assert_eq!(
        (files[0].clone(), files[4].clone()),
        (json!("tools/crm/index.d.ts"), json!("tools/sheets/index.d.ts"))
    );
    let (code, out, _) = output(&["tools", "prompt", "--demo"]);
    assert_eq!(code, 0);
    assert!(out.ends_with(
        "Namespaces:\n- crm (3 tools): Contacts (with private data: emails, phone numbers) and an outbox. — listContacts, \
         sendEmail, sentEmails\n- sheets (3 tools): A workbook of spreadsheets: list sheets, read rows, update rows. — getRows, \
         listSheets, updateRow\n"
    ));
}

#[test]
fn commands_with_no_tools_say_how_to_get_some() {
    let hint = "codemode: no tools: add --demo for the built-in sheets namespace, --schema [NS=]FILE for a \
                tool definitions file, or --config FILE (or ./codemode.toml) for upstream MCP servers\n";
    for args in [&["tools", "list"][..], &["types"], &["tools", "files"]] {
        let (code, out, err) = output(args);
        assert_eq!((code, out.as_str(), err.as_str()), (0, "", hint), "{args:?}");
    }
    let (code, _, err) = output(&["tools", "show", "sheets"]);
    assert_eq!((code, err), (2, format!("{hint}codemode: no such tool or namespace: sheets\n")));
}

#[test]
fn serve_without_a_transport_says_which_to_choose() {
    let (code, out, err) = output(&["serve"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "codemode: serve needs a transport: --socket PATH (a Unix socket, for many clients) or --stdio \
         (one client on standard input and output)\n"
    );
}

#[test]
fn mcp_http_takes_host_names_of_loopback_and_says_where_it_listens() {
    let (code, _, err) = output(&["mcp", "--http", "example.invalid:80"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("codemode: --http example.invalid:80: not an address of the form HOST:PORT"),
        "{err}"
    );
    let (code, _, err) = output(&["mcp", "--http", "8.8.8.8:80"]);
    assert_eq!(
        (code, err.as_str()),
        (2, "codemode: --http 8.8.8.8:80: the HTTP server only listens on loopback addresses (127.0.0.1, ::1, localhost)\n")
    );
    let mut server =
        codemode().args(["mcp", "--demo", "--http", "localhost:0"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stderr.as_mut().unwrap()), &mut ready)
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let address = ready
        .strip_prefix("codemode: MCP server at http://127.0.0.1:")
        .and_then(|rest| rest.split_once("/mcp (6 tools; GET / reports its sessions); Ctrl-C stops it\n"))
        .unwrap_or_else(|| panic!("{ready}"));
    assert!(address.0.parse::<u16>().is_ok_and(|port| port > 0), "{ready}");
    // A busy port's error names the address.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (code, _, err) = output(&["mcp", "--http", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("codemode: mcp: cannot listen on 127.0.0.1:{port}: ")), "{err}");
}

#[test]
fn a_failed_run_does_not_claim_it_returned_tokens() {
    let (code, out) = run_stdin(&["run", "-"], "throw new Error('no')");
    assert_eq!(code, 1);
    let summary = out.lines().last().unwrap();
    assert!(summary.starts_with("— failed in "), "{summary}");
    assert!(
        summary.ends_with(" ms · 0 tool calls · ~0 tokens of tool results kept out of context"),
        "{summary}"
    );
}

#[test]
fn bad_sources_and_names_fail_with_where_and_what() {
    let (code, _, err) = output(&["tools", "show", "nope", "--demo"]);
    assert_eq!((code, err.as_str()), (2, "codemode: no such tool or namespace: nope\n"));
    let (code, _, err) = output(&["types", "--schema", BROKEN]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        format!(
            "codemode: {BROKEN}: invalid input schema for tool broken.broken: at /properties/refNotString/$ref: 5 is not of type \"string\"\n"
        )
    );
    let (code, _, err) = output(&["types", "--schema", "/nonexistent.json"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("codemode: cannot read /nonexistent.json: "), "{err}");
}

#[test]
fn serve_socket_runs_the_python_client_and_shuts_down_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let socket = std::env::temp_dir().join(format!("codemode-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut daemon =
        codemode().args(["serve", "--socket"]).arg(&socket).stderr(Stdio::piped()).spawn().unwrap();
    // The daemon says where it listens once it does.
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(daemon.stderr.as_mut().unwrap()), &mut ready)
        .unwrap();
    assert_eq!(
        ready,
        format!("codemode: daemon listening on {} (0 tools); Ctrl-C stops it\n", socket.display())
    );
    std::os::unix::net::UnixStream::connect(&socket).expect("it listens once it says so");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/daemon_client.py");
    let out = Command::new("python3").arg(client).arg(&socket).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "server: codemode {}\nfunction stockLevel(args: StockLevelInput): Promise<StockLevelOutput>;\nlog: checked 3 items\nok: True out of stock: [\"pears\"] tool calls: 3\n",
            env!("CARGO_PKG_VERSION")
        )
    );

    // A second daemon refuses the live socket.
    let (code, _, err) = output(&["serve", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("codemode: cannot serve on {0}: {0} is in use by a running daemon\n", socket.display())
    );

    let status = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = daemon.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!socket.exists(), "the socket is removed on shutdown");
}

#[test]
fn serve_stdio_answers_on_stdout_until_stdin_closes() {
    let mut child = codemode()
        .args(["serve", "--stdio", "--demo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"code/execute","params":{{"code":"return (await sheets.listSheets()).length"}}}}"#).unwrap();
    writeln!(stdin, "oops").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let parse_error = lines.iter().find(|l| l["id"].is_null()).unwrap();
    assert_eq!(parse_error["error"]["code"], json!(-32700));
    let result = lines.iter().find(|l| l["id"] == json!(1)).unwrap();
    assert_eq!(result["result"]["value"], json!(1));
}

/// `serve --stdio` reads a pipe through the reactor, which makes the pipe non-blocking; the
/// flag belongs to the pipe's file description, which the process that started it may share
/// (a shell's next command), so it is cleared again when the daemon ends.
#[test]
fn serve_stdio_leaves_a_shared_pipe_blocking_when_it_ends() {
    use std::os::fd::AsRawFd;
    let (reader, mut writer) = std::io::pipe().unwrap();
    // Shares the reading end's description, as the shell's next command would.
    let kept = reader.try_clone().unwrap();
    let nonblocking = || {
        // SAFETY: fcntl F_GETFL on a descriptor this test owns.
        let flags = unsafe { libc::fcntl(kept.as_raw_fd(), libc::F_GETFL) };
        assert!(flags >= 0);
        flags & libc::O_NONBLOCK != 0
    };
    let mut child = codemode()
        .args(["serve", "--stdio", "--typecheck", "off"])
        .stdin(reader)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(
        writer,
        r#"{{"jsonrpc":"2.0","id":1,"method":"code/execute","params":{{"code":"return 1 + 1"}}}}"#
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["result"]["value"], json!(2));
    assert!(nonblocking(), "while serving, the pipe is read through the reactor");
    drop(writer);
    assert!(child.wait().unwrap().success());
    assert!(!nonblocking(), "the daemon left the shared pipe non-blocking");
}

#[test]
fn run_with_a_config_file_uses_its_limits_and_upstream_servers() {
    let memory = crate::harness::npm_script("@modelcontextprotocol/server-memory");
    let dir = std::env::temp_dir().join(format!("codemode-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("codemode.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\ntimeout_ms = 3000\n\n[[servers]]\nnamespace = \"memory\"\ncommand = \"node\"\nargs = [{:?}]\nenv = {{ MEMORY_FILE_PATH = {:?} }}\n",
            memory.display().to_string(),
            dir.join("memory.jsonl").display().to_string()
        ),
    )
    .unwrap();
    let program =
        "await memory.create_entities({ entities: [{ name: 'x', entityType: 't', observations: [] }] });\n\
                   return (await memory.read_graph({})).entities.length";
    let (code, out) = run_stdin(&["run", "--json", "--config", config.to_str().unwrap(), "-"], program);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["value"], json!(1));
    let (code, out) =
        run_stdin(&["run", "--json", "--config", config.to_str().unwrap(), "-"], "while (true) {}");
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["message"], "the program ran past its 3000 ms deadline");

    // The daemon's stats report each upstream server.
    let (code, out) = run_stdin(
        &["serve", "--stdio", "--config", config.to_str().unwrap()],
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stats\"}\n",
    );
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let up = &v["result"]["upstreams"][0];
    assert_eq!(
        (&up["namespace"], &up["transport"], &up["target"], &up["connected"], &up["tools"], &up["calls"]),
        (&json!("memory"), &json!("stdio"), &json!("node"), &json!(true), &json!(9), &json!(0))
    );
    assert!(up["pid"].as_u64().is_some(), "{up}");

    std::fs::write(&config, "[limits]\nmemory = 5\n").unwrap();
    let (code, _, err) = output(&["types", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("codemode: {}:2:1: unknown field `memory`", config.display())), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_type_checks_when_typescript_is_installed() {
    let mut child = checked()
        .args(["run", "--demo", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let program = "const rows = await sheets.listSheets();\nreturn rows.map((r) => r.titel);";
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], json!("type_error"), "{v}");
    assert_eq!(v["error"]["diagnostics"][0]["line"], json!(2));
    assert_eq!(v["error"]["diagnostics"][0]["code"], json!(2551));
    assert_eq!((&v["stats"]["tool_calls"], &v["stats"]["typecheck"]), (&json!(0), &json!("failed")));

    // The human form lists each diagnostic at its line and column; `--typecheck off` runs it.
    let human = checked()
        .args(["run", "--demo", "--typecheck", "warn", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = {
        let mut child = human;
        child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "[warn] the program ran with type errors:\n  2:26 TS2551: Property 'titel' does not exist"
        ),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
}

#[test]
fn run_without_typescript_warns_once_and_runs() {
    let (code, out) = run_stdin(&["run", "--json", "-"], "const s: string = 5; return s");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((&v["value"], &v["stats"]["typecheck"]), (&json!(5), &json!("unavailable")));
    assert_eq!(
        v["stats"]["warnings"],
        json!(["not type-checked: this engine has no TypeScript checker (`codemode setup` installs one)"])
    );
    let (code, out) = run_stdin(&["run", "--json", "--typecheck", "off", "-"], "return 1");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((&v["stats"]["typecheck"], v["stats"].get("warnings")), (&json!("not_checked"), None));
    let (code, _) = run_stdin(&["run", "--typecheck", "sometimes", "-"], "return 1");
    assert_eq!(code, 2);
}

#[test]
fn setup_installs_the_pinned_compiler_and_refuses_a_foreign_directory() {
    crate::harness::typescript7(); // node and npm are here (the tests need them)
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("setup-{}", std::process::id()));
    let out = codemode().args(["setup", "--dir"]).arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let binary = codemode::TypeChecker::installed_binary(&dir);
    assert!(text.starts_with(&format!("TypeScript 7.0.2 installed: {}\n", binary.display())), "{text}");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), "Version 7.0.2");
    // A directory holding someone else's package.json is left alone.
    let foreign = dir.with_extension("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("package.json"), "{\"name\": \"mine\"}").unwrap();
    let out = codemode().args(["setup", "--dir"]).arg(&foreign).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(foreign.join("package.json")).unwrap(), "{\"name\": \"mine\"}");
    // Kept when an assertion fails, to look at; 31 MB of Node each time otherwise.
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&foreign);
}

#[test]
fn a_relative_typescript_directory_is_found_from_the_working_directory() {
    let dir = crate::harness::typescript7().ancestors().nth(5).unwrap().to_path_buf();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let relative = dir.strip_prefix(root).expect("tests/npm is inside the package");
    let out = codemode()
        .args(["run", "-"])
        .env("CODEMODE_TYPESCRIPT_DIR", relative)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"const n: number = 'x';\nreturn n")?;
            child.wait_with_output()
        })
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("1:7 TS2322: Type 'string' is not assignable to type 'number'."), "{out}");
}

#[test]
fn a_stdio_upstream_server_gets_only_the_environment_its_configuration_gives() {
    let everything = crate::harness::npm_script("@modelcontextprotocol/server-everything");
    let dir = std::env::temp_dir().join(format!("codemode-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("codemode.toml");
    std::fs::write(
        &config,
        format!(
            "[[servers]]\nnamespace = \"everything\"\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n\
             env = {{ GIVEN = \"yes\", PASSED = \"env:CODEMODE_TEST_PASSED\" }}\n",
            everything.display().to_string()
        ),
    )
    .unwrap();
    let out = codemode()
        .args(["run", "--json", "--config", config.to_str().unwrap(), "-"])
        .env("CODEMODE_TEST_UNRELATED_SECRET", "do not leak")
        .env("CODEMODE_TEST_PASSED", "through")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(b"return await everything.getEnv({})")?;
            child.wait_with_output()
        })
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v["value"].as_str().map(String::from).unwrap_or_else(|| v["value"].to_string());
    let env: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{v}"));
    let mut names: Vec<&str> = env.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    // What the configuration names, and no more than the few that codemode passes on.
    assert_eq!((env["GIVEN"].as_str(), env["PASSED"].as_str()), (Some("yes"), Some("through")), "{names:?}");
    assert!(env.get("CODEMODE_TEST_UNRELATED_SECRET").is_none(), "{names:?}");
    let allowed = codemode::config::PASSED_ENV;
    let extra: Vec<&str> =
        names.iter().copied().filter(|n| !allowed.contains(n) && !["GIVEN", "PASSED"].contains(n)).collect();
    assert_eq!(extra, Vec::<&str>::new(), "{names:?}");
}

#[test]
fn types_show_what_an_earlier_run_learned_about_untyped_results() {
    let everything = crate::harness::npm_script("@modelcontextprotocol/server-everything");
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-learned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("codemode.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = \"state\"\n\n[[servers]]\nnamespace = \"everything\"\ncommand = \"node\"\n\
             args = [{:?}, \"stdio\"]\n",
            everything.display().to_string()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (code, list, _) = output(&["tools", "list", "--config", config]);
    assert_eq!(code, 0);
    assert!(
        list.contains(
            "  left out: simulate-research-query: callable only as an MCP task (execution.taskSupport is \"required\"), \
             which codemode does not speak yet\n"
        ),
        "{list}"
    );
    // Asked over a second connection that says it takes sampling, elicitation and roots.
    assert!(
        list.contains(
            "  left out: get-roots-list, trigger-elicitation-request, trigger-sampling-request: shown only to \
             clients that take sampling, elicitation or roots requests (codemode mcp forwards them to its client)\n"
        ),
        "{list}"
    );
    let (code, before, _) = output(&["types", "--config", config]);
    assert_eq!(code, 0);
    assert!(before.contains("  type GetSumOutput = codemode.ToolResult;\n"), "{before}");
    let (code, out) = run_stdin(
        &["run", "--json", "--config", config, "-"],
        "return await everything.getSum({ a: 2, b: 3 })",
    );
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["value"], json!("The sum of 2 and 3 is 5."));
    let (code, after, _) = output(&["types", "--config", config]);
    assert_eq!(code, 0);
    assert!(after.contains("   * @observed 1 result\n   */\n  type GetSumOutput = string;\n"), "{after}");
    assert!(dir.join("state/shapes/everything.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
