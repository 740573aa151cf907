//! Identifiers: which strings are JS identifiers, how a tool name becomes a function name and a
//! schema location becomes a type name. Deterministic, so the same schemas give the same text.

/// The JS name for a tool or namespace name: valid identifiers stay as they are; anything else
/// is split on the characters an identifier cannot hold and joined in camelCase; a leading digit
/// gets a `_` prefix and a reserved word a `_` suffix. `None` when nothing usable remains.
pub fn js_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    if is_identifier(name) {
        out.push_str(name);
    } else {
        for (i, word) in words(name).enumerate() {
            let mut chars = word.chars();
            let first = chars.next().expect("non-empty word");
            if i == 0 {
                out.push(first);
            } else {
                out.extend(first.to_uppercase());
            }
            out.extend(chars);
        }
        if out.is_empty() {
            return None;
        }
        if out.starts_with(|c: char| c.is_ascii_digit()) {
            out.insert(0, '_');
        }
    }
    if RESERVED_WORDS.contains(&out.as_str()) {
        out.push('_');
    }
    Some(out)
}

/// A type name: the words of `name` in PascalCase (`user_info` → `UserInfo`, `getRows` →
/// `GetRows`), `T` before a leading digit, and a `_` after a name that would shadow a global
/// type the declarations use. Empty when `name` has no identifier characters.
pub fn type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        out.extend(chars.next().expect("non-empty word").to_uppercase());
        out.extend(chars);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    if GLOBAL_TYPES.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// Type names in use in one scope (a TypeScript namespace, a Rust module).
#[derive(Debug, Default)]
pub(crate) struct Names(std::collections::BTreeSet<String>);

impl Names {
    /// Reserves `wanted` — or, if it is taken, `prefix + wanted`, then that numbered from 2 —
    /// and returns what it reserved.
    pub(crate) fn claim(&mut self, wanted: &str, prefix: &str) -> String {
        let wanted = if wanted.is_empty() { "Type" } else { wanted };
        let mut candidates = vec![wanted.to_string()];
        if !prefix.is_empty() && !wanted.starts_with(prefix) {
            candidates.push(format!("{prefix}{wanted}"));
        }
        for c in &candidates {
            if self.0.insert(c.clone()) {
                return c.clone();
            }
        }
        let base = candidates.pop().expect("at least one candidate");
        let name = (2..).map(|n| format!("{base}{n}")).find(|c| !self.0.contains(c)).expect("unbounded");
        self.0.insert(name.clone());
        name
    }
}

/// A property key as a declaration writes it: bare when it is an identifier, else quoted.
pub fn property_key(key: &str) -> String {
    if is_identifier(key) {
        key.to_string()
    } else {
        serde_json::Value::String(key.into()).to_string()
    }
}

fn words(name: &str) -> impl Iterator<Item = &str> {
    name.split(|c: char| !is_ident_char(c)).filter(|w| !w.is_empty())
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// True for an ASCII JS identifier (the only kind the generated names use).
pub fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| is_ident_char(c) && !c.is_ascii_digit()) && s.chars().all(is_ident_char)
}

/// Global types that generated declarations name; a schema-derived type must not shadow them
/// inside a namespace.
const GLOBAL_TYPES: &[&str] = &["Array", "Promise", "Record", "Object", "String", "Number", "Boolean"];

/// Words that cannot name a function in a TypeScript declaration.
const RESERVED_WORDS: &[&str] = &[
    "arguments",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "eval",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "package",
    "private",
    "protected",
    "public",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
];

#[cfg(test)]
mod tests {
    use super::{js_name, property_key, type_name};

    #[test]
    fn js_names_are_deterministic_camel_case() {
        assert_eq!(js_name("getRows").as_deref(), Some("getRows"));
        assert_eq!(js_name("list_sheets").as_deref(), Some("list_sheets"));
        assert_eq!(js_name("get-sum").as_deref(), Some("getSum"));
        assert_eq!(js_name("tree.insert-node").as_deref(), Some("treeInsertNode"));
        assert_eq!(js_name("delete").as_deref(), Some("delete_"));
        assert_eq!(js_name("2fa-check").as_deref(), Some("_2faCheck"));
        assert_eq!(js_name("a b/c").as_deref(), Some("aBC"));
        assert_eq!(js_name("--").as_deref(), None);
        assert_eq!(js_name("").as_deref(), None);
    }

    #[test]
    fn type_names_are_pascal_case_and_never_shadow_globals() {
        assert_eq!(type_name("user_info"), "UserInfo");
        assert_eq!(type_name("_2faCheck"), "T2faCheck");
        assert_eq!(type_name("user-info"), "UserInfo");
        assert_eq!(type_name("getRows"), "GetRows");
        assert_eq!(type_name("2fa"), "T2fa");
        assert_eq!(type_name("promise"), "Promise_");
        assert_eq!(type_name("-"), "");
        assert_eq!(property_key("a-b"), "\"a-b\"");
        assert_eq!(property_key("_ok$"), "_ok$");
    }
}
