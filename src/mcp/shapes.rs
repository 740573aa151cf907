//! Learned result shapes. A tool that declares no output schema still returns values of some
//! shape; each result is folded into a [`Shape`] (which JSON kinds came, which fields, how
//! often, and whether a text was JSON), and the shape is rendered as the TypeScript type the
//! declarations give the tool, with the number of observations. Learned types are hints: they
//! stand in for a missing schema and never replace a declared one.
//!
//! Everything is bounded: a result is sampled (a few items per array, a few levels deep, a
//! fixed number of visits), a tool's shape has a node budget, and [`ShapeStore`] keeps one
//! file per server, written atomically. A file that does not parse is reported and left alone;
//! learning goes on in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::registry::ResultType;
use crate::typegen::{is_identifier, property_key};

/// Levels of a result that are looked at; deeper values are `unknown`.
const MAX_DEPTH: usize = 6;
/// Fields kept per object kind; more are an index signature.
const MAX_FIELDS: usize = 48;
/// Object kinds (by their `type` field) kept apart; more are merged into one.
const MAX_VARIANTS: usize = 8;
/// Distinct short strings remembered per position, for literal unions.
const MAX_LITERALS: usize = 6;
const MAX_LITERAL_CHARS: usize = 40;
/// Items of an array that are looked at.
const SAMPLED_ITEMS: usize = 16;
/// Values looked at per result; a result past it is not learned from.
const MAX_VISITS: usize = 4_000;
/// Texts longer than this are not parsed to see whether they are JSON.
const MAX_JSON_TEXT: usize = 1 << 20;
/// Nodes one tool's shape may hold; a result that would grow it past this is not learned from.
const MAX_NODES: usize = 600;
/// Tools learned per server.
const MAX_TOOLS: usize = 1_000;
/// How long a change waits before it is written, so a burst of calls makes one write.
const FLUSH_DELAY: Duration = Duration::from_millis(200);

