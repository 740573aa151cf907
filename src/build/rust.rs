//! JSON Schema → Rust types (serde), for handlers written against types instead of `Value`.
//!
//! Covers what tool inputs are made of: objects (structs; a closed object denies unknown
//! fields, an open one with a value schema keeps the rest in a flattened map), string enums
//! (enums), integers (`u64` when the minimum is not negative, else `i64`), arrays, maps, `$ref`s within the document (named types, boxed where they recurse),
//! nullable types (`Option`), and `anyOf`/`oneOf` (untagged enums). What has no faithful Rust
//! shape — `allOf` of several schemas, tuples, non-string enums, `not`, `if` — is
//! `serde_json::Value`, so deserializing never rejects what the schema accepts.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use serde_json::{Map, Value};

use crate::typegen::{resolve, type_name, Names};

const VALUE: &str = "::serde_json::Value";
const DERIVES: &str = "#[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]";
const MAX_DEPTH: usize = 32;

/// Rust items for the schemas of one namespace; names are unique within it.
#[derive(Default)]
pub(crate) struct RustGen {
    taken: Names,
    pub(crate) items: String,
}

/// One document's state: its `$ref` targets already named, and the types being generated
/// (a reference to one of them needs a `Box` unless a `Vec` or map is in between).
struct DocGen<'a> {
    root: &'a Value,
    /// The tool's type-name prefix, for names another tool took first.
    prefix: &'a str,
    named: HashMap<String, String>,
    open: Vec<String>,
    /// Named types referred to from inside themselves.
    recursive: BTreeSet<String>,
}

impl RustGen {
    /// Generates the type `name` (claimed first, by [`RustGen::claim`]) for `schema` and
    /// everything it needs; other names get `prefix` when taken.
    pub(crate) fn root(&mut self, schema: &Value, name: &str, prefix: &str) {
        let mut doc = DocGen {
            root: schema,
            prefix,
            named: HashMap::new(),
            open: Vec::new(),
            recursive: BTreeSet::new(),
        };
        doc.named.insert(String::new(), name.to_string());
        self.named_item(&mut doc, schema, name, "", 0);
    }

    pub(crate) fn claim(&mut self, wanted: &str, prefix: &str) -> String {
        self.taken.claim(wanted, prefix)
    }

    /// Emits `name` as a struct, an enum, or a type alias for whatever `schema` is.
    fn named_item(&mut self, doc: &mut DocGen<'_>, schema: &Value, name: &str, path: &str, depth: usize) {
        doc.open.push(name.to_string());
        let m = schema.as_object();
        let docs = m.map(doc_attrs).unwrap_or_default();
        if let Some(m) = m.filter(|m| is_struct(m)) {
            self.structure(doc, m, name, &docs, path, depth);
        } else if let Some(values) = m.and_then(string_enum) {
            let mut item = format!("{docs}{DERIVES}\n#[derive(Copy, Eq, Hash)]\npub enum {name} {{\n");
            let mut used = BTreeSet::new();
            for v in values {
                let mut variant = type_name(v);
                if variant.is_empty() {
                    variant = "Empty".into();
                }
                while !used.insert(variant.clone()) {
                    variant.push('_');
                }
                let _ = writeln!(item, "    #[serde(rename = {})]\n    {variant},", Value::String(v.into()));
            }
            item.push_str("}\n\n");
            self.items.push_str(&item);
        } else if let Some(members) = m.and_then(union_members) {
            let mut item = format!("{docs}{DERIVES}\n#[serde(untagged)]\npub enum {name} {{\n");
            let mut used = BTreeSet::new();
            for (i, member) in members.iter().enumerate() {
                let member_path = format!(
                    "{path}/{}/{i}",
                    if m.is_some_and(|m| m.contains_key("oneOf")) { "oneOf" } else { "anyOf" }
                );
                let ty = self.ty(doc, member, &format!("{name}{}", i + 1), &member_path, depth + 1, false);
                let mut variant = variant_name(&ty);
                while !used.insert(variant.clone()) {
                    variant.push('_');
                }
                let _ = writeln!(item, "    {variant}({ty}),");
            }
            item.push_str("}\n\n");
            self.items.push_str(&item);
        } else {
            let ty = self.ty_inner(doc, schema, name, path, depth, false);
            if doc.recursive.contains(name) {
                // A type alias cannot refer to itself; a newtype can.
                let _ = write!(
                    self.items,
                    "{docs}{DERIVES}\n#[serde(transparent)]\npub struct {name}(pub {ty});\n\n"
                );
            } else {
                let _ = write!(self.items, "{docs}pub type {name} = {ty};\n\n");
            }
        }
        doc.open.pop();
    }

