//! The configuration file: what it sets, and how it fails.

use std::path::Path;
use std::time::Duration;

use codemode::config::Config;
use codemode::mcp::Transport;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("codemode.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn a_full_file_sets_limits_pool_and_servers_with_secrets_resolved_host_side() {
    let secret = std::env::temp_dir().join(format!("codemode-secret-{}", std::process::id()));
    std::fs::write(&secret, "s3cr3t-from-file\n").unwrap();
    let text = format!(
        r#"
[limits]
timeout_ms = 5000
memory_mb = 32

[pool]
workers = 3
warm = 2

[daemon]
tool_call_timeout_ms = 700
shutdown_grace_ms = 100

[[servers]]
namespace = "memory"
command = "npx"
args = ["-y", "@modelcontextprotocol/server-memory"]
env = {{ TOKEN = "env:CRM_TOKEN", PATH_SECRET = "file:{}", PLAIN = "as-is" }}
call_timeout_ms = 1500
tool_timeouts_ms = {{ read_graph = 250 }}

[[servers]]
namespace = "crm"
url = "https://crm.example/mcp"
headers = {{ Authorization = "env:CRM_TOKEN" }}
"#,
        secret.display()
    );
    let config = parse(&text).unwrap();
    let limits = config.limits();
    assert_eq!((limits.timeout, limits.memory_bytes), (Duration::from_millis(5000), 32 << 20));
    assert_eq!(limits.max_tool_calls, codemode::Limits::default().max_tool_calls);
    assert_eq!((config.pool.workers, config.pool.warm), (Some(3), Some(2)));
    let daemon = config.daemon();
    assert_eq!(
        (daemon.tool_call_timeout, daemon.shutdown_grace, daemon.max_line_bytes),
        (Duration::from_millis(700), Duration::from_millis(100), 16 << 20)
    );
    let up = config.upstreams(|name| (name == "CRM_TOKEN").then(|| "tok-123".to_string())).unwrap();
    assert_eq!(up.len(), 2);
    assert_eq!(up[0].namespace, "memory");
    let env = [("PATH_SECRET", "s3cr3t-from-file"), ("PLAIN", "as-is"), ("TOKEN", "tok-123")];
    assert_eq!(
        up[0].transport,
        Transport::Stdio {
            command: "npx".into(),
            args: vec!["-y".into(), "@modelcontextprotocol/server-memory".into()],
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    );
    assert_eq!(up[1].namespace, "crm");
    assert_eq!(
        up[1].transport,
        Transport::Http {
            url: "https://crm.example/mcp".into(),
            headers: [("Authorization".to_string(), "tok-123".to_string())].into(),
            oauth: None,
        }
    );
    assert_eq!(up[0].call_timeout, Duration::from_millis(1500));
    assert_eq!(up[0].tool_timeouts["read_graph"], Duration::from_millis(250));
    // A missing secret is named, and no value leaks into the error.
    let err = config.upstreams(|_| None).unwrap_err().to_string();
    assert_eq!(
        err,
        "codemode.toml:15:13: server \"memory\": env.TOKEN: environment variable CRM_TOKEN is not set"
    );
    std::fs::remove_file(secret).unwrap();
}

#[test]
fn mistakes_are_reported_with_line_column_and_key() {
    let e = parse("[limits]\ntimout_ms = 5\n").unwrap_err();
    assert!(e.starts_with("codemode.toml:2:1: unknown field `timout_ms`, expected one of"), "{e}");
    let e = parse("[limits]\ntimeout_ms = \"5s\"\n").unwrap_err();
    assert!(e.starts_with("codemode.toml:2:14: invalid type: string \"5s\", expected u64"), "{e}");
    let e = parse("[[servers]]\ncommand = \"x\"\n").unwrap_err();
    assert!(e.starts_with("codemode.toml:1:1: missing field `namespace`"), "{e}");
    let e = parse("[[servers]]\nnamespace = \"a\"\ncommand = \"x\"\nurl = \"http://h\"\n").unwrap_err();
    assert_eq!(e, "codemode.toml:2:13: server \"a\": set `command` or `url`, not both");
    let e = parse("[[servers]]\nnamespace = \"a\"\n").unwrap_err();
    assert_eq!(e, "codemode.toml:2:13: server \"a\": missing `command` (stdio) or `url` (HTTP)");
    let e = parse("[[servers]]\nnamespace = \"crm\"\nurl = \"ftp://h/mcp\"\n").unwrap_err();
    assert_eq!(e, "codemode.toml:2:13: server \"crm\": `url` must start with http:// or https://");
    let e =
        parse("[[servers]]\nnamespace = \"crm\"\nurl = \"http://h/mcp\"\nenv = { A = \"b\" }\n").unwrap_err();
    assert_eq!(
        e,
        "codemode.toml:2:13: server \"crm\": `args` and `env` need `command`; an HTTP server takes `headers`"
    );
    let e = parse("[[servers]]\nnamespace = \"a\"\ncommand = \"x\"\nheaders = { A = \"b\" }\n").unwrap_err();
    assert_eq!(e, "codemode.toml:2:13: server \"a\": `headers` need `url`; a stdio server takes `env`");
    let e = parse(
        "[[servers]]\nnamespace = \"a\"\ncommand = \"x\"\n[[servers]]\nnamespace = \"a\"\ncommand = \"y\"\n",
    )
    .unwrap_err();
    assert_eq!(e, "codemode.toml:5:13: server \"a\": namespace listed twice");
    let e = parse("[pool\n").unwrap_err();
    assert!(e.starts_with("codemode.toml:1:6: "), "{e}");
    let e = Config::load(Path::new("/nonexistent/codemode.toml")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/codemode.toml: cannot read it: "), "{e}");
}

#[test]
fn sessions_are_configured_in_their_own_section() {
    let c = parse(
        "[sessions]\nmax = 3\nidle_timeout_ms = 1500\nmemory_mb = 32\nstore_bytes = 1000\nmcp = false\n",
    )
    .unwrap();
    assert_eq!(
        c.sessions(),
        codemode::SessionLimits {
            max_sessions: 3,
            idle_timeout: std::time::Duration::from_millis(1500),
            memory_bytes: 32 << 20,
            store_bytes: 1000,
        }
    );
    assert!(!c.mcp().sessions);
    let defaults = parse("").unwrap();
    assert_eq!(defaults.sessions(), codemode::SessionLimits::default());
    assert!(defaults.mcp().sessions);
    let e = parse("[sessions]\nmax_sessions = 3\n").unwrap_err();
    assert!(e.starts_with("codemode.toml:2:1: unknown field `max_sessions`"), "{e}");
}

#[test]
fn approvals_are_configured_by_pattern_and_per_server() {
    let c = parse(
        "[approvals]\ntools = [\"sheets.updateRow\", \"crm.send*\"]\ntimeout_ms = 60000\n\n\
         [[servers]]\nnamespace = \"gh\"\ncommand = \"gh-mcp\"\napprove = [\"write_*\", \"delete_repo\"]\n",
    )
    .unwrap();
    assert_eq!(c.approval_patterns(), ["sheets.updateRow", "crm.send*", "gh.write_*", "gh.delete_repo"]);
    assert_eq!(c.approval_timeout(), Some(std::time::Duration::from_secs(60)));
    let none = parse("").unwrap();
    assert!(none.approval_patterns().is_empty() && none.approval_timeout().is_none());
    let e = parse("\n[approvals]\ntools = [\"updateRow\"]\n").unwrap_err();
    assert_eq!(
        e,
        "codemode.toml:2:1: [approvals] tools: \"updateRow\" names no tool; write namespace.tool (\"sheets.updateRow\", \"crm.*\")"
    );
}

#[test]
fn oauth_is_configured_per_http_server_with_its_secret_resolved_host_side() {
    let config = parse(
        r#"
[[servers]]
namespace = "crm"
url = "https://crm.example/mcp"
[servers.oauth]
client_id = "codemode-cli"
client_secret = "env:CRM_CLIENT_SECRET"
grant = "client_credentials"
scopes = ["crm:read", "crm:write"]

[[servers]]
namespace = "docs"
url = "https://docs.example/mcp"
[servers.oauth]
redirect_port = 8765
"#,
    )
    .unwrap();
    let up = config.upstreams(|name| (name == "CRM_CLIENT_SECRET").then(|| "cs-9".to_string())).unwrap();
    let Transport::Http { oauth: Some(crm), .. } = &up[0].transport else { panic!("{:?}", up[0].transport) };
    assert_eq!(
        crm,
        &codemode::mcp::OAuthConfig {
            client_id: Some("codemode-cli".into()),
            client_secret: Some("cs-9".into()),
            grant: codemode::mcp::Grant::ClientCredentials,
            scopes: vec!["crm:read".into(), "crm:write".into()],
            client_metadata_url: None,
            redirect_port: 0,
        }
    );
    // The secret never shows in a debug print.
    assert!(!format!("{crm:?}").contains("cs-9"), "{crm:?}");
    let Transport::Http { oauth: Some(docs), .. } = &up[1].transport else { panic!() };
    assert_eq!(
        docs,
        &codemode::mcp::OAuthConfig {
            grant: codemode::mcp::Grant::AuthorizationCode,
            redirect_port: 8765,
            ..Default::default()
        }
    );
    assert_eq!(
        config.upstreams(|_| None).unwrap_err().to_string(),
        "codemode.toml:3:13: server \"crm\": oauth.client_secret: environment variable CRM_CLIENT_SECRET is not set"
    );
}

#[test]
fn oauth_mistakes_are_reported_before_anything_connects() {
    let server = "[[servers]]\nnamespace = \"a\"\n";
    let e = parse(&format!("{server}command = \"x\"\n[servers.oauth]\n")).unwrap_err();
    assert_eq!(e, "codemode.toml:2:13: server \"a\": `oauth` needs `url`; a stdio server takes `env`");
    let e = parse(&format!(
        "{server}url = \"https://h/mcp\"\nheaders = {{ Authorization = \"Bearer x\" }}\n[servers.oauth]\n"
    ))
    .unwrap_err();
    assert_eq!(e, "codemode.toml:2:13: server \"a\": set an `Authorization` header or `oauth`, not both");
    let e =
        parse(&format!("{server}url = \"https://h/mcp\"\n[servers.oauth]\ngrant = \"client_credentials\"\n"))
            .unwrap_err();
    assert_eq!(
        e,
        "codemode.toml:2:13: server \"a\": oauth: the client_credentials grant needs `client_id` and `client_secret`"
    );
    let e = parse(&format!("{server}url = \"https://h/mcp\"\n[servers.oauth]\nclient_secret = \"s\"\n"))
        .unwrap_err();
    assert_eq!(
        e,
        "codemode.toml:2:13: server \"a\": oauth: `client_secret` belongs to a pre-registered client; set `client_id` too"
    );
    let e = parse(&format!("{server}url = \"https://h/mcp\"\n[servers.oauth]\ngrant = \"password\"\n"))
        .unwrap_err();
    assert_eq!(
        e,
        "codemode.toml:5:9: unknown variant `password`, expected `authorization_code` or `client_credentials`"
    );
}
