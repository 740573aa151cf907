//! The `codemode` command line. Only the binary prints, exits and reads the environment.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the binary is the one place that prints")]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use codemode::config::Config;
use codemode::{
    definitions, Detail, Engine, ExecuteOptions, LogLevel, Outcome, Registry, Tool, ToolError, TypeCheck,
    TypeChecker,
};

/// `print!` and `println!` for a reader that may hang up (`codemode run … | head`): what is
/// left of the output is dropped, and the command still ends with its own exit code.
macro_rules! out {
    ($($arg:tt)*) => { write_out(format_args!($($arg)*)) };
}
macro_rules! outln {
    ($($arg:tt)*) => { write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().write_fmt(args) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("codemode: cannot write to stdout: {e}");
        }
    }
}

#[derive(Parser)]
#[command(
    name = "codemode",
    version,
    about = "Run agent-written TypeScript against typed tools in a QuickJS sandbox"
)]
struct Cli {
    /// Log format for diagnostics on stderr (set RUST_LOG to choose what is logged).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where tools come from, for the commands that only look at their declarations.
#[derive(clap::Args)]
struct Sources {
    /// Include the built-in demo namespace `sheets`.
    #[arg(long)]
    demo: bool,
    /// A tool definitions file (an MCP `tools/list` result, an array of tools, or one tool),
    /// as `FILE` (namespace = file name) or `NAMESPACE=FILE`. Repeatable.
    #[arg(long = "schema", value_name = "[NAMESPACE=]FILE")]
    schemas: Vec<String>,
    /// The configuration file (limits, pool, upstream MCP servers). Default: ./codemode.toml
    /// when it exists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Type-check programs before they run: strict (a program with type errors does not run;
    /// the default), warn (it runs, and the errors come back beside its result) or off.
    /// Needs TypeScript 7, which `codemode setup` installs.
    #[arg(long, value_name = "MODE")]
    typecheck: Option<TypeCheck>,
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// List the namespaces with their tool counts.
    List {
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rank tools for a query.
    Search {
        /// What the tool should do, in words.
        query: String,
        /// How much to show per tool.
        #[arg(long, value_enum, default_value = "summary")]
        detail: DetailArg,
        /// Most results.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the declarations of tools (`ns.tool`), namespaces (`ns`) or virtual files
    /// (`tools/ns/tool.d.ts`).
    Show {
        /// What to show.
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the virtual file tree (`tools/<namespace>/<tool>.d.ts`).
    Files {
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the prompt helper: instructions for writing a program, the limits, the namespaces.
    Prompt {
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DetailArg {
    Name,
    Summary,
    Full,
}

#[derive(Subcommand)]
enum Command {
    /// Print the TypeScript declarations of every tool.
    Types {
        #[command(flatten)]
        sources: Sources,
        /// Print JSON: `{ "declarations": text, "problems": [...] }`.
        #[arg(long)]
        json: bool,
    },
    /// Discover tools: list, search, show, files, prompt.
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// Serve MCP (search_tools, describe_tools, execute_code) on stdin/stdout, or on
    /// streamable HTTP at http://ADDR/mcp.
    Mcp {
        /// Serve streamable HTTP on this loopback address (such as 127.0.0.1:8080 or
        /// localhost:8080; port 0 picks a free one).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        #[command(flatten)]
        sources: Sources,
    },
    /// Serve newline-delimited JSON-RPC 2.0 on a Unix socket or on stdin/stdout.
    Serve {
        /// Listen on this Unix socket (created with mode 0600, removed on exit).
        #[arg(long, conflicts_with = "stdio")]
        socket: Option<PathBuf>,
        /// Serve one client on standard input and output.
        #[arg(long)]
        stdio: bool,
        #[command(flatten)]
        sources: Sources,
    },
    /// Install the TypeScript compiler that type-checks programs (TypeScript 7, pinned, with
    /// npm) and say where it is.
    Setup {
        /// Install into this directory instead of the cache directory
        /// ($CODEMODE_TYPESCRIPT_DIR, else $XDG_CACHE_HOME/codemode/typescript-VERSION).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run a TypeScript program (FILE, or - for stdin).
    Run {
        /// The program: a .ts file, or - to read standard input.
        file: PathBuf,
        #[command(flatten)]
        sources: Sources,
        /// Wall-clock deadline in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Sandbox memory limit in MiB.
        #[arg(long)]
        memory_mb: Option<usize>,
        /// Print exactly one JSON object: ok, value, logs, error, stats.
        #[arg(long)]
        json: bool,
        /// Count tokens exactly (o200k_base) instead of estimating them; loading the
        /// tokenizer costs about 70 ms.
        #[arg(long)]
        tokens: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Run { file, sources, timeout_ms, memory_mb, json, tokens } => {
            run(file, sources, timeout_ms, memory_mb, json, tokens)
        }
        Command::Types { sources, json } => types(sources, json),
        Command::Tools(command) => tools(command),
        Command::Serve { socket, stdio, sources } => serve(socket, stdio, sources),
        Command::Mcp { http, sources } => mcp(http, sources),
        Command::Setup { dir } => setup(dir),
    }
}

/// What a command runs with: the async runtime, the tools of every source, the configuration,
/// and the connections to upstream servers (which must outlive the engine).
struct Loaded {
    runtime: tokio::runtime::Runtime,
    /// `--typecheck`, over the configuration's `[limits] typecheck`.
    typecheck: Option<TypeCheck>,
    registry: Registry,
    config: Config,
    upstreams: Vec<std::sync::Arc<codemode::mcp::Upstream>>,
}

/// Loads `sources` and the configuration, and connects the configured upstream servers; or
/// says what is wrong and returns the exit code. Tools read from schema files have no handler;
/// they are there to be declared and searched.
///
/// With `forward_client_requests`, upstream servers are told that sampling, elicitation and
/// roots requests are taken (`codemode mcp` forwards them to its client).
fn load(sources: &Sources, forward_client_requests: bool) -> Result<Loaded, ExitCode> {
    let forward_client_requests =
        if forward_client_requests { codemode::mcp::ClientFeatures::ALL } else { Default::default() };
    let config = match &sources.config {
        Some(path) => Config::load(path),
        None if std::path::Path::new("codemode.toml").exists() => {
            Config::load(std::path::Path::new("codemode.toml"))
        }
        None => Ok(Config::default()),
    }
    .map_err(|e| usage_error(e.to_string()))?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| {
            eprintln!("codemode: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })?;
    let mut registry = if sources.demo { codemode::demo::registry() } else { Registry::new() };
    for spec in &sources.schemas {
        let (namespace, file) = match spec.split_once('=') {
            Some((ns, file)) => (ns.to_string(), PathBuf::from(file)),
            None => {
                let file = PathBuf::from(spec);
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("tools");
                (stem.split('.').next().unwrap_or(stem).to_string(), file)
            }
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| usage_error(format!("cannot read {}: {e}", file.display())))?;
        let defs = definitions::parse(&text).map_err(|e| usage_error(format!("{}: {e}", file.display())))?;
        for def in defs {
            let tool = Tool::from_definition(def, |_: serde_json::Value| async {
                Err::<serde_json::Value, _>(ToolError::with_code(
                    "unavailable",
                    "declared from a schema file; no handler is attached",
                ))
            });
            registry
                .register(&namespace, tool)
                .map_err(|e| usage_error(format!("{}: {e}", file.display())))?;
        }
    }
    let upstreams =
        config.upstreams(|name| std::env::var(name).ok()).map_err(|e| usage_error(e.to_string()))?;
    let mut connected = Vec::with_capacity(upstreams.len());
    for mut upstream in upstreams {
        upstream.forward_client_requests = forward_client_requests;
        let up =
            runtime.block_on(codemode::mcp::Upstream::register(upstream, &mut registry)).map_err(|e| {
                eprintln!("codemode: {e}");
                ExitCode::FAILURE
            })?;
        connected.push(up);
    }
    Ok(Loaded { runtime, typecheck: sources.typecheck, registry, config, upstreams: connected })
}

/// The engine for `loaded`, with the configuration's limits and pool size, or the exit code
/// after saying why not.
fn start(
    loaded: &Loaded,
    tweak: impl FnOnce(codemode::EngineBuilder) -> codemode::EngineBuilder,
) -> Result<Engine, ExitCode> {
    let mut limits = loaded.config.limits();
    if let Some(mode) = loaded.typecheck {
        limits.typecheck = mode;
    }
    let checker = type_checker(limits.typecheck);
    let mut builder = Engine::builder().registry(loaded.registry.clone()).limits(limits);
    if let Some(checker) = checker {
        builder = builder.type_checker(checker);
    }
    if let Some(w) = loaded.config.pool.workers {
        builder = builder.workers(w);
    }
    if let Some(w) = loaded.config.pool.warm {
        builder = builder.warm_sandboxes(w);
    }
    let engine = tweak(builder).build().map_err(|e| {
        eprintln!("codemode: {e}");
        ExitCode::FAILURE
    })?;
    // From here on, a server's `tools/list_changed` updates the engine's namespace.
    let _entered = loaded.runtime.enter();
    for upstream in &loaded.upstreams {
        upstream.follow(&engine);
    }
    Ok(engine)
}

fn serve(socket: Option<PathBuf>, stdio: bool, sources: Sources) -> ExitCode {
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
    let daemon = codemode::daemon::Daemon::new(engine, loaded.config.daemon());
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
fn loopback_address(text: &str) -> Result<std::net::SocketAddr, String> {
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

fn mcp(http: Option<String>, sources: Sources) -> ExitCode {
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
async fn shutdown_signal() {
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

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    outln!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    ExitCode::SUCCESS
}

fn types(sources: Sources, json: bool) -> ExitCode {
    let registry = match load(&sources, false) {
        Ok(loaded) => loaded.registry,
        Err(code) => return code,
    };
    if registry.is_empty() {
        eprintln!("codemode: {NO_TOOLS}");
    }
    let problems: Vec<String> = registry.declaration_problems().iter().map(ToString::to_string).collect();
    if json {
        return print_json(
            &serde_json::json!({ "declarations": registry.declarations(), "problems": problems }),
        );
    }
    for p in &problems {
        eprintln!("codemode: warning: {p}");
    }
    out!("{}", registry.declarations());
    ExitCode::SUCCESS
}

/// Said on stderr when a command that shows tools finds none.
const NO_TOOLS: &str = "no tools: add --demo for the built-in sheets namespace, --schema [NS=]FILE for a \
                        tool definitions file, or --config FILE (or ./codemode.toml) for upstream MCP servers";

fn tools(command: ToolsCommand) -> ExitCode {
    let (ToolsCommand::List { sources, .. }
    | ToolsCommand::Search { sources, .. }
    | ToolsCommand::Show { sources, .. }
    | ToolsCommand::Files { sources, .. }
    | ToolsCommand::Prompt { sources, .. }) = &command;
    let loaded = match load(sources, false) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let registry = &loaded.registry;
    if registry.is_empty() && !matches!(command, ToolsCommand::Prompt { .. }) {
        eprintln!("codemode: {NO_TOOLS}");
    }
    match command {
        ToolsCommand::List { json, .. } => {
            let list = registry.list();
            if json {
                return print_json(&list);
            }
            let statuses: Vec<_> =
                loaded.upstreams.iter().map(|u| loaded.runtime.block_on(u.status())).collect();
            for ns in list {
                // The first line is the summary; `tools show NS` prints the rest.
                let summary = ns.description.lines().next().unwrap_or("");
                let description = if summary.is_empty() { String::new() } else { format!(": {summary}") };
                outln!("{} ({} tools){description}", ns.namespace, ns.tools);
                for why in statuses.iter().filter(|s| s.namespace == ns.name).flat_map(|s| &s.withheld) {
                    outln!("  left out: {why}");
                }
                // Asked of the server over a second connection that says it takes them.
                let upstream = loaded.upstreams.iter().find(|u| u.namespace() == ns.name);
                match upstream.map(|u| loaded.runtime.block_on(u.capability_gated_tools())) {
                    Some(Ok(gated)) if !gated.is_empty() => outln!(
                        "  left out: {}: shown only to clients that take sampling, elicitation or roots \
                         requests (codemode mcp forwards them to its client)",
                        gated.join(", ")
                    ),
                    Some(Err(e)) => outln!("  (could not ask what it shows other clients: {e})"),
                    _ => {}
                }
            }
        }
        ToolsCommand::Search { query, detail, limit, json, .. } => {
            let detail = match detail {
                DetailArg::Name => Detail::Name,
                DetailArg::Summary => Detail::Summary,
                DetailArg::Full => Detail::Full,
            };
            let hits = registry.search(&query, detail, limit);
            if json {
                return print_json(&hits);
            }
            for hit in hits {
                outln!("{}", hit.to_text());
            }
        }
        ToolsCommand::Show { names, json, .. } => {
            let text = match registry.describe(&names) {
                Ok(t) => t,
                Err(e) => return usage_error(e.to_string()),
            };
            if json {
                return print_json(&serde_json::json!({ "declarations": text }));
            }
            out!("{text}");
        }
        ToolsCommand::Files { json, .. } => {
            let files = registry.files();
            if json {
                return print_json(&files);
            }
            for f in files {
                outln!("{f}");
            }
        }
        ToolsCommand::Prompt { json, .. } => {
            let mut limits = loaded.config.limits();
            // Promise a type check only where one will happen.
            let installed = typescript_dir().is_some_and(|d| TypeChecker::installed_binary(&d).is_file());
            if !installed {
                limits.typecheck = TypeCheck::Off;
            }
            let text = codemode::prompt(registry, &limits);
            if json {
                return print_json(&serde_json::json!({ "prompt": text }));
            }
            out!("{text}");
        }
    }
    ExitCode::SUCCESS
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn usage_error(message: String) -> ExitCode {
    eprintln!("codemode: {message}");
    ExitCode::from(2)
}

fn run(
    file: PathBuf,
    sources: Sources,
    timeout_ms: Option<u64>,
    memory_mb: Option<usize>,
    json: bool,
    exact_tokens: bool,
) -> ExitCode {
    let code = if file.as_os_str() == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            return usage_error(format!("cannot read standard input: {e}"));
        }
        s
    } else {
        match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => return usage_error(format!("cannot read {}: {e}", file.display())),
        }
    };
    let loaded = match load(&sources, false) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let mut limits = loaded.config.limits();
    if let Some(mode) = loaded.typecheck {
        limits.typecheck = mode;
    }
    if let Some(ms) = timeout_ms {
        limits.timeout = Duration::from_millis(ms);
    }
    if let Some(mb) = memory_mb {
        limits.memory_bytes = mb.saturating_mul(1 << 20);
    }
    let engine = match start(&loaded, |b| b.limits(limits).workers(1).warm_sandboxes(1)) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let runtime = &loaded.runtime;
    let outcome = runtime.block_on(engine.execute(&code, ExecuteOptions::default()));
    if json {
        outln!("{}", if exact_tokens { outcome.to_report_exact() } else { outcome.to_report() });
    } else {
        print_human(&outcome, exact_tokens);
    }
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_human(outcome: &Outcome, exact_tokens: bool) {
    for line in &outcome.logs {
        match line.level {
            LogLevel::Log | LogLevel::Info => outln!("{}", line.message),
            LogLevel::Warn => outln!("[warn] {}", line.message),
            LogLevel::Error => outln!("[error] {}", line.message),
            LogLevel::Debug => outln!("[debug] {}", line.message),
        }
    }
    match &outcome.error {
        None => outln!("{}", serde_json::to_string_pretty(&outcome.value).unwrap_or_default()),
        Some(e) => {
            match e.diagnostics.len() {
                0 => outln!("{}", e.headline()),
                1 => outln!("error[{}]: 1 type error; nothing ran", e.kind),
                n => outln!("error[{}]: {n} type errors; nothing ran", e.kind),
            }
            if let Some(stack) = &e.stack {
                outln!("{stack}");
            }
            print_diagnostics(&e.diagnostics);
        }
    }
    if !outcome.diagnostics.is_empty() {
        outln!("[warn] the program ran with type errors:");
        print_diagnostics(&outcome.diagnostics);
    }
    for warning in &outcome.stats.warnings {
        outln!("[warn] {warning}");
    }
    if let Some(hint) = &outcome.hint {
        outln!("[hint] {hint}");
    }
    let s = &outcome.stats;
    let t = if exact_tokens { outcome.tokens() } else { outcome.estimated_tokens() };
    let calls =
        if s.tool_calls == 1 { "1 tool call".to_string() } else { format!("{} tool calls", s.tool_calls) };
    let about = if t.estimated { "~" } else { "" };
    // A failed program returned nothing: only what stayed out of context is worth saying.
    let returned = if outcome.is_ok() { format!(", {about}{} returned", t.returned) } else { String::new() };
    outln!(
        "— {} in {:.1} ms · {calls} · {about}{} tokens of tool results kept out of context{returned}",
        if outcome.is_ok() { "ok" } else { "failed" },
        s.duration.as_secs_f64() * 1000.0,
        t.tool_results,
    );
}

fn print_diagnostics(diagnostics: &[codemode::Diagnostic]) {
    for d in diagnostics {
        let message = d.message.replace('\n', "\n    ");
        outln!("  {}:{} TS{}: {message}", d.line, d.column, d.code);
    }
}

/// Where `codemode setup` installs TypeScript: `$CODEMODE_TYPESCRIPT_DIR`, else the user's
/// cache directory.
fn typescript_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CODEMODE_TYPESCRIPT_DIR") {
        return Some(PathBuf::from(dir));
    }
    Some(cache_dir()?.join(format!("typescript-{}", codemode::TYPESCRIPT_VERSION)))
}

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("codemode"))
}

/// The checker for `mode`, when TypeScript is installed. Without it, executions run unchecked
/// and their outcome says so (`stats.warnings`); a checker that cannot start is logged the same
/// way, never fatal.
fn type_checker(mode: TypeCheck) -> Option<TypeChecker> {
    if mode == TypeCheck::Off {
        return None;
    }
    let binary = TypeChecker::installed_binary(&typescript_dir()?);
    if !binary.is_file() {
        return None;
    }
    let project = cache_dir()?.join("typecheck-project");
    match TypeChecker::start(binary, project) {
        Ok(checker) => Some(checker),
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// Installs the pinned TypeScript with `npm ci` into a directory of its own.
fn setup(dir: Option<PathBuf>) -> ExitCode {
    let Some(dir) = dir.or_else(typescript_dir) else {
        return usage_error("no cache directory: set XDG_CACHE_HOME or HOME, or pass --dir".into());
    };
    if let Err(why) = TypeChecker::write_install_files(&dir) {
        return usage_error(format!("{why}; choose another --dir"));
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("codemode: npm ci in {} failed ({s})", dir.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "codemode: cannot run npm ({e}); install Node.js and npm, then run `codemode setup` again"
            );
            return ExitCode::FAILURE;
        }
    }
    let binary = TypeChecker::installed_binary(&dir);
    if !binary.is_file() {
        eprintln!(
            "codemode: npm installed TypeScript, but {} is missing (no native compiler for this platform?)",
            binary.display()
        );
        return ExitCode::FAILURE;
    }
    outln!("TypeScript {} installed: {}", codemode::TYPESCRIPT_VERSION, binary.display());
    if std::env::var_os("CODEMODE_TYPESCRIPT_DIR").is_none() && Some(&dir) != typescript_dir().as_ref() {
        outln!("set CODEMODE_TYPESCRIPT_DIR={} for codemode to use it", dir.display());
    }
    ExitCode::SUCCESS
}