    fn structure(
        &mut self,
        doc: &mut DocGen<'_>,
        m: &Map<String, Value>,
        name: &str,
        docs: &str,
        path: &str,
        depth: usize,
    ) {
        let required: Vec<&str> = m
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let empty = Map::new();
        let props = m.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let mut fields = String::new();
        let mut used = BTreeSet::new();
        for (key, s) in props {
            let mut field = field_name(key);
            while !used.insert(field.clone()) {
                field.push('_');
            }
            let hint = format!("{name}{}", type_name(key));
            let ty = self.ty(doc, s, &hint, &format!("{path}/properties/{key}"), depth + 1, false);
            for line in s.as_object().map(doc_attrs).unwrap_or_default().lines() {
                let _ = writeln!(fields, "    {line}");
            }
            if raw_name(&field) != key {
                let _ = writeln!(fields, "    #[serde(rename = {})]", Value::String(key.clone()));
            }
            // An optional nullable field is one `Option`: absent and null both read as `None`.
            let ty = if required.contains(&key.as_str()) {
                ty
            } else {
                ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')).map(str::to_string).unwrap_or(ty)
            };
            if required.contains(&key.as_str()) {
                let _ = writeln!(fields, "    pub {field}: {ty},");
            } else {
                let _ = writeln!(
                    fields,
                    "    #[serde(default, skip_serializing_if = \"Option::is_none\")]\n    pub {field}: Option<{ty}>,"
                );
            }
        }
        // Required but undeclared: present with any value.
        for key in required.iter().filter(|k| !props.contains_key(**k)) {
            let mut field = field_name(key);
            while !used.insert(field.clone()) {
                field.push('_');
            }
            if raw_name(&field) != *key {
                let _ = writeln!(fields, "    #[serde(rename = {})]", Value::String(key.to_string()));
            }
            let _ = writeln!(fields, "    pub {field}: {VALUE},");
        }
        let closed = m.get("additionalProperties") == Some(&Value::Bool(false));
        match m.get("additionalProperties") {
            Some(extra) if !closed && extra != &Value::Bool(true) => {
                let ty = self.ty(
                    doc,
                    extra,
                    &format!("{name}Extra"),
                    &format!("{path}/additionalProperties"),
                    depth + 1,
                    true,
                );
                let _ = writeln!(
                    fields,
                    "    /// Properties beyond the declared ones.\n    #[serde(flatten)]\n    pub extra: ::std::collections::BTreeMap<String, {ty}>,"
                );
            }
            Some(Value::Bool(true)) => {
                let _ = writeln!(
                    fields,
                    "    /// Properties beyond the declared ones.\n    #[serde(flatten)]\n    pub extra: ::serde_json::Map<String, ::serde_json::Value>,"
                );
            }
            _ => {}
        }
        let deny = if closed { "#[serde(deny_unknown_fields)]\n" } else { "" };
        let _ = write!(self.items, "{docs}{DERIVES}\n{deny}pub struct {name} {{\n{fields}}}\n\n");
    }

    /// The Rust type for a schema in a field, item or variant position; `contained` is true
    /// under a `Vec` or map, where a recursive reference needs no `Box`.
    fn ty(
        &mut self,
        doc: &mut DocGen<'_>,
        schema: &Value,
        hint: &str,
        path: &str,
        depth: usize,
        contained: bool,
    ) -> String {
        // A `$ref` is named already; `ty_inner` follows it.
        let shaped = schema
            .as_object()
            .filter(|m| !m.contains_key("$ref"))
            .is_some_and(|m| is_struct(m) || string_enum(m).is_some() || union_members(m).is_some());
        if !shaped {
            return self.ty_inner(doc, schema, hint, path, depth, contained);
        }
        let name = self.claim(hint, "");
        self.named_item(doc, schema, &name, path, depth);
        name
    }

