//! How a failed execution is reported: engine errors, aborts by limit, rejection reasons and
//! stacks mapped back to the agent's own positions.

use super::prelude::PRELUDE_NAME;
use super::*;

/// `; still waiting on sheets.getRows (1204 ms), …`: what a stopped program was waiting for.
pub(super) fn pending_text(pending: &[crate::PendingCall]) -> String {
    const SHOWN: usize = 5;
    if pending.is_empty() {
        return String::new();
    }
    let mut parts: Vec<String> = pending
        .iter()
        .take(SHOWN)
        .map(|p| {
            let queued = if p.queued { "queued, " } else { "" };
            format!("{} ({queued}{} ms)", p.tool, p.waited_ms)
        })
        .collect();
    if pending.len() > SHOWN {
        parts.push(format!("and {} more", pending.len() - SHOWN));
    }
    format!("; still waiting on {}", parts.join(", "))
}

pub(super) fn internal_js(e: rquickjs::Error) -> ExecError {
    ExecError::new(ErrorKind::Internal, format!("sandbox failure: {e}"))
}

pub(crate) fn abort_error(kind: ErrorKind, limits: &Limits) -> ExecError {
    let message = match kind {
        ErrorKind::Timeout => format!("the program ran past its {} ms deadline", limits.timeout.as_millis()),
        ErrorKind::MemoryLimit => {
            format!("the program used more than its {} byte memory limit", limits.memory_bytes)
        }
        ErrorKind::ToolCallLimit => {
            format!("the program made more than {} tool calls", limits.max_tool_calls)
        }
        ErrorKind::OutputLimit => format!("the program logged more than {} bytes", limits.max_output_bytes),
        ErrorKind::Cancelled => "the execution was cancelled".to_string(),
        other => other.to_string(),
    };
    ExecError::new(kind, message)
}

/// A rejection's reason in at most about `max` bytes: an object's `message`, else the value as
/// a console shows it.
pub(super) fn describe_reason<'js>(
    ctx: &Ctx<'js>,
    reason: &Value<'js>,
    texts: &convert::Texts<'js>,
    builtins: Option<&inspect::Builtins<'js>>,
    max: usize,
) -> String {
    if reason.is_object() {
        let message = convert::own_data_property(ctx, reason, "message").filter(|m| m.is_string());
        return message.map_or_else(|| "[object]".into(), |m| texts.read(&m, max));
    }
    match builtins {
        Some(builtins) => inspect::primitive(ctx, reason, builtins, max),
        None => texts.read(reason, max),
    }
}

/// Rewrites `agent.ts:L:C` positions in a stack to the agent's own columns (only the first line
/// carries the wrapper) and drops the prelude's frames.
pub(crate) fn map_stack(stack: &str, compiled: &Compiled) -> (String, Option<(u32, u32)>) {
    let needle = format!("{SCRIPT_NAME}:");
    let mut out = Vec::new();
    let mut first = None;
    for line in stack.lines() {
        // The prelude's frames: by name, or `<null>` when it was loaded as bytecode compiled
        // without debug names.
        if line.contains(PRELUDE_NAME) || line.contains("(<null>") {
            continue;
        }
        let Some(at) = line.find(&needle) else {
            out.push(skill_frame(line));
            continue;
        };
        let rest = &line[at + needle.len()..];
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != ':').unwrap_or(rest.len());
        let mut parts = rest[..digits].split(':').filter_map(|p| p.parse::<u32>().ok());
        match (parts.next(), parts.next()) {
            // The wrapper's closing lines are not the agent's code.
            (Some(l), _) if l > compiled.source_lines => {}
            (Some(l), Some(c)) => {
                let (l, c) = compiled.map_position(l, c);
                first.get_or_insert((l, c));
                out.push(format!("{}{needle}{l}:{c}{}", &line[..at], &rest[digits..]));
            }
            _ => out.push(line.to_string()),
        }
    }
    (out.join("\n"), first)
}

/// A frame of a saved program (`skills/name.ts:1:C`) at the skill's own column: its wrapper
/// too sits on the first line only.
fn skill_frame(line: &str) -> String {
    let prefix = format!("{}/", crate::skills::NAMESPACE);
    let Some(at) = line.find(&prefix) else { return line.to_string() };
    let Some(rel) = line[at..].find(".ts:1:") else { return line.to_string() };
    let start = at + rel + ".ts:1:".len();
    let digits = line[start..].find(|c: char| !c.is_ascii_digit()).map_or(line.len(), |d| start + d);
    let Ok(column) = line[start..digits].parse::<u32>() else { return line.to_string() };
    let column = column.saturating_sub(crate::transpile::SKILL_PREFIX.len() as u32).max(1);
    format!("{}{column}{}", &line[..start], &line[digits..])
}