/// What the results seen at one position were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shape {
    /// Values seen here.
    #[serde(skip_serializing_if = "is_zero")]
    n: u64,
    #[serde(skip_serializing_if = "is_zero")]
    null: u64,
    #[serde(skip_serializing_if = "is_zero")]
    boolean: u64,
    #[serde(skip_serializing_if = "is_zero")]
    number: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    string: Option<Strings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    array: Option<Box<Shape>>,
    /// Objects by the value of their `type` field (`""` for objects without one).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    objects: BTreeMap<String, Fields>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Strings {
    n: u64,
    /// Distinct values and how often each came, while they are few and short.
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<BTreeMap<String, u64>>,
    /// Texts that were a JSON object or array, and what they held.
    #[serde(skip_serializing_if = "is_zero")]
    json: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parsed: Option<Box<Shape>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Fields {
    n: u64,
    fields: BTreeMap<String, Shape>,
    /// Fields were left out (past [`MAX_FIELDS`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    more: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Shape {
    /// The shape of one value, or `None` when it is too big to look at in [`MAX_VISITS`].
    pub fn of(value: &Value) -> Option<Shape> {
        let mut visits = MAX_VISITS;
        Shape::sample(value, 0, &mut visits)
    }

    fn sample(value: &Value, depth: usize, visits: &mut usize) -> Option<Shape> {
        *visits = visits.checked_sub(1)?;
        let mut s = Shape { n: 1, ..Shape::default() };
        if depth >= MAX_DEPTH {
            return Some(s);
        }
        match value {
            Value::Null => s.null = 1,
            Value::Bool(_) => s.boolean = 1,
            Value::Number(_) => s.number = 1,
            Value::String(text) => {
                let short = text.chars().count() <= MAX_LITERAL_CHARS;
                let mut strings = Strings {
                    n: 1,
                    values: short.then(|| BTreeMap::from([(text.clone(), 1)])),
                    ..Strings::default()
                };
                let trimmed = text.trim_start();
                if text.len() <= MAX_JSON_TEXT && (trimmed.starts_with('{') || trimmed.starts_with('[')) {
                    if let Ok(parsed) = serde_json::from_str::<Value>(text) {
                        strings.json = 1;
                        strings.parsed = Some(Box::new(Shape::sample(&parsed, depth + 1, visits)?));
                    }
                }
                s.string = Some(strings);
            }
            Value::Array(items) => {
                let mut item = Shape::default();
                for v in items.iter().take(SAMPLED_ITEMS) {
                    item.merge(Shape::sample(v, depth + 1, visits)?);
                }
                s.array = Some(Box::new(item));
            }
            Value::Object(map) => {
                let tag = match map.get("type") {
                    Some(Value::String(t)) if t.chars().count() <= MAX_LITERAL_CHARS => t.clone(),
                    _ => String::new(),
                };
                let mut fields = Fields { n: 1, ..Fields::default() };
                for (k, v) in map {
                    if fields.fields.len() == MAX_FIELDS {
                        fields.more = true;
                        break;
                    }
                    fields.fields.insert(k.clone(), Shape::sample(v, depth + 1, visits)?);
                }
                s.objects.insert(tag, fields);
            }
        }
        Some(s)
    }

    /// Adds what `other` saw to what this one saw.
    pub fn merge(&mut self, other: Shape) {
        self.n += other.n;
        self.null += other.null;
        self.boolean += other.boolean;
        self.number += other.number;
        match (&mut self.string, other.string) {
            (Some(a), Some(b)) => a.merge(b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
        match (&mut self.array, other.array) {
            (Some(a), Some(b)) => a.merge(*b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
        for (tag, fields) in other.objects {
            let tag = if self.objects.contains_key(&tag) || self.objects.len() < MAX_VARIANTS {
                tag
            } else {
                String::new()
            };
            match self.objects.get_mut(&tag) {
                Some(mine) => mine.merge(fields),
                None => {
                    self.objects.insert(tag, fields);
                }
            }
        }
    }

    /// Shapes in this tree, for the node budget.
    fn nodes(&self) -> usize {
        let strings = self.string.as_ref().and_then(|s| s.parsed.as_ref()).map_or(0, |p| p.nodes());
        let array = self.array.as_ref().map_or(0, |a| a.nodes());
        let objects: usize = self.objects.values().flat_map(|f| f.fields.values()).map(Shape::nodes).sum();
        1 + strings + array + objects
    }

    fn depth(&self) -> usize {
        let strings = self.string.as_ref().and_then(|s| s.parsed.as_ref()).map_or(0, |p| p.depth());
        let array = self.array.as_ref().map_or(0, |a| a.depth());
        let objects = self.objects.values().flat_map(|f| f.fields.values()).map(Shape::depth).max();
        1 + strings.max(array).max(objects.unwrap_or(0))
    }

    /// The TypeScript type of what was seen, indented for a namespace block at `indent`.
    pub fn typescript(&self, indent: usize) -> String {
        let mut out = String::new();
        self.render(indent, &mut out);
        out
    }

    fn render(&self, indent: usize, out: &mut String) {
        let mut first = true;
        let mut member = |out: &mut String| {
            if !std::mem::take(&mut first) {
                out.push_str(" | ");
            }
        };
        for (tag, fields) in &self.objects {
            member(out);
            fields.render(tag, indent, out);
        }
        if let Some(item) = &self.array {
            member(out);
            if item.n == 0 {
                out.push_str("unknown[]");
            } else if item.members() > 1 {
                out.push('(');
                item.render(indent, out);
                out.push_str(")[]");
            } else {
                item.render(indent, out);
                out.push_str("[]");
            }
        }
        if let Some(s) = &self.string {
            member(out);
            match s.literals() {
                Some(values) => out.push_str(&values.join(" | ")),
                None => out.push_str("string"),
            }
        }
        for (count, keyword) in [(self.number, "number"), (self.boolean, "boolean"), (self.null, "null")] {
            if count > 0 {
                member(out);
                out.push_str(keyword);
            }
        }
        if first {
            out.push_str("unknown");
        }
    }

    /// Members of the rendered union, to know when an array's item needs parentheses.
    fn members(&self) -> usize {
        let strings = self.string.as_ref().map_or(0, |s| s.literals().map_or(1, |l| l.len()));
        self.objects.len()
            + usize::from(self.array.is_some())
            + strings
            + [self.number, self.boolean, self.null].iter().filter(|&&c| c > 0).count()
    }

    /// When every value here was a text holding JSON: the parsed values' type, on one line.
    pub fn json_text(&self) -> Option<String> {
        let s = self.string.as_ref()?;
        let only_strings = s.n == self.n && self.objects.is_empty() && self.array.is_none();
        let parsed = s.parsed.as_ref().filter(|_| only_strings && s.json == s.n)?;
        Some(parsed.typescript(0).split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

impl Strings {
    fn merge(&mut self, other: Strings) {
        self.n += other.n;
        self.values = match (self.values.take(), other.values) {
            (Some(mut a), Some(b)) => {
                for (v, c) in b {
                    *a.entry(v).or_default() += c;
                }
                (a.len() <= MAX_LITERALS).then_some(a)
            }
            _ => None,
        };
        self.json += other.json;
        match (&mut self.parsed, other.parsed) {
            (Some(a), Some(b)) => a.merge(*b),
            (a @ None, b) => *a = b,
            (Some(_), None) => {}
        }
    }

    /// The values as literal types, when the evidence that they are the only ones is strong:
    /// every string here was one of at most [`MAX_LITERALS`] values, and each value came at
    /// least four times on average (and eight results in all).
    fn literals(&self) -> Option<Vec<String>> {
        let values = self.values.as_ref()?;
        let strong = self.n >= 8 && self.n >= 4 * values.len() as u64 && self.json == 0;
        strong.then(|| values.keys().map(|v| Value::String(v.clone()).to_string()).collect())
    }
}

impl Fields {
    fn merge(&mut self, other: Fields) {
        self.n += other.n;
        self.more |= other.more;
        for (k, v) in other.fields {
            let room = self.fields.len() < MAX_FIELDS;
            match self.fields.get_mut(&k) {
                Some(mine) => mine.merge(v),
                None if room => {
                    self.fields.insert(k, v);
                }
                None => self.more = true,
            }
        }
    }

    fn render(&self, tag: &str, indent: usize, out: &mut String) {
        if self.fields.is_empty() && !self.more {
            out.push_str("{}");
            return;
        }
        let mut props = Vec::with_capacity(self.fields.len() + 1);
        for (k, v) in &self.fields {
            let key = if is_identifier(k) { k.clone() } else { property_key(k) };
            let optional = if v.n < self.n { "?" } else { "" };
            let ty = if k == "type" && !tag.is_empty() {
                Value::String(tag.into()).to_string()
            } else {
                v.typescript(indent + 1)
            };
            props.push(format!("{key}{optional}: {ty};"));
        }
        if self.more {
            props.push("[key: string]: unknown;".into());
        }
        let one_line =
            props.iter().all(|p| !p.contains('\n')) && props.iter().map(String::len).sum::<usize>() < 80;
        if one_line {
            out.push_str("{ ");
            out.push_str(&props.join(" "));
            out.push_str(" }");
        } else {
            out.push_str("{\n");
            for p in props {
                push_indent(indent + 1, out);
                out.push_str(&p);
                out.push('\n');
            }
            push_indent(indent, out);
            out.push('}');
        }
    }
}

fn push_indent(indent: usize, out: &mut String) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

/// One tool's learned shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Learned {
    /// Results folded in.
    observations: u64,
    /// Results not learned from because they were too big to look at or would have grown
    /// the shape past its budget.
    #[serde(default, skip_serializing_if = "is_zero")]
    skipped: u64,
    shape: Shape,
    /// The shape's TypeScript, as last rendered, to tell whether a result changed it.
    #[serde(skip)]
    rendered: Option<String>,
}

impl Learned {
    fn declaration(&self) -> ResultType {
        let results = if self.observations == 1 { "result" } else { "results" };
        let mut doc = vec![
            "Learned from the results this tool returned: its server declares no output schema.".to_string(),
            format!("@observed {} {results}", self.observations),
        ];
        if let Some(json) = self.shape.json_text() {
            doc.push(format!("The text is JSON; `JSON.parse` of it gives `{}`.", cut(&json, 400)));
        }
        ResultType { typescript: self.shape.typescript(1), doc }
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max).collect();
    s.push('…');
    s
}

/// The file of one server's learned shapes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    tools: BTreeMap<String, Learned>,
}

const VERSION: u32 = 1;

/// The learned shapes of one server's tools, kept in memory and, when given a path, in a file.
pub struct ShapeStore {
    path: Option<PathBuf>,
    state: Mutex<StoreState>,
}

struct StoreState {
    tools: BTreeMap<String, Learned>,
    /// Why the file was not read (it stays untouched, and learning stays in memory).
    problem: Option<String>,
    dirty: bool,
    flush_scheduled: bool,
}

impl std::fmt::Debug for ShapeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShapeStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ShapeStore {
    /// Shapes kept in memory only.
    pub fn in_memory() -> Self {
        ShapeStore::with(None, BTreeMap::new(), None)
    }

    /// Shapes kept in `path`, reading what it holds. A missing file starts empty; a file that
    /// cannot be read or parsed is reported by [`ShapeStore::problem`] and never written.
    pub fn open(path: PathBuf) -> Self {
        match read(&path) {
            Ok(tools) => ShapeStore::with(Some(path), tools, None),
            Err(problem) => {
                let problem = format!(
                    "{}: {problem}; its learned result types are ignored and new ones are kept in \
                     memory only (move the file away to start it again)",
                    path.display()
                );
                ShapeStore::with(Some(path), BTreeMap::new(), Some(problem))
            }
        }
    }

    fn with(path: Option<PathBuf>, tools: BTreeMap<String, Learned>, problem: Option<String>) -> Self {
        ShapeStore {
            path,
            state: Mutex::new(StoreState { tools, problem, dirty: false, flush_scheduled: false }),
        }
    }

    /// Why the file is not used, if it is not.
    pub fn problem(&self) -> Option<String> {
        self.state.lock().expect("shape store lock").problem.clone()
    }

    /// The learned type of `tool`, if it returned anything yet.
    pub fn declaration(&self, tool: &str) -> Option<ResultType> {
        let state = self.state.lock().expect("shape store lock");
        state.tools.get(tool).filter(|l| l.observations > 0).map(Learned::declaration)
    }

    /// Folds `value`, a result of `tool`, into its shape. True when the learned TypeScript
    /// type changed (the count of observations aside), so declarations should be made again.
    /// Inside a tokio runtime, the file is written a moment later, off the caller's path.
    pub fn observe(self: &Arc<Self>, tool: &str, value: &Value) -> bool {
        let seen = Shape::of(value);
        let changed = {
            let mut state = self.state.lock().expect("shape store lock");
            if !state.tools.contains_key(tool) && state.tools.len() >= MAX_TOOLS {
                return false;
            }
            let learned = state.tools.entry(tool.to_string()).or_default();
            if learned.rendered.is_none() && learned.observations > 0 {
                learned.rendered = Some(learned.shape.typescript(1));
            }
            let before = learned.rendered.take();
            match seen {
                // Merging adds at most the new shape's nodes: most results merge in place,
                // and only one that might pass the budget is tried on a copy first.
                Some(seen) if learned.shape.nodes() + seen.nodes() <= MAX_NODES => {
                    learned.shape.merge(seen);
                    learned.observations += 1;
                }
                Some(seen) => {
                    let mut merged = learned.shape.clone();
                    merged.merge(seen);
                    if merged.nodes() <= MAX_NODES {
                        learned.shape = merged;
                        learned.observations += 1;
                    } else {
                        learned.skipped += 1;
                    }
                }
                None => learned.skipped += 1,
            }
            let after = (learned.observations > 0).then(|| learned.shape.typescript(1));
            let changed = before != after;
            learned.rendered = after;
            state.dirty = true;
            changed
        };
        self.schedule_flush();
        changed
    }

    fn schedule_flush(self: &Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        {
            let mut state = self.state.lock().expect("shape store lock");
            if state.flush_scheduled || state.problem.is_some() {
                return;
            }
            state.flush_scheduled = true;
        }
        let store = Arc::clone(self);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    tokio::time::sleep(FLUSH_DELAY).await;
                    let _ = tokio::task::spawn_blocking(move || store.flush()).await;
                });
            }
            Err(_) => {
                let _ = store.flush();
            }
        }
    }

    /// Writes the shapes to the file now, if anything changed: to a temporary file beside it,
    /// then renamed over it, so a reader never sees half a file.
    pub fn flush(&self) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let text = {
            let mut state = self.state.lock().expect("shape store lock");
            state.flush_scheduled = false;
            if !state.dirty || state.problem.is_some() {
                return Ok(());
            }
            state.dirty = false;
            let file = File { version: VERSION, tools: state.tools.clone() };
            serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?
        };
        write_atomically(path, text.as_bytes(), false).map_err(|e| {
            let message = format!("cannot write {}: {e}", path.display());
            tracing::warn!(error = %message, "learned result types not saved");
            self.state.lock().expect("shape store lock").dirty = true;
            message
        })
    }
}

