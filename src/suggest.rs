//! "Did you mean …?" for names a program got wrong: a tool that is not in its namespace, a
//! namespace that does not exist.

use crate::registry::Registry;
use crate::skills;

/// Tools named when there is no close match, before "and N more".
const LISTED: usize = 20;

/// The message for `namespace.name` when `name` is not one of the namespace's tools.
pub(crate) fn unknown_tool(registry: &Registry, namespace: &str, name: &str) -> String {
    let head = format!("{namespace}.{name} is not a tool of {namespace}");
    if namespace == skills::NAMESPACE {
        if let Some(note) = left_out_note(registry, Some(name)) {
            return format!("{head}{note}");
        }
    }
    let Some((_, ns)) = registry.namespaces().find(|(js, _)| *js == namespace) else { return head };
    let tools: Vec<&str> = ns.tools.keys().map(String::as_str).collect();
    if let Some(best) = nearest(name, tools.iter().copied()) {
        return format!("{head}; did you mean {namespace}.{best}?");
    }
    let mut list = tools.iter().take(LISTED).copied().collect::<Vec<_>>().join(", ");
    if tools.len() > LISTED {
        list.push_str(&format!(" and {} more", tools.len() - LISTED));
    }
    format!("{head}; its tools are {list}")
}

/// `; it was left out …`: why the saved program `name` (or, for `None`, every saved program,
/// the namespace `skills` being gone) is not there, when it was left out at load.
pub(crate) fn left_out_note(registry: &Registry, name: Option<&str>) -> Option<String> {
    match name {
        Some(name) => {
            let why = registry.left_out_skill(name)?;
            Some(format!("; it was left out when the saved skills were loaded: {why}"))
        }
        None => {
            let all: Vec<String> = registry.left_out_skills().map(|(_, why)| why.to_string()).collect();
            (!all.is_empty())
                .then(|| format!("; the saved skills were left out when loaded: {}", all.join("; ")))
        }
    }
}

/// Adds why to the type checker's complaint about a saved program that was left out at load
/// (`Property 'x' does not exist on type 'typeof skills'`, `Cannot find name 'skills'`).
pub(crate) fn explain_left_out_skill(registry: &Registry, message: &mut String) {
    let note = if message.starts_with("Cannot find name 'skills'.") {
        left_out_note(registry, None)
    } else if message.contains("on type 'typeof skills'") {
        let name = message.split('\'').nth(1).unwrap_or_default();
        left_out_note(registry, Some(name))
    } else {
        None
    };
    if let Some(note) = note {
        message.push_str(&note);
    }
}

/// The tool namespace a program probably meant by the undefined name `name`, if one is close.
pub(crate) fn namespace_for(registry: &Registry, name: &str) -> Option<String> {
    nearest(name, registry.namespaces().map(|(js, _)| js)).map(str::to_string)
}

/// The candidate closest to `wanted`: equal once case and `_`/`-` are ignored
/// (`readTextFile` for `read_text_file`), else within an edit distance of a third of its length.
fn nearest<'a>(wanted: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let key = normalize(wanted);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let d = distance(&key, &normalize(candidate));
        if best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    let (d, candidate) = best?;
    (d <= (key.chars().count() / 3).max(1)).then_some(candidate)
}

fn normalize(s: &str) -> String {
    s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Levenshtein distance, in characters; names are short, so the plain table is enough.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_ignores_case_and_separators_then_allows_small_typos() {
        let tools = ["read_text_file", "write_file", "list_directory"];
        assert_eq!(nearest("readTextFile", tools.iter().copied()), Some("read_text_file"));
        assert_eq!(nearest("writ_file", tools.iter().copied()), Some("write_file"));
        assert_eq!(nearest("deleteEverything", tools.iter().copied()), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
