//! `codemode types` and `codemode tools …`: what the tools are, without running anything.

use super::*;

pub(crate) fn print_json(value: &impl serde::Serialize) -> ExitCode {
    outln!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    ExitCode::SUCCESS
}

pub(crate) fn types(sources: Sources, json: bool) -> ExitCode {
    let registry = match load(&sources, false).and_then(|loaded| with_skills(&loaded)) {
        Ok(registry) => registry,
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
pub(crate) const NO_TOOLS: &str = "no tools: add --demo for the built-in sheets namespace, --schema [NS=]FILE for a \
                        tool definitions file, or --config FILE (or ./codemode.toml) for upstream MCP servers";

pub(crate) fn tools(command: ToolsCommand) -> ExitCode {
    let (ToolsCommand::List { sources, .. }
    | ToolsCommand::Search { sources, .. }
    | ToolsCommand::Show { sources, .. }
    | ToolsCommand::Files { sources, .. }
    | ToolsCommand::Prompt { sources, .. }) = &command;
    let loaded = match load(sources, false) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let registry = &match with_skills(&loaded) {
        Ok(registry) => registry,
        Err(code) => return code,
    };
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
        ToolsCommand::Prompt { json, session, .. } => {
            let mut limits = loaded.config.limits();
            // Promise a type check only where one will happen.
            let installed = typescript_dir().is_some_and(|d| TypeChecker::installed_binary(&d).is_file());
            if !installed {
                limits.typecheck = TypeCheck::Off;
            }
            let text = codemode::prompt(registry, &limits, session);
            if json {
                return print_json(&serde_json::json!({ "prompt": text }));
            }
            out!("{text}");
        }
    }
    ExitCode::SUCCESS
}

/// The tools plus the saved skills that still type-check: those need an engine (and its
/// checker), started only when there are skills.
fn with_skills(loaded: &load::Loaded) -> Result<Registry, ExitCode> {
    if load::skill_store(&loaded.config).is_none_or(|store| store.is_empty()) {
        return Ok(loaded.registry.clone());
    }
    let engine = start(loaded, |b| b.workers(1).warm_sandboxes(0))?;
    Ok(Registry::clone(&engine.registry()))
}