impl Drop for ShapeStore {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn read(path: &Path) -> Result<BTreeMap<String, Learned>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let file: File = serde_json::from_str(&text).map_err(|e| format!("not a learned-shapes file: {e}"))?;
    if file.version != VERSION {
        return Err(format!("version {} is not {VERSION}", file.version));
    }
    for (tool, learned) in &file.tools {
        if learned.shape.depth() > 2 * MAX_DEPTH + 2 || learned.shape.nodes() > MAX_NODES {
            return Err(format!("the shape of {tool:?} is bigger than any this version learns"));
        }
    }
    Ok(file.tools)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so a reader
/// never sees half a file. With `private`, the file is readable by its owner only (mode 0600)
/// from the moment it exists: tokens are written this way.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let mode = if private { 0o600 } else { 0o644 };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            // A temporary file left by an earlier process keeps its mode when reopened.
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.write_all(bytes)
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn learn(values: &[Value]) -> Shape {
        let mut s = Shape::default();
        for v in values {
            s.merge(Shape::of(v).unwrap());
        }
        s
    }

    #[test]
    fn kinds_that_differ_make_a_union_and_missing_fields_are_optional() {
        let s = learn(&[json!({"name": "a", "size": 1}), json!({"name": "b", "tags": ["x"]}), json!(null)]);
        assert_eq!(s.typescript(0), "{ name: string; size?: number; tags?: string[]; } | null");
    }

