//! `codemode auth login|status|logout`: OAuth tokens for the configured upstream servers.

use super::*;
use codemode::mcp::{Grant, UpstreamConfig};

/// The configured servers that use OAuth, or the exit code after saying why there are none.
fn oauth_servers(sources: &Sources) -> Result<Vec<UpstreamConfig>, ExitCode> {
    let Some(path) = load::config_path(sources) else {
        return Err(usage_error("no configuration: pass --config or add ./codemode.toml".into()));
    };
    let config = Config::load(&path).map_err(|e| usage_error(e.to_string()))?;
    let upstreams =
        config.upstreams(|name| std::env::var(name).ok()).map_err(|e| usage_error(e.to_string()))?;
    let oauth: Vec<UpstreamConfig> = upstreams
        .into_iter()
        .filter(|u| matches!(&u.transport, codemode::mcp::Transport::Http { oauth: Some(_), .. }))
        .collect();
    if oauth.is_empty() {
        return Err(usage_error(format!("no server in {} has a [servers.oauth] table", path.display())));
    }
    Ok(oauth)
}

fn the_server(sources: &Sources, namespace: &str) -> Result<UpstreamConfig, ExitCode> {
    let servers = oauth_servers(sources)?;
    let names: Vec<String> = servers.iter().map(|s| s.namespace.clone()).collect();
    servers.into_iter().find(|s| s.namespace == namespace).ok_or_else(|| {
        usage_error(format!(
            "no OAuth server {namespace:?}; the servers with [servers.oauth]: {}",
            names.join(", ")
        ))
    })
}

pub(crate) fn login(namespace: String, sources: Sources, json: bool) -> ExitCode {
    let server = match the_server(&sources, &namespace) {
        Ok(server) => server,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return usage_error(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(sign_in(&server)) {
        Ok(login) if json => {
            outln!("{}", serde_json::to_string(&login).expect("a login serializes"));
            ExitCode::SUCCESS
        }
        Ok(login) => {
            let scopes =
                if login.scopes.is_empty() { "none named".to_string() } else { login.scopes.join(" ") };
            outln!(
                "signed in to {namespace} as client {} ({}); scopes: {scopes}; token kept in {}",
                login.client_id,
                login.registration,
                login.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("codemode: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The browser flow for `server`: `$BROWSER URL` when it is set, else the URL on stderr for
/// the person to open.
pub(crate) async fn sign_in(
    server: &UpstreamConfig,
) -> Result<codemode::mcp::Login, codemode::mcp::UpstreamError> {
    let namespace = server.namespace.clone();
    let open = move |url: &str| -> Result<(), String> {
        match std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty()) {
            Some(browser) => {
                eprintln!("codemode: opening the sign-in page for {namespace} with {browser}");
                // `$BROWSER` may carry arguments (`firefox --new-window`).
                let mut words = browser.split_whitespace();
                let program = words.next().unwrap_or_default();
                std::process::Command::new(program)
                    .args(words)
                    .arg(url)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .map(drop)
                    .map_err(|e| format!("cannot start $BROWSER ({browser}): {e}"))
            }
            None => {
                eprintln!("codemode: to sign in to {namespace}, open this page:\n\n  {url}\n");
                Ok(())
            }
        }
    };
    codemode::mcp::login(server, open, codemode::mcp::LOGIN_WAIT).await
}

pub(crate) fn status(namespace: Option<String>, sources: Sources, json: bool) -> ExitCode {
    let servers = match namespace {
        Some(ns) => the_server(&sources, &ns).map(|s| vec![s]),
        None => oauth_servers(&sources),
    };
    let servers = match servers {
        Ok(servers) => servers,
        Err(code) => return code,
    };
    let mut statuses = Vec::with_capacity(servers.len());
    for server in &servers {
        match codemode::mcp::token_status(server) {
            Ok(status) => statuses.push(status),
            Err(e) => {
                eprintln!("codemode: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if json {
        outln!("{}", serde_json::to_string(&statuses).expect("statuses serialize"));
        return ExitCode::SUCCESS;
    }
    for s in statuses {
        let grant = match s.grant {
            Grant::AuthorizationCode => "authorization code",
            Grant::ClientCredentials => "client credentials",
        };
        if !s.signed_in {
            let next = match s.grant {
                Grant::AuthorizationCode => format!("run `codemode auth login {}`", s.namespace),
                Grant::ClientCredentials => "a token is requested on connecting".to_string(),
            };
            outln!("{}: not signed in ({grant}); {next}", s.namespace);
            continue;
        }
        let expiry = match s.expires_in_s {
            Some(left) if left > 0 => format!("expires in {left} s"),
            Some(_) if s.refreshable => "expired; refreshed on the next connection".to_string(),
            Some(_) => format!("expired; run `codemode auth login {}`", s.namespace),
            None => "no expiry given".to_string(),
        };
        let scopes = if s.scopes.is_empty() { "none named".to_string() } else { s.scopes.join(" ") };
        outln!(
            "{}: signed in as client {} ({grant}); {expiry}; {}; scopes: {scopes}",
            s.namespace,
            s.client_id.unwrap_or_default(),
            if s.refreshable { "refreshable" } else { "not refreshable" },
        );
    }
    ExitCode::SUCCESS
}

pub(crate) fn logout(namespace: String, sources: Sources) -> ExitCode {
    let server = match the_server(&sources, &namespace) {
        Ok(server) => server,
        Err(code) => return code,
    };
    match codemode::mcp::logout(&server) {
        Ok(true) => {
            outln!("signed out of {namespace}: its token is deleted");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            outln!("{namespace}: no token was kept");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("codemode: {e}");
            ExitCode::FAILURE
        }
    }
}