    fn ty_inner(
        &mut self,
        doc: &mut DocGen<'_>,
        schema: &Value,
        hint: &str,
        path: &str,
        depth: usize,
        contained: bool,
    ) -> String {
        if depth > MAX_DEPTH {
            return VALUE.into();
        }
        let Some(m) = schema.as_object() else { return VALUE.into() };
        if let Some(target) = m.get("$ref").and_then(Value::as_str) {
            return self.reference(doc, target, contained, depth);
        }
        let (types, nullable) = types(m);
        let base = match types.as_slice() {
            [t] => match t.as_str() {
                "string" => "String".to_string(),
                "integer" if m.get("minimum").and_then(Value::as_f64).is_some_and(|min| min >= 0.0) => {
                    "u64".into()
                }
                "integer" => "i64".into(),
                "number" => "f64".into(),
                "boolean" => "bool".into(),
                "null" => "()".into(),
                "array" => match m.get("items") {
                    Some(items) if items.is_object() || items.is_boolean() => {
                        format!(
                            "Vec<{}>",
                            self.ty(
                                doc,
                                items,
                                &format!("{hint}Item"),
                                &format!("{path}/items"),
                                depth + 1,
                                true
                            )
                        )
                    }
                    None => format!("Vec<{VALUE}>"),
                    Some(_) => VALUE.into(),
                },
                "object" => {
                    let value = match m.get("additionalProperties") {
                        Some(s @ Value::Object(_)) => self.ty(
                            doc,
                            s,
                            &format!("{hint}Value"),
                            &format!("{path}/additionalProperties"),
                            depth + 1,
                            true,
                        ),
                        _ => VALUE.into(),
                    };
                    format!("::std::collections::BTreeMap<String, {value}>")
                }
                _ => VALUE.into(),
            },
            _ => {
                // `anyOf: [X, {type: null}]` is the common spelling of a nullable X.
                if let Some([a, b]) =
                    m.get("anyOf").or_else(|| m.get("oneOf")).and_then(Value::as_array).map(Vec::as_slice)
                {
                    let (x, i) = if is_null(b) {
                        (a, 0)
                    } else if is_null(a) {
                        (b, 1)
                    } else {
                        return VALUE.into();
                    };
                    let key = if m.contains_key("anyOf") { "anyOf" } else { "oneOf" };
                    let inner = self.ty(doc, x, hint, &format!("{path}/{key}/{i}"), depth + 1, contained);
                    return format!("Option<{inner}>");
                }
                if let Some([only]) = m.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                    return self.ty(doc, only, hint, &format!("{path}/allOf/0"), depth + 1, contained);
                }
                return VALUE.into();
            }
        };
        if nullable && base != "()" {
            format!("Option<{base}>")
        } else {
            base
        }
    }

    fn reference(&mut self, doc: &mut DocGen<'_>, target: &str, contained: bool, depth: usize) -> String {
        let Ok(pointer) = resolve(doc.root, target) else { return VALUE.into() };
        let Some(schema) = doc.root.pointer(&pointer) else { return VALUE.into() };
        let name = match doc.named.get(&pointer) {
            Some(n) => n.clone(),
            None => {
                let last = pointer.rsplit('/').next().unwrap_or("").replace("~1", "/").replace("~0", "~");
                let name = self.claim(&type_name(&last), doc.prefix);
                doc.named.insert(pointer.clone(), name.clone());
                self.named_item(doc, schema, &name, &pointer, depth + 1);
                name
            }
        };
        if doc.open.contains(&name) {
            doc.recursive.insert(name.clone());
            if !contained {
                return format!("Box<{name}>");
            }
        }
        name
    }
}

fn is_struct(m: &Map<String, Value>) -> bool {
    m.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty())
        && types(m).0.iter().all(|t| t == "object")
        && !["anyOf", "oneOf", "allOf"].iter().any(|k| m.get(*k).is_some_and(shapes_value))
}

