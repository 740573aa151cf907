//! The long-running faces: the daemon (`serve`) and the MCP server (`mcp`).

use super::*;

pub(crate) fn serve(socket: Option<PathBuf>, stdio: bool, sources: Sources) -> ExitCode {
    if socket.is_none() && !stdio {
        return usage_error(
            "serve needs a transport: --socket PATH (a Unix socket, for many clients) or --stdio \
             (one client on standard input and output)"
                .into(),
        );
    }
    let (loaded, engine) = match load(&sources, false).and_then(|l| start(&l, |b| b).map(|e| (l, e))) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let runtime = &loaded.runtime;
    let tools = engine.registry().tools().count();
    let mut config = loaded.config.daemon();
    config.skills = load::skill_store(&loaded.config);
    let daemon = codemode::daemon::Daemon::new(engine, config);
    daemon.watch_upstreams(loaded.upstreams.iter().cloned());
    runtime.block_on(async {
        match socket {
            Some(path) => match codemode::daemon::SocketListener::bind(&path).await {
                Ok(socket) => {
                    eprintln!(
                        "codemode: daemon listening on {} ({tools} tools); Ctrl-C stops it",
                        path.display()
                    );
                    daemon.serve_listener(socket, shutdown_signal()).await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("codemode: cannot serve on {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("codemode: daemon serving JSON-RPC on standard input and output ({tools} tools)");
                daemon.serve_stdio(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
        }
    })
}

/// `--http`'s address: `IP:PORT` or `HOST:PORT` whose host resolves to a loopback address.
pub(crate) fn loopback_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("--http {text}: not an address of the form HOST:PORT ({e})"))?
        .collect();
    // Prefer IPv4, which every client reaches as 127.0.0.1.
    let mut loopback: Vec<_> = addrs.iter().filter(|a| a.ip().is_loopback()).copied().collect();
    loopback.sort_by_key(|a| !a.is_ipv4());
    loopback.first().copied().ok_or_else(|| {
        format!(
            "--http {text}: the HTTP server only listens on loopback addresses (127.0.0.1, ::1, localhost)"
        )
    })
}

pub(crate) fn mcp(http: Option<String>, sources: Sources) -> ExitCode {
    let http = match http.as_deref().map(loopback_address).transpose() {
        Ok(addr) => addr,
        Err(e) => return usage_error(e),
    };
    let (loaded, engine) = match load(&sources, true).and_then(|l| start(&l, |b| b).map(|e| (l, e))) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let runtime = &loaded.runtime;
    let tools = engine.registry().tools().count();
    let server = codemode::mcp::McpServer::with_config(engine, loaded.config.mcp());
    let served = match http {
        Some(addr) => runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            let addr = listener.local_addr()?;
            eprintln!("codemode: MCP server at http://{addr}/mcp ({tools} tools; GET / reports its sessions); Ctrl-C stops it");
            server.serve_http_on(listener, shutdown_signal()).await
        }),
        None => {
            eprintln!("codemode: MCP server on standard input and output ({tools} tools)");
            // One client: the upstream servers are told what it takes, and show their tools for it.
            runtime.block_on(server.upstreams(loaded.upstreams.clone()).serve_stdio())
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("codemode: mcp: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
