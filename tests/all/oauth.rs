//! OAuth for upstream servers, against the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`, in tests/npm, run by the npm `deno` because the suite
//! needs a newer Node than these machines have). The suite plays the MCP server and its
//! authorization server; tests/conformance/oauth_client.py drives the `codemode` binary as a
//! person would: `codemode auth login` (a browser that follows the authorization server's
//! redirect stands in for the person), then `codemode run` of a program calling a tool.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The authorization scenarios the suite lists that codemode passes.
const PASSING: &[&str] = &[
    "auth/metadata-default",
    "auth/metadata-var1",
    "auth/metadata-var2",
    "auth/metadata-var3",
    "auth/basic-cimd",
    "auth/scope-from-www-authenticate",
    "auth/scope-from-scopes-supported",
    "auth/scope-omitted-when-undefined",
    "auth/scope-step-up",
    "auth/scope-retry-limit",
    "auth/token-endpoint-auth-basic",
    "auth/token-endpoint-auth-post",
    "auth/token-endpoint-auth-none",
    "auth/pre-registration",
    "auth/2025-03-26-oauth-metadata-backcompat",
    "auth/2025-03-26-oauth-endpoint-fallback",
    "auth/resource-mismatch",
    "auth/iss-supported-missing",
    "auth/iss-wrong-issuer",
    "auth/iss-unexpected",
    "auth/iss-normalized",
    "auth/metadata-issuer-mismatch",
    "auth/client-credentials-basic",
];

/// The ones it does not pass, and why; README.md's OAuth section says the same. The test
/// fails when one of them starts passing, so that this list stays true.
const NOT_PASSING: &[(&str, &str)] = &[
    // Introduced in protocol 2026-07-28, whose servers have no `initialize` handshake: every
    // request carries MCP-Protocol-Version and `_meta`. codemode's client speaks the versions
    // up to 2025-11-25. The authorization steps of each pass; the suite's server then refuses
    // the handshake (-32020 "Missing MCP-Protocol-Version header").
    ("auth/offline-access-scope", "2026-07-28 handshake"),
    ("auth/offline-access-not-supported", "2026-07-28 handshake"),
    ("auth/iss-supported", "2026-07-28 handshake"),
    ("auth/iss-not-advertised", "2026-07-28 handshake"),
    // 2026-07-28 too, and it also needs re-registration when the protected resource moves to
    // another authorization server (SEP-2352), which rmcp 3.9 does not do.
    ("auth/authorization-server-migration", "2026-07-28 handshake; SEP-2352 re-registration"),
    // Extensions, not on the spec's timeline: private_key_jwt client authentication,
    // enterprise-managed authorization (token exchange with an identity provider), DPoP-bound
    // tokens and workload identity federation. Not configurable in `[servers.oauth]`.
    ("auth/client-credentials-jwt", "extension: private_key_jwt"),
    ("auth/enterprise-managed-authorization", "extension: enterprise-managed authorization"),
    ("auth/dpop", "extension: DPoP"),
    ("auth/dpop-nonce", "extension: DPoP"),
    ("auth/wif-jwt-bearer", "extension: workload identity federation"),
];