    #[test]
    fn objects_are_told_apart_by_their_type_field() {
        let s = learn(&[json!([
            {"type": "text", "text": "hi"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"}
        ])]);
        assert_eq!(
            s.typescript(0),
            "({ data: string; mimeType: string; type: \"image\"; } | { text: string; type: \"text\"; })[]"
        );
    }

    #[test]
    fn literal_unions_need_strong_evidence() {
        let few: Vec<Value> = ["ok", "error", "ok"].iter().map(|s| json!({ "status": s })).collect();
        assert_eq!(learn(&few).typescript(0), "{ status: string; }");
        let many: Vec<Value> = (0..8)
            .map(|i| {
                let s = ["ok", "error"][i % 2];
                json!({ "status": s })
            })
            .collect();
        assert_eq!(learn(&many).typescript(0), "{ status: \"error\" | \"ok\"; }");
        let varied: Vec<Value> = (0..40).map(|i| json!(format!("name {i}"))).collect();
        assert_eq!(learn(&varied).typescript(0), "string");
    }

    #[test]
    fn a_text_that_is_json_is_noted() {
        let s = learn(&[json!("{\"rows\": [1, 2]}"), json!("{\"rows\": [], \"next\": \"b\"}")]);
        assert_eq!(s.typescript(0), "string");
        assert_eq!(s.json_text().as_deref(), Some("{ next?: string; rows: number[]; }"));
        assert_eq!(learn(&[json!("{\"a\": 1}"), json!("plain")]).json_text(), None);
    }

    #[test]
    fn big_and_deep_results_are_bounded() {
        let wide: serde_json::Map<String, Value> = (0..100).map(|i| (format!("f{i:03}"), json!(i))).collect();
        let s = learn(&[Value::Object(wide)]);
        assert_eq!(s.objects[""].fields.len(), MAX_FIELDS);
        assert!(s.typescript(0).ends_with("  [key: string]: unknown;\n}"), "{}", s.typescript(0));
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!({ "a": deep });
        }
        assert_eq!(learn(&[deep]).depth(), MAX_DEPTH + 1);
        let huge = json!((0..1000).map(|i| json!({"a": [i, i, i], "b": {"c": [i, i]}})).collect::<Vec<_>>());
        assert!(Shape::of(&huge).is_some(), "arrays are sampled");
        let rows: Vec<Value> = (0..16).map(|_| json!((0..100).collect::<Vec<i32>>())).collect();
        let many_visits = json!((0..16).map(|_| json!(rows.clone())).collect::<Vec<_>>());
        assert!(Shape::of(&many_visits).is_none(), "past the visit budget nothing is learned");
    }

    #[test]
    fn the_store_keeps_a_file_and_leaves_a_bad_one_alone() {
        let dir = std::env::temp_dir().join(format!("codemode-shapes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("srv.json");
        let store = Arc::new(ShapeStore::open(path.clone()));
        assert!(store.observe("t", &json!("x")), "the first result gives a type");
        assert!(!store.observe("t", &json!("y")), "the same type again");
        assert!(store.observe("t", &json!(1)));
        store.flush().unwrap();
        drop(store);
        let again = ShapeStore::open(path.clone());
        assert_eq!(again.problem(), None);
        let d = again.declaration("t").unwrap();
        assert_eq!(d.typescript, "string | number");
        assert_eq!(d.doc[1], "@observed 3 results");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file is left");

        std::fs::write(&path, "{ not json").unwrap();
        let bad = Arc::new(ShapeStore::open(path.clone()));
        assert!(bad.problem().unwrap().contains("not a learned-shapes file"), "{:?}", bad.problem());
        assert!(bad.observe("t", &json!(true)));
        assert_eq!(bad.declaration("t").unwrap().typescript, "boolean");
        bad.flush().unwrap();
        drop(bad);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json", "a bad file is never overwritten");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
