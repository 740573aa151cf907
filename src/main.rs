//! The `codemode` command line. Only the binary prints, exits and reads the environment.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the binary is the one place that prints")]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use codemode::{Engine, ExecuteOptions, Limits, LogLevel, Outcome, Registry};

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

#[derive(Subcommand)]
enum Command {
    /// Run a TypeScript program (FILE, or - for stdin).
    Run {
        /// The program: a .ts file, or - to read standard input.
        file: PathBuf,
        /// Register the built-in demo namespace `sheets`.
        #[arg(long)]
        demo: bool,
        /// Wall-clock deadline in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Sandbox memory limit in MiB.
        #[arg(long)]
        memory_mb: Option<usize>,
        /// Print exactly one JSON object: ok, value, logs, error, stats.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Run { file, demo, timeout_ms, memory_mb, json } => {
            run(file, demo, timeout_ms, memory_mb, json)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn usage_error(message: String) -> ExitCode {
    eprintln!("codemode: {message}");
    ExitCode::from(2)
}

fn run(file: PathBuf, demo: bool, timeout_ms: Option<u64>, memory_mb: Option<usize>, json: bool) -> ExitCode {
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
    let mut limits = Limits::default();
    if let Some(ms) = timeout_ms {
        limits.timeout = Duration::from_millis(ms);
    }
    if let Some(mb) = memory_mb {
        limits.memory_bytes = mb.saturating_mul(1 << 20);
    }
    let registry = if demo { codemode::demo::registry() } else { Registry::new() };
    let engine =
        match Engine::builder().registry(registry).limits(limits).workers(1).warm_sandboxes(1).build() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("codemode: {e}");
                return ExitCode::FAILURE;
            }
        };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("codemode: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(engine.execute(&code, ExecuteOptions::default()));
    if json {
        println!("{}", outcome.to_report());
    } else {
        print_human(&outcome);
    }
    if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_human(outcome: &Outcome) {
    for line in &outcome.logs {
        match line.level {
            LogLevel::Log | LogLevel::Info => println!("{}", line.message),
            LogLevel::Warn => println!("[warn] {}", line.message),
            LogLevel::Error => println!("[error] {}", line.message),
            LogLevel::Debug => println!("[debug] {}", line.message),
        }
    }
    match &outcome.error {
        None => println!("{}", serde_json::to_string_pretty(&outcome.value).unwrap_or_default()),
        Some(e) => {
            let at = match (e.line, e.column) {
                (Some(l), Some(c)) => format!(" at {l}:{c}"),
                _ => String::new(),
            };
            let name = e.name.as_deref().map(|n| format!("{n}: ")).unwrap_or_default();
            println!("error[{}]{at}: {name}{}", e.kind, e.message);
            if let Some(stack) = &e.stack {
                println!("{stack}");
            }
        }
    }
    let s = &outcome.stats;
    let t = outcome.tokens();
    let calls =
        if s.tool_calls == 1 { "1 tool call".to_string() } else { format!("{} tool calls", s.tool_calls) };
    println!(
        "— {} in {:.1} ms · {calls} · {} tokens of tool results kept out of context, {} returned{}",
        if outcome.is_ok() { "ok" } else { "failed" },
        s.duration.as_secs_f64() * 1000.0,
        t.tool_results,
        t.returned,
        if t.estimated { " (estimated)" } else { "" },
    );
}