/// Whether `anyOf`/`oneOf`/`allOf` members say what the value is, rather than only which
/// properties must be present (`anyOf: [{required: [a]}, {required: [b]}]` leaves a struct a
/// struct).
fn shapes_value(members: &Value) -> bool {
    let shaping = ["type", "properties", "$ref", "items", "enum", "const", "anyOf", "oneOf", "allOf"];
    members.as_array().is_none_or(|ms| {
        ms.iter().any(|s| s.as_object().is_none_or(|s| shaping.iter().any(|k| s.contains_key(*k))))
    })
}

fn string_enum(m: &Map<String, Value>) -> Option<Vec<&str>> {
    let values = m.get("enum")?.as_array()?;
    let strings: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
    (!strings.is_empty() && strings.len() == values.len()).then_some(strings)
}

/// Members of an `anyOf`/`oneOf` worth an untagged enum (not just "X or null").
fn union_members(m: &Map<String, Value>) -> Option<&Vec<Value>> {
    let members = m.get("anyOf").or_else(|| m.get("oneOf"))?.as_array()?;
    let non_null = members.iter().filter(|s| !is_null(s)).count();
    (non_null >= 2 && non_null == members.len() && !m.contains_key("properties") && !m.contains_key("type"))
        .then_some(members)
}

fn is_null(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
}

/// The non-null types a schema names (inferred from its keywords when it has no `type`), and
/// whether null is allowed.
fn types(m: &Map<String, Value>) -> (Vec<String>, bool) {
    let mut nullable = m.get("nullable") == Some(&Value::Bool(true));
    let mut out = Vec::new();
    match m.get("type") {
        Some(Value::String(t)) => out.push(t.clone()),
        Some(Value::Array(ts)) => out.extend(ts.iter().filter_map(Value::as_str).map(String::from)),
        _ => {
            if m.contains_key("properties") || m.contains_key("additionalProperties") {
                out.push("object".into());
            } else if m.contains_key("items") {
                out.push("array".into());
            } else if let Some(c) = m.get("const") {
                out.push(json_type(c).into());
            } else if let Some(Value::Array(values)) = m.get("enum") {
                let mut ts: Vec<String> = values.iter().map(|v| json_type(v).to_string()).collect();
                ts.sort();
                ts.dedup();
                out = ts;
            }
        }
    }
    if out.len() > 1 && out.iter().any(|t| t == "null") {
        out.retain(|t| t != "null");
        nullable = true;
    }
    if out.len() == 2 && out.contains(&"integer".to_string()) && out.contains(&"number".to_string()) {
        out = vec!["number".into()];
    }
    (out, nullable)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `/// ` lines from title and description. Code fences are defused, since rustdoc would run
/// them as doctests.
fn doc_attrs(m: &Map<String, Value>) -> String {
    let mut text = String::new();
    for key in ["title", "description"] {
        if let Some(t) = m.get(key).and_then(Value::as_str) {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(t.trim());
        }
    }
    let text = text.replace("```", "'''");
    text.lines()
        .map(|l| if l.trim().is_empty() { "///\n".to_string() } else { format!("/// {}\n", l.trim_end()) })
        .collect()
}

/// A field name: snake_case, a raw identifier for keywords, `_` before a leading digit.
pub(crate) fn field_name(key: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let out = out.trim_end_matches('_').to_string();
    let out = if out.is_empty() { "field".to_string() } else { out };
    let out = if out.starts_with(|c: char| c.is_ascii_digit()) { format!("_{out}") } else { out };
    match out.as_str() {
        "self" | "super" | "crate" | "extern" => format!("{out}_"),
        k if RUST_KEYWORDS.contains(&k) => format!("r#{out}"),
        _ => out,
    }
}

fn raw_name(field: &str) -> &str {
    field.strip_prefix("r#").unwrap_or(field)
}

fn variant_name(ty: &str) -> String {
    let base = match ty {
        "String" => "String".to_string(),
        "i64" | "u64" => "Integer".into(),
        "f64" => "Number".into(),
        "bool" => "Boolean".into(),
        "()" => "Null".into(),
        t if t.starts_with("Vec<") => "Array".into(),
        t if t.starts_with("::std::collections::BTreeMap") => "Map".into(),
        t if t == VALUE => "Value".into(),
        t => t.trim_start_matches("Box<").trim_end_matches('>').to_string(),
    };
    base
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "false", "fn", "for", "if",
    "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct",
    "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final",
    "gen", "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];
