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
