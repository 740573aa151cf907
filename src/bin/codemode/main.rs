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

mod auth;
mod load;
mod run;
mod serve;
mod setup;
mod skills;
mod telemetry;
mod tools;

use load::{load, start, typescript_dir};
use run::run;
use serve::{mcp, serve};
use setup::setup;
use skills::skills;
use tools::{tools, types};

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

/// What `codemode setup` installs.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SetupTarget {
    Typescript,
    V8,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where tools come from, for the commands that only look at their declarations.
#[derive(clap::Args)]
struct Sources {
    /// Include the built-in demo namespaces `sheets` and `crm` (contacts with private data).
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
    /// Where sandboxes run: thread (in this process, the default) or process (sealed worker
    /// processes: seccomp, namespaces, Landlock; Linux).
    #[arg(long, value_name = "WHERE", value_parser = parse_isolation)]
    isolation: Option<codemode::Isolation>,
    /// The JavaScript engine: quickjs (the default) or v8 (Node.js processes, which
    /// `codemode setup v8` installs; Linux).
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
    engine: Option<codemode::EngineKind>,
}

fn parse_engine(text: &str) -> Result<codemode::EngineKind, String> {
    match text {
        "quickjs" => Ok(codemode::EngineKind::QuickJs),
        "v8" => Ok(codemode::EngineKind::V8),
        other => Err(format!("{other:?} is not an engine: quickjs or v8")),
    }
}

fn parse_isolation(text: &str) -> Result<codemode::Isolation, String> {
    match text {
        "thread" => Ok(codemode::Isolation::Thread),
        "process" => Ok(codemode::Isolation::Process),
        other => Err(format!("{other:?} is not an isolation: thread or process")),
    }
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
        /// For programs that run in a session (the daemon's `session`, `codemode mcp`): say
        /// that state persists between them.
        #[arg(long)]
        session: bool,
    },
}

#[derive(Subcommand)]
enum SkillsCommand {
    /// Save a program that worked as a skill, callable as `await skills.NAME(input)`. It reads
    /// its argument as `input`; a leading `interface Input` and `type Output` (or JSDoc
    /// `@param {T} input` and `@returns {T}`) give its signature, a leading comment its
    /// description. It is type-checked against the tools first; saving a name again updates it.
    Save {
        /// The name programs call it by (letters, digits and `_`).
        name: String,
        /// The program: a .ts file, or - to read standard input.
        file: PathBuf,
        #[command(flatten)]
        sources: Sources,
    },
    /// List the saved skills, each checked against today's tools.
    List {
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a skill's declaration and source.
    Show {
        /// The skill.
        name: String,
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a saved skill.
    Remove {
        /// The skill.
        name: String,
        #[command(flatten)]
        sources: Sources,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Sign in to an OAuth server: opens the authorization page with $BROWSER (or prints its
    /// URL), receives the code on a loopback redirect and keeps the token in the state
    /// directory (mode 0600). For a client_credentials server, requests a token.
    Login {
        /// The server's namespace.
        namespace: String,
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say, for each OAuth server (or NAMESPACE), whether a token is kept, for which client
    /// and scopes, and when it expires. Never prints a token.
    Status {
        /// One server's namespace.
        namespace: Option<String>,
        #[command(flatten)]
        sources: Sources,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the token kept for a server.
    Logout {
        /// The server's namespace.
        namespace: String,
        #[command(flatten)]
        sources: Sources,
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
    /// Saved programs: save, list, show, remove (kept in <state dir>/skills).
    #[command(subcommand)]
    Skills(SkillsCommand),
    /// OAuth tokens for upstream servers: login, status, logout (kept in <state dir>/oauth).
    #[command(subcommand)]
    Auth(AuthCommand),
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
    /// Install, pinned and with npm, the TypeScript compiler that type-checks programs
    /// (TypeScript 7; the default) or the V8 engine (`v8`: Node.js), and say where it is.
    Setup {
        /// What to install: typescript (the default) or v8.
        #[arg(value_name = "WHAT", default_value = "typescript")]
        what: SetupTarget,
        /// Install into this directory instead of the cache directory
        /// ($CODEMODE_TYPESCRIPT_DIR, else $XDG_CACHE_HOME/codemode/typescript-VERSION; for v8
        /// $CODEMODE_V8_DIR, else $XDG_CACHE_HOME/codemode/node-VERSION).
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

impl Command {
    /// The sources of a command that runs programs, whose spans may be exported.
    fn traced(&self) -> Option<&Sources> {
        match self {
            Command::Run { sources, .. } | Command::Serve { sources, .. } | Command::Mcp { sources, .. } => {
                Some(sources)
            }
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    // Started again as a sealed sandbox worker: that is all this process does.
    codemode::sealed::serve_if_worker();
    let cli = Cli::parse();
    let (otel, exporter) = match telemetry::start(cli.command.traced()) {
        Ok(Some((layer, exporter))) => (Some(layer), Some(exporter)),
        Ok(None) => (None, None),
        Err(e) => return usage_error(e),
    };
    init_tracing(cli.log_format, otel);
    let code = dispatch(cli.command);
    if let Some(exporter) = exporter {
        exporter.finish();
    }
    code
}

fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Run { file, sources, timeout_ms, memory_mb, json, tokens } => {
            run(file, sources, timeout_ms, memory_mb, json, tokens)
        }
        Command::Types { sources, json } => types(sources, json),
        Command::Tools(command) => tools(command),
        Command::Skills(command) => skills(command),
        Command::Auth(AuthCommand::Login { namespace, sources, json }) => {
            auth::login(namespace, sources, json)
        }
        Command::Auth(AuthCommand::Status { namespace, sources, json }) => {
            auth::status(namespace, sources, json)
        }
        Command::Auth(AuthCommand::Logout { namespace, sources }) => auth::logout(namespace, sources),
        Command::Serve { socket, stdio, sources } => serve(socket, stdio, sources),
        Command::Mcp { http, sources } => mcp(http, sources),
        Command::Setup { what, dir } => setup(what, dir),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`); and, when `otel` is given, spans
/// to OpenTelemetry, filtered on their own (the log filter does not hide them).
fn init_tracing(format: LogFormat, otel: Option<telemetry::BoxedLayer>) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
        // rmcp's OAuth code logs the authorization code at debug level; no RUST_LOG shows it.
        .add_directive("rmcp::transport::auth=info".parse().expect("a valid directive"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(otel.into_iter().chain([logs]).collect::<Vec<_>>()).init();
}

/// A program's text: the file, or standard input for `-`.
fn read_source(file: &std::path::Path) -> Result<String, ExitCode> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| usage_error(format!("cannot read standard input: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(file).map_err(|e| usage_error(format!("cannot read {}: {e}", file.display())))
}

fn usage_error(message: String) -> ExitCode {
    eprintln!("codemode: {message}");
    ExitCode::from(2)
}
