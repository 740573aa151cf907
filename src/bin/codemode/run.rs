//! `codemode run`: one program, and its outcome for a person or as JSON.

use super::*;

pub(crate) fn run(
    file: PathBuf,
    sources: Sources,
    timeout_ms: Option<u64>,
    memory_mb: Option<usize>,
    json: bool,
    exact_tokens: bool,
) -> ExitCode {
    let code = match read_source(&file) {
        Ok(code) => code,
        Err(exit) => return exit,
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
    let mut outcome = runtime.block_on(engine.execute(&code, ExecuteOptions::default()));
    // A call that needs approval: the person at the terminal decides. Without one nobody can,
    // as the execution ends with this process; the pause is reported.
    while let Some(paused) = outcome.paused.clone() {
        let Some((approve, reason)) = ask(&paused) else { break };
        match runtime.block_on(engine.resume(&paused.approval, approve, reason)) {
            Ok(next) => outcome = next.after_logs(outcome.logs),
            Err(e) => {
                eprintln!("codemode: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
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

/// Asks on the terminal whether the paused call may run: `Some((approve, reason))`, or `None`
/// when standard input or error is not a terminal.
fn ask(paused: &codemode::Paused) -> Option<(bool, Option<&'static str>)> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    eprint!("codemode: the program calls {} with {}. Allow it? [y/N] ", paused.tool, paused.arguments);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).ok()?;
    Some(match answer.trim() {
        "y" | "Y" | "yes" => (true, None),
        _ => (false, Some("declined at the terminal")),
    })
}

pub(crate) fn print_human(outcome: &Outcome, exact_tokens: bool) {
    for line in &outcome.logs {
        match line.level {
            LogLevel::Log | LogLevel::Info => outln!("{}", line.message),
            LogLevel::Warn => outln!("[warn] {}", line.message),
            LogLevel::Error => outln!("[error] {}", line.message),
            LogLevel::Debug => outln!("[debug] {}", line.message),
        }
    }
    match (&outcome.error, &outcome.paused) {
        (None, Some(p)) => {
            outln!(
                "paused: {}({}) needs a person's approval; codemode run asks on a terminal, and the \
                 daemon and codemode mcp can wait for one",
                p.tool,
                p.arguments
            );
        }
        (None, None) => outln!("{}", serde_json::to_string_pretty(&outcome.value).unwrap_or_default()),
        (Some(e), _) => {
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
        match (outcome.is_ok(), outcome.paused.is_some()) {
            (true, _) => "ok",
            (false, true) => "paused",
            (false, false) => "failed",
        },
        s.duration.as_secs_f64() * 1000.0,
        t.tool_results,
    );
}

pub(crate) fn print_diagnostics(diagnostics: &[codemode::Diagnostic]) {
    for d in diagnostics {
        let message = d.message.replace('\n', "\n    ");
        outln!("  {}:{} TS{}: {message}", d.line, d.column, d.code);
    }
}