fn suite() -> Command {
    let npm = crate::harness::npm_dir();
    let mut command = Command::new(npm.join("node_modules/.bin/deno"));
    command
        .args(["run", "--allow-all"])
        .arg(npm.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        // Deno asks no one for updates, and caches under target/.
        .env("DENO_NO_UPDATE_CHECK", "1")
        .env("DENO_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("deno"));
    command
}

/// Runs `scenario` with the client script; returns the suite's whole output.
fn scenario(name: &str, record: Option<&Path>) -> String {
    scenario_with(name, record, false)
}

/// [`scenario`], the program run in a pseudo-terminal with no sign-in first when `terminal`.
fn scenario_with(name: &str, record: Option<&Path>, terminal: bool) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/oauth_client.py");
    let mut command = suite();
    command
        .args(["client", "--timeout", "60000", "--scenario", name, "--command"])
        .arg(format!("python3 {}", script.display()))
        .env("CODEMODE_BIN", env!("CARGO_BIN_EXE_codemode"))
        .env_remove("BROWSER");
    if let Some(record) = record {
        command.env("CODEMODE_CONFORMANCE_RECORD", record);
    }
    if terminal {
        command.env("CODEMODE_CONFORMANCE_TERMINAL", "1");
    }
    let out = command.output().expect("deno runs the conformance suite");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn verdict(output: &str) -> &'static str {
    if output.contains("OVERALL: PASSED") {
        "passed"
    } else if output.contains("OVERALL: FAILED") {
        "failed"
    } else {
        "no verdict"
    }
}

#[test]
fn every_authorization_scenario_passes_or_is_written_down() {
    let list = suite().arg("list").output().expect("deno runs the conformance suite");
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    let client = list.split("Client scenarios").nth(1).expect("the suite lists client scenarios");
    let listed: Vec<&str> = client
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("auth/"))
        .collect();
    let mut known: Vec<&str> = PASSING.iter().copied().chain(NOT_PASSING.iter().map(|(n, _)| *n)).collect();
    known.sort_unstable();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, known, "the suite's authorization scenarios changed:\n{list}");

    // Three at a time: each is a suite, a Python script and two or three codemode processes.
    let results: Vec<(String, String)> = std::thread::scope(|scope| {
        let chunks: Vec<Vec<&str>> = listed.chunks(listed.len().div_ceil(3)).map(<[&str]>::to_vec).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk.into_iter().map(|name| (name.to_string(), scenario(name, None))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a scenario thread")).collect()
    });
    let mut wrong = Vec::new();
    for (name, output) in &results {
        let expected = if PASSING.contains(&name.as_str()) { "passed" } else { "failed" };
        if verdict(output) != expected {
            wrong.push(format!("{name}: {} (expected {expected})\n{output}", verdict(output)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

fn recorded(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn record_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oauth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_signed_in_server_gets_its_token_which_stays_private_until_logout_forgets_it() {
    let dir = record_dir("code");
    let output = scenario("auth/metadata-default", Some(&dir));
    assert_eq!(verdict(&output), "passed", "{output}");

    // The token file: mode 0600, tied to the server's URL, holding what refreshes need.
    assert_eq!(recorded(&dir, "mode"), "0o600");
    let file: Value = serde_json::from_str(&recorded(&dir, "token-file.json")).unwrap();
    let url = file["url"].as_str().unwrap();
    assert!(url.starts_with("http://localhost:") && url.ends_with("/mcp"), "{file}");
    assert_eq!(file["credentials"]["client_id"], "test-client-id");
    let token = file["credentials"]["token_response"]["access_token"].as_str().unwrap();
    assert!(token.starts_with("test-token-"), "{file}");

    // The program called the tool through the token, which it never saw.
    let run = recorded(&dir, "run.out");
    let outcome: Value = serde_json::from_str(run.lines().next().unwrap()).unwrap();
    assert_eq!(outcome["ok"], true, "{run}");
    assert_eq!(outcome["logs"][0]["message"], "testTool \"test\"", "{run}");
    assert!(!run.contains(token), "{run}");

    // Status says what is kept, never the token.
    let status = recorded(&dir, "status.json");
    assert!(!status.contains(token), "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    let file_path = status[0]["file"].as_str().unwrap().to_string();
    assert!(file_path.ends_with("/data/codemode/oauth/conf.json"), "{status}");
    let expires = status[0]["expires_in_s"].as_i64().unwrap();
    assert!((3590..=3600).contains(&expires), "{status}");
    assert_eq!(
        status,
        serde_json::json!([{
            "namespace": "conf",
            "grant": "authorization_code",
            "file": file_path,
            "signed_in": true,
            "client_id": "test-client-id",
            "scopes": [],
            "expires_in_s": expires,
            "refreshable": false,
            "wanted_scopes": [],
        }])
    );

    // Logout deletes the file; a run without a token fails, naming the command to run.
    assert_eq!(recorded(&dir, "logout.out"), "signed out of conf: its token is deleted\n");
    assert_eq!(recorded(&dir, "file-after-logout"), "False");
    let port = url.trim_start_matches("http://localhost:").trim_end_matches("/mcp");
    assert_eq!(
        recorded(&dir, "after-logout.out"),
        format!(
            "exit 1\ncodemode: upstream \"conf\" (http://localhost:{port}/mcp): it needs authorization: run `codemode auth login conf`\n"
        )
    );
}

#[test]
fn a_command_at_a_terminal_signs_in_by_itself_when_it_has_no_token() {
    let dir = record_dir("terminal");
    let output = scenario_with("auth/metadata-default", Some(&dir), true);
    assert_eq!(verdict(&output), "passed", "{output}");
    let shown = recorded(&dir, "terminal.out");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 5, "{shown}");
    assert_eq!(lines[0], "exit 0", "{shown}");
    // Then `$BROWSER`, which the client script set to its python and browser.py.
    assert!(lines[1].starts_with("codemode: opening the sign-in page for conf with "), "{shown}");
    assert!(lines[1].ends_with("tests/conformance/browser.py"), "{shown}");
    assert_eq!(lines[2..4], ["testTool \"test\"", "null"], "{shown}");
    assert!(lines[4].starts_with("— ok in "), "{shown}");
    assert!(
        lines[4].ends_with(" ms · 1 tool call · ~3 tokens of tool results kept out of context, ~5 returned"),
        "{shown}"
    );
}

#[test]
fn a_machine_client_gets_a_token_again_by_itself_after_logout() {
    let dir = record_dir("machine");
    let output = scenario("auth/client-credentials-basic", Some(&dir));
    assert_eq!(verdict(&output), "passed", "{output}");
    assert_eq!(recorded(&dir, "mode"), "0o600");
    let status: Value = serde_json::from_str(&recorded(&dir, "status.json")).unwrap();
    assert_eq!(status[0]["grant"], "client_credentials", "{status}");
    assert_eq!(status[0]["signed_in"], true, "{status}");
    assert_eq!(recorded(&dir, "file-after-logout"), "False");
    let again = recorded(&dir, "after-logout.out");
    assert!(again.starts_with("exit 0\n"), "{again}");
}

/// `codemode auth ...` with a configuration of one OAuth server at an address nothing listens
/// on, and a data directory of its own.
fn auth(name: &str, args: &[&str]) -> (i32, String, String, PathBuf) {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oauth-cli-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("codemode.toml");
    std::fs::write(
        &config,
        "[[servers]]\nnamespace = \"crm\"\nurl = \"http://127.0.0.1:9/mcp\"\n[servers.oauth]\nscopes = [\"crm:read\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_codemode"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        home.join("data/codemode/oauth/crm.json"),
    )
}

#[test]
fn status_and_logout_say_what_is_kept_and_mistakes_are_named() {
    let (code, out, err, file) = auth("status", &["auth", "status"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "crm: not signed in (authorization code); run `codemode auth login crm`\n", "")
    );
    assert!(!file.exists());
    let (code, out, _, _) = auth("status", &["auth", "logout", "crm"]);
    assert_eq!((code, out.as_str()), (0, "crm: no token was kept\n"));
    let (code, _, err, _) = auth("status", &["auth", "login", "sales"]);
    assert_eq!(
        (code, err.as_str()),
        (2, "codemode: no OAuth server \"sales\"; the servers with [servers.oauth]: crm\n")
    );
    // A server that cannot be reached fails the login with where and why.
    let (code, _, err, _) = auth("status", &["auth", "login", "crm"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("codemode: upstream \"crm\" (http://127.0.0.1:9/mcp): authorization failed: "),
        "{err}"
    );
}

#[test]
fn a_corrupt_token_file_is_reported_and_left_as_it_was() {
    let (_, _, _, file) = auth("corrupt", &["auth", "status"]);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "{ not json").unwrap();
    let expected = format!(
        "codemode: upstream \"crm\" (http://127.0.0.1:9/mcp): its token file {} is not valid (key must be a string at line 1 column 3); `codemode auth login` writes a new one\n",
        file.display()
    );
    let (code, _, err, _) = auth("corrupt", &["auth", "status"]);
    assert_eq!((code, err), (1, expected.clone()));
    // Connecting says the same, before sending anything.
    let (code, _, err, _) = auth("corrupt", &["tools", "list"]);
    assert_eq!((code, err), (1, expected));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{ not json");
}

/// What the refresh tests' server saw: each request's path, `Authorization` header and body.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>, String)>>>;

/// A protected MCP server with its authorization server on one port, for refreshes (which the
/// conformance suite does not exercise): it takes only `Bearer <valid>`, and its token endpoint
/// answers a refresh with the next token of `issued`.
async fn protected_server(valid: &'static str, issued: &'static [&'static str]) -> (u16, Seen) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let seen: Seen = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let valid = std::sync::Arc::new(std::sync::Mutex::new(valid.to_string()));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let record = {
        let seen = seen.clone();
        move |path: &str, headers: &HeaderMap, body: &str| {
            let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
            seen.lock().unwrap().push((path.to_string(), auth, body.to_string()));
        }
    };
    let prm = json_of(serde_json::json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": [base.clone()],
    }));
    let metadata = json_of(serde_json::json!({
        "issuer": base.clone(),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }));
    let token = {
        let (record, valid) = (record.clone(), valid.clone());
        move |headers: HeaderMap, body: String| async move {
            record("/token", &headers, &body);
            let token = issued[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)];
            *valid.lock().unwrap() = token.to_string();
            if body.starts_with("grant_type=client_credentials") {
                // rmcp counts a token as expired 30 s early: this one is good for 1 s.
                return json_of(
                    serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": 31}),
                );
            }
            json_of(serde_json::json!({
                "access_token": token, "token_type": "bearer", "expires_in": 3600,
                "refresh_token": format!("refresh-after-{token}"),
            }))
        }
    };
    let mcp = {
        let base = base.clone();
        move |headers: HeaderMap, body: String| async move {
            record("/mcp", &headers, &body);
            let expected = format!("Bearer {}", valid.lock().unwrap());
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                let challenge =
                    format!("Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\"");
                return (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response();
            }
            let request: serde_json::Value = serde_json::from_str(&body).unwrap();
            let result = match request["method"].as_str() {
                Some("initialize") => serde_json::json!({"protocolVersion": "2025-06-18",
                    "capabilities": {"tools": {}}, "serverInfo": {"name": "vault", "version": "1"}}),
                Some("tools/list") => serde_json::json!({"tools": [{"name": "whoami",
                    "inputSchema": {"type": "object"}}]}),
                Some("tools/call") => serde_json::json!({"content": [{"type": "text", "text": "alice"}]}),
                _ => return StatusCode::ACCEPTED.into_response(),
            };
            json_of(serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
                .into_response()
        }
    };
    let app = axum::Router::new()
        .route("/.well-known/oauth-protected-resource/mcp", axum::routing::get(move || async move { prm }))
        .route("/.well-known/oauth-authorization-server", axum::routing::get(move || async move { metadata }))
        .route("/token", axum::routing::post(token))
        .route("/mcp", axum::routing::post(mcp));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

fn json_of(value: serde_json::Value) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], value.to_string())
}

/// `codemode run` of a program calling `vault.whoami`, with a data directory holding `file` as
/// the server's token file.
fn run_against(port: u16, name: &str, file: Option<&Value>) -> (i32, String, PathBuf) {
    run_program(port, name, file, "", "return await vault.whoami({})")
}

/// `codemode run` of `program`, with `oauth` as the lines of the server's `[servers.oauth]`.
fn run_program(
    port: u16,
    name: &str,
    file: Option<&Value>,
    oauth: &str,
    program: &str,
) -> (i32, String, PathBuf) {
    let home =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oauth-refresh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let tokens = home.join("data/codemode/oauth/vault.json");
    std::fs::create_dir_all(tokens.parent().unwrap()).unwrap();
    if let Some(file) = file {
        std::fs::write(&tokens, file.to_string()).unwrap();
    }
    std::fs::write(
        home.join("codemode.toml"),
        format!(
            "[[servers]]\nnamespace = \"vault\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n[servers.oauth]\n{oauth}"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_codemode"))
        .args(["run", "-", "--json", "--typecheck", "off", "--config"])
        .arg(home.join("codemode.toml"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(program.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap(), text, tokens)
}

/// A token file as `codemode auth login` writes it after a dynamic registration.
fn token_file(port: u16, access: &str, received_secs_ago: u64) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    serde_json::json!({
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "client_secret": "reg-secret",
        "credentials": {
            "client_id": "reg-client",
            "token_response": {"access_token": access, "token_type": "bearer", "expires_in": 3600,
                "refresh_token": format!("refresh-after-{access}")},
            "granted_scopes": [],
            "token_received_at": now - received_secs_ago,
            "issuer": format!("http://127.0.0.1:{port}"),
        },
    })
}

/// The token endpoint's requests, with their client authentication.
fn token_requests(seen: &Seen) -> Vec<(Option<String>, String)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(path, ..)| path == "/token")
        .map(|(_, a, b)| (a.clone(), b.clone()))
        .collect()
}

/// The `Authorization` header (empty when none) of each MCP request whose body holds `part`.
fn mcp_authorizations(seen: &Seen, part: &str) -> Vec<String> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|(path, _, body)| path == "/mcp" && body.contains(part))
        .map(|(_, auth, _)| auth.clone().unwrap_or_default())
        .collect()
}

/// A refresh of `refresh-after-TOKEN`, with the `resource` the MCP spec requires.
fn refresh_body(token: &str, port: u16) -> String {
    format!("grant_type=refresh_token&refresh_token=refresh-after-{token}&resource=http%3A%2F%2F127.0.0.1%3A{port}%2Fmcp")
}

// `reg-client:reg-secret`: the client and the secret its registration issued, kept in the file.
const REGISTERED: &str = "Basic cmVnLWNsaWVudDpyZWctc2VjcmV0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_with_the_registered_secret_and_kept() {
    let (port, seen) = protected_server("old", &["fresh"]).await;
    let file = token_file(port, "old", 4000);
    let (code, out, tokens) =
        tokio::task::spawn_blocking(move || run_against(port, "expired", Some(&file))).await.unwrap();
    assert_eq!(code, 0, "{out}");
    let outcome: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(outcome["value"], "alice", "{out}");
    assert_eq!(token_requests(&seen), [(Some(REGISTERED.to_string()), refresh_body("old", port))]);
    // Every MCP request carried the new token; the old one was never sent.
    let bearers = mcp_authorizations(&seen, "");
    assert!(bearers.iter().all(|a| a == "Bearer fresh"), "{bearers:?}");
    // The file holds the new token and refresh token, still with the secret, still 0600.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777, 0o600);
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&tokens).unwrap()).unwrap();
    assert_eq!(kept["client_secret"], "reg-secret");
    assert_eq!(kept["credentials"]["token_response"]["access_token"], "fresh");
    assert_eq!(kept["credentials"]["token_response"]["refresh_token"], "refresh-after-fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_rejects_is_refreshed_once_and_the_request_sent_again() {
    // The stored token has not expired, but the server no longer takes it (revoked).
    let (port, seen) = protected_server("replaced", &["renewed"]).await;
    let file = token_file(port, "revoked", 10);
    let (code, out, _) =
        tokio::task::spawn_blocking(move || run_against(port, "revoked", Some(&file))).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(token_requests(&seen), [(Some(REGISTERED.to_string()), refresh_body("revoked", port))]);
    let bearers = mcp_authorizations(&seen, "");
    assert_eq!(bearers[0], "Bearer revoked", "{bearers:?}");
    assert!(bearers[1..].iter().all(|a| a == "Bearer renewed"), "{bearers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_for_another_url_is_not_sent_to_this_server() {
    let (port, seen) = protected_server("theirs", &[]).await;
    let mut file = token_file(port, "theirs", 10);
    file["url"] = serde_json::json!("https://other.example/mcp");
    let (code, out, _) =
        tokio::task::spawn_blocking(move || run_against(port, "elsewhere", Some(&file))).await.unwrap();
    assert_eq!(
        (code, out),
        (
            1,
            format!(
                "codemode: upstream \"vault\" (http://127.0.0.1:{port}/mcp): it needs authorization: run `codemode auth login vault`\n"
            )
        )
    );
    assert!(seen.lock().unwrap().iter().all(|(_, auth, _)| auth.is_none()), "{:?}", seen.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_clients_token_is_requested_again_before_a_call_once_it_has_expired() {
    let (port, seen) = protected_server("none yet", &["cc-1", "cc-2", "cc-3"]).await;
    let oauth = "grant = \"client_credentials\"\nclient_id = \"machine\"\nclient_secret = \"m-secret\"\n";
    let program = "const first = await vault.whoami({});\n\
        await new Promise((r) => setTimeout(r, 2000));\n\
        return [first, await vault.whoami({})]";
    let (code, out, tokens) =
        tokio::task::spawn_blocking(move || run_program(port, "machine", None, oauth, program))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
    let outcome: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(outcome["value"], serde_json::json!(["alice", "alice"]), "{out}");
    let resource = format!("resource=http%3A%2F%2F127.0.0.1%3A{port}%2Fmcp");
    // `machine:m-secret`, by client_secret_basic: the only method the server's metadata lists.
    let basic = Some("Basic bWFjaGluZTptLXNlY3JldA==".to_string());
    let grant = (basic, format!("grant_type=client_credentials&{resource}"));
    let requests = token_requests(&seen);
    assert!(requests.iter().all(|r| *r == grant), "{requests:?}");
    let calls = mcp_authorizations(&seen, "tools/call");
    // The token of the first call had expired by the second, which went with a new one: the
    // last issued.
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0], calls[1], "{calls:?}");
    assert_eq!(calls[1], format!("Bearer cc-{}", requests.len()), "{calls:?} after {requests:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&tokens).unwrap().permissions().mode() & 0o777, 0o600);
}
