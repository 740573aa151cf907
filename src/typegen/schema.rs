//! JSON Schema → [`Ty`]. Handles drafts 07 and 2020-12 and OpenAPI's `nullable`. Every `$ref`
//! target becomes a named type, so recursion ends at a name and shared parts print once.
//! What TypeScript cannot say is widened, never narrowed: a value the schema accepts always
//! fits the type. The widenings:
//! * `not` is dropped; `if` is dropped, and `then`/`else` only count when both are present
//!   (the value then fits one of them);
//! * `patternProperties` become an index signature (TypeScript has no pattern keys);
//! * a `$ref` to another document, a dangling `$ref`, a schema that is not a schema, or
//!   nesting past [`MAX_DEPTH`] become `unknown` with a comment saying why;
//! * named types that would refer to themselves with no object or array in between (which
//!   TypeScript rejects) become `unknown` with a comment.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::names::{type_name, Names};
use super::ts::{text_lines, Object, Prop, Ty};
use super::Problem;

/// How deep a schema may nest before the rest is `unknown`; keeps hostile input off the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// A schema document: a tool's input or output schema. `$ref`s resolve within it.
pub(crate) struct Doc<'a> {
    pub(crate) root: &'a Value,
    pub(crate) tool: String,
    pub(crate) which: &'static str,
    /// The prefix of the tool's type names (`GetRows`), used when a name is taken.
    pub(crate) prefix: String,
    /// Pointers that some `$ref` targets: converting them yields the name.
    targets: BTreeSet<String>,
}

impl<'a> Doc<'a> {
    pub(crate) fn new(root: &'a Value, tool: &str, which: &'static str, prefix: &str) -> Self {
        let mut doc = Doc { root, tool: tool.into(), which, prefix: prefix.into(), targets: BTreeSet::new() };
        let mut refs = Vec::new();
        collect_refs(root, 0, &mut refs);
        for r in refs {
            if let Ok(p) = resolve(root, r) {
                doc.targets.insert(p);
            }
        }
        doc
    }
}

/// The JSON pointer a `$ref` names in the document `root`: `#`, `#/json/pointer` (percent-
/// encoded or not), `#anchor` (`$anchor`, or a draft-07 `$id: "#anchor"`), or any of these
/// after the document's own `$id`. Other documents are not followed.
pub(crate) fn resolve(root: &Value, reference: &str) -> Result<String, String> {
    let local = match reference.find('#') {
        Some(0) => reference,
        Some(i) if root.get("$id").and_then(Value::as_str) == Some(&reference[..i]) => &reference[i..],
        _ => return Err(format!("$ref {reference:?} points to another document, which is not followed")),
    };
    let fragment = percent_decode(&local[1..]);
    if fragment.is_empty() {
        return Ok(String::new());
    }
    if fragment.starts_with('/') {
        return match root.pointer(&fragment) {
            Some(_) => Ok(fragment),
            None => Err(format!("$ref {reference:?} points to nothing in this schema")),
        };
    }
    find_anchor(root, &fragment, &mut String::new(), 0)
        .ok_or_else(|| format!("$ref {reference:?} names an anchor this schema does not have"))
}

fn collect_refs<'a>(v: &'a Value, depth: usize, out: &mut Vec<&'a str>) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            for (k, child) in m {
                // Values of `const`, `enum`, `default` and `examples` are data, not schemas.
                if !matches!(k.as_str(), "const" | "enum" | "default" | "examples") {
                    collect_refs(child, depth + 1, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|c| collect_refs(c, depth + 1, out)),
        _ => {}
    }
}

fn find_anchor(v: &Value, anchor: &str, path: &mut String, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    match v {
        Value::Object(m) => {
            let named = m.get("$anchor").and_then(Value::as_str) == Some(anchor)
                || m.get("$id").and_then(Value::as_str).and_then(|id| id.strip_prefix('#')) == Some(anchor);
            if named {
                return Some(path.clone());
            }
            for (k, child) in m {
                let len = path.len();
                push_segment(path, k);
                let found = find_anchor(child, anchor, path, depth + 1);
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, c)| {
            let len = path.len();
            push_segment(path, &i.to_string());
            let found = find_anchor(c, anchor, path, depth + 1);
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends `/segment` with JSON-pointer escaping.
fn push_segment(path: &mut String, segment: &str) {
    path.push('/');
    path.push_str(&segment.replace('~', "~0").replace('/', "~1"));
}

/// A named type waiting to be printed.
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) doc: Vec<String>,
    pub(crate) ty: Ty,
    /// The tool (index) that owns it.
    pub(crate) tool: usize,
}

/// The state of one namespace's generation: names in use, named types, problems.
#[derive(Default)]
pub(crate) struct Gen {
    pub(crate) taken: Names,
    pub(crate) named: Vec<Named>,
    /// (doc, pointer) → index into `named`.
    by_target: HashMap<(usize, String), usize>,
    pending: Vec<(usize, String, usize)>,
    /// Named types referred to with nothing deferring the reference: (from, to).
    edges: Vec<(usize, usize)>,
    pub(crate) problems: Vec<Problem>,
}

/// Where conversion is: the document, the pointer, and whether a reference here is immediate
/// (not under an object property or array element, so TypeScript resolves it eagerly).
#[derive(Clone, Copy)]
struct At<'p> {
    doc: usize,
    path: &'p str,
    immediate: bool,
    depth: usize,
    owner: usize,
}

/// The nodes of `next` that lie on a cycle: in a strongly connected component of more than one
/// node, or with an edge to themselves.
fn cyclic_nodes(next: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = next.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut counter = 0;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // Each frame: a node and how many of its edges have been followed.
        let mut frames = vec![(root, 0usize)];
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut edge)) = frames.last_mut() {
            if let Some(&w) = next[v].get(*edge) {
                *edge += 1;
                if index[w] == UNSEEN {
                    index[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    frames.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 || next[v].contains(&v) {
                    out.extend(component);
                }
            }
        }
    }
    out
}

impl Gen {
    pub(crate) fn claim(&mut self, wanted: &str, prefix: &str) -> String {
        self.taken.claim(wanted, prefix)
    }

    /// Converts the root of `docs[doc]` into the named type `name` (already claimed), then
    /// every named type it pulls in.
    pub(crate) fn root(&mut self, docs: &[Doc<'_>], doc: usize, name: String, tool: usize) -> usize {
        let index = self.named.len();
        self.named.push(Named { name, doc: Vec::new(), ty: Ty::Unknown, tool });
        self.by_target.insert((doc, String::new()), index);
        self.pending.push((doc, String::new(), index));
        while let Some((d, pointer, idx)) = self.pending.pop() {
            let schema = docs[d].root.pointer(&pointer).expect("resolved pointers exist");
            let at = At { doc: d, path: &pointer, immediate: true, depth: 0, owner: idx };
            let ty = self.schema_inner(docs, schema, at);
            self.named[idx].ty = ty;
            self.named[idx].doc = doc_lines(schema);
        }
        index
    }

    /// Replaces each named type that refers to itself immediately with `unknown`: the types
    /// on a cycle of immediate references, found as strongly connected components (Tarjan's
    /// algorithm, without recursion, so a chain of 100,000 `$ref`s is linear work and no stack).
    pub(crate) fn break_cycles(&mut self) {
        let n = self.named.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(from, to) in &self.edges {
            next[from].push(to);
        }
        for i in cyclic_nodes(&next) {
            self.named[i].ty = Ty::Unknown.note("refers to itself with no object or array in between");
        }
    }

    fn problem(&mut self, docs: &[Doc<'_>], at: At<'_>, message: String) -> Ty {
        let doc = &docs[at.doc];
        self.problems.push(Problem {
            tool: doc.tool.clone(),
            which: doc.which,
            path: if at.path.is_empty() { "/".into() } else { at.path.to_string() },
            message: message.clone(),
        });
        Ty::Unknown.note(message)
    }

    fn reference(&mut self, docs: &[Doc<'_>], at: At<'_>, pointer: String) -> Ty {
        let index = match self.by_target.get(&(at.doc, pointer.clone())) {
            Some(&i) => i,
            None => {
                let doc = &docs[at.doc];
                let name = self.claim(&pointer_name(&pointer), &doc.prefix);
                let i = self.named.len();
                self.named.push(Named { name, doc: Vec::new(), ty: Ty::Unknown, tool: at.owner_tool(self) });
                self.by_target.insert((at.doc, pointer.clone()), i);
                self.pending.push((at.doc, pointer, i));
                i
            }
        };
        if at.immediate {
            self.edges.push((at.owner, index));
        }
        Ty::Ref(self.named[index].name.clone())
    }

    /// A sub-schema at `path`: its name if it is a `$ref` target, else its type.
    fn schema(&mut self, docs: &[Doc<'_>], schema: &Value, at: At<'_>) -> Ty {
        if docs[at.doc].targets.contains(at.path) {
            return self.reference(docs, at, at.path.to_string());
        }
        self.schema_inner(docs, schema, at)
    }

    fn schema_inner(&mut self, docs: &[Doc<'_>], schema: &Value, at: At<'_>) -> Ty {
        if at.depth > MAX_DEPTH {
            return self.problem(docs, at, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let m = match schema {
            Value::Bool(true) => return Ty::Unknown,
            Value::Bool(false) => return Ty::Never,
            Value::Object(m) => m,
            _ => return self.problem(docs, at, "a schema must be an object or a boolean".into()),
        };
        let mut parts = Vec::new();
        if let Some(r) = m.get("$ref") {
            parts.push(match r.as_str().map(|r| resolve(docs[at.doc].root, r)) {
                Some(Ok(pointer)) => self.reference(docs, at, pointer),
                Some(Err(why)) => self.problem(docs, at, why),
                None => self.problem(docs, at, "$ref must be a string".into()),
            });
        }
        if let Some(base) = self.base(docs, m, at) {
            parts.push(base);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            let Some(members) = m.get(key) else { continue };
            let Value::Array(members) = members else {
                parts.push(self.problem(docs, at, format!("{key} must be an array of schemas")));
                continue;
            };
            let mut tys = Vec::with_capacity(members.len());
            for (i, s) in members.iter().enumerate() {
                let path = child(at.path, &[key, &i.to_string()]);
                tys.push(self.schema(docs, s, at.enter(&path, at.immediate)));
            }
            parts.push(if key == "allOf" { Ty::intersection(tys) } else { Ty::union(tys) });
        }
        if let (Some(then), Some(otherwise)) = (m.get("then"), m.get("else")) {
            let then_path = child(at.path, &["then"]);
            let else_path = child(at.path, &["else"]);
            let a = self.schema(docs, then, at.enter(&then_path, at.immediate));
            let b = self.schema(docs, otherwise, at.enter(&else_path, at.immediate));
            parts.push(Ty::union(vec![a, b]));
        }
        let ty = Ty::intersection(parts);
        if m.get("nullable") == Some(&Value::Bool(true)) {
            Ty::union(vec![ty, Ty::Keyword("null")])
        } else {
            ty
        }
    }

    /// The type from `const`, `enum` or `type` (or what `properties`/`items` imply).
    fn base(&mut self, docs: &[Doc<'_>], m: &Map<String, Value>, at: At<'_>) -> Option<Ty> {
        if let Some(c) = m.get("const") {
            return Some(literal(c));
        }
        if let Some(e) = m.get("enum") {
            return Some(match e {
                Value::Array(values) => Ty::union(values.iter().map(literal).collect()),
                _ => self.problem(docs, at, "enum must be an array".into()),
            });
        }
        match m.get("type") {
            Some(Value::String(t)) => Some(self.of_type(docs, m, t, at)),
            Some(Value::Array(types)) => {
                let mut union = Vec::new();
                for t in types {
                    union.push(match t.as_str() {
                        Some(t) => self.of_type(docs, m, t, at),
                        None => self.problem(docs, at, "type must hold type names".into()),
                    });
                }
                Some(Ty::union(union))
            }
            Some(_) => Some(self.problem(docs, at, "type must be a string or an array".into())),
            None => {
                let object_words = ["properties", "additionalProperties", "patternProperties", "required"];
                if object_words.iter().any(|k| m.contains_key(*k)) {
                    Some(self.object(docs, m, at))
                } else if m.contains_key("items") || m.contains_key("prefixItems") {
                    Some(self.array(docs, m, at))
                } else {
                    None
                }
            }
        }
    }

    fn of_type(&mut self, docs: &[Doc<'_>], m: &Map<String, Value>, t: &str, at: At<'_>) -> Ty {
        match t {
            "string" => Ty::Keyword("string"),
            "number" | "integer" => Ty::Keyword("number"),
            "boolean" => Ty::Keyword("boolean"),
            "null" => Ty::Keyword("null"),
            "object" => self.object(docs, m, at),
            "array" => self.array(docs, m, at),
            other => self.problem(docs, at, format!("unknown type {other:?}")),
        }
    }

    fn object(&mut self, docs: &[Doc<'_>], m: &Map<String, Value>, at: At<'_>) -> Ty {
        let required: Vec<&str> = match m.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                self.problem(docs, at, "required must be an array of names".into());
                Vec::new()
            }
        };
        let mut o = Object::default();
        match m.get("properties") {
            None => {}
            Some(Value::Object(props)) => {
                for (key, s) in props {
                    let path = child(at.path, &["properties", key]);
                    let ty = self.schema(docs, s, at.enter(&path, false));
                    o.props.push(Prop {
                        key: key.clone(),
                        optional: !required.contains(&key.as_str()),
                        ty,
                        doc: doc_lines(s),
                    });
                }
            }
            Some(_) => {
                self.problem(docs, at, "properties must be an object".into());
            }
        }
        for key in required {
            if !o.props.iter().any(|p| p.key == key) {
                o.props.push(Prop { key: key.into(), optional: false, ty: Ty::Unknown, doc: Vec::new() });
            }
        }
        let mut index = Vec::new();
        let mut index_doc = Vec::new();
        let mut closed = false;
        match m.get("additionalProperties") {
            None => {}
            Some(Value::Bool(false)) => closed = true,
            Some(s) => {
                let path = child(at.path, &["additionalProperties"]);
                index.push(self.schema(docs, s, at.enter(&path, false)));
            }
        }
        if let Some(patterns) = m.get("patternProperties") {
            match patterns {
                Value::Object(patterns) => {
                    for (pattern, s) in patterns {
                        let path = child(at.path, &["patternProperties", pattern]);
                        index.push(self.schema(docs, s, at.enter(&path, false)));
                        index_doc.push(format!("Keys matching /{pattern}/."));
                    }
                }
                _ => {
                    self.problem(docs, at, "patternProperties must be an object".into());
                }
            }
        }
        if index.is_empty() && o.props.is_empty() {
            // `{}` would mean "anything but null" in TypeScript; an object schema with no
            // properties means any object (or, closed, only the empty one).
            let value = if closed { Ty::Never } else { Ty::Unknown };
            o.index = Some((Box::new(value), index_doc));
        } else if !index.is_empty() {
            // TypeScript checks every declared property against the index signature, so it
            // must admit their types too (and `undefined` for optional ones).
            let mut all = index;
            all.extend(o.props.iter().map(|p| p.ty.clone()));
            if o.props.iter().any(|p| p.optional) {
                all.push(Ty::Keyword("undefined"));
            }
            o.index = Some((Box::new(Ty::union(all)), index_doc));
        }
        Ty::Object(o)
    }

    fn array(&mut self, docs: &[Doc<'_>], m: &Map<String, Value>, at: At<'_>) -> Ty {
        // 2020-12: `prefixItems` + `items` (the rest). Draft-07: `items: [..]` + `additionalItems`.
        let (prefix, prefix_key, rest, rest_key) = match (m.get("prefixItems"), m.get("items")) {
            (Some(Value::Array(p)), rest) => (Some(p), "prefixItems", rest, "items"),
            (_, Some(Value::Array(p))) => (Some(p), "items", m.get("additionalItems"), "additionalItems"),
            (_, items) => (None, "", items, "items"),
        };
        let rest_path = child(at.path, &[rest_key]);
        let rest_ty = match rest {
            None | Some(Value::Bool(true)) => Some(Ty::Unknown),
            Some(Value::Bool(false)) => None,
            Some(s) => Some(self.schema(docs, s, at.enter(&rest_path, false))),
        };
        let Some(prefix) = prefix.filter(|p| !p.is_empty()) else {
            return Ty::Array(Box::new(rest_ty.unwrap_or(Ty::Never)));
        };
        let mut items = Vec::new();
        for (i, s) in prefix.iter().enumerate() {
            let path = child(at.path, &[prefix_key, &i.to_string()]);
            items.push(self.schema(docs, s, at.enter(&path, false)));
        }
        let min = m.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        Ty::Tuple { required: min.min(items.len()), items, rest: rest_ty.map(Box::new) }
    }
}

impl<'p> At<'p> {
    fn enter<'q>(&self, path: &'q str, immediate: bool) -> At<'q> {
        At { doc: self.doc, path, immediate, depth: self.depth + 1, owner: self.owner }
    }

    fn owner_tool(&self, g: &Gen) -> usize {
        g.named[self.owner].tool
    }
}

fn child(path: &str, segments: &[&str]) -> String {
    let mut p = path.to_string();
    for s in segments {
        push_segment(&mut p, s);
    }
    p
}

/// A type name for a `$ref` target: its last meaningful pointer segment, PascalCase.
fn pointer_name(pointer: &str) -> String {
    let segments: Vec<String> =
        pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let last = segments.last().map(String::as_str).unwrap_or("");
    let name = if last.chars().all(|c| c.is_ascii_digit()) && segments.len() >= 2 {
        format!("{}{last}", type_name(&segments[segments.len() - 2]))
    } else {
        type_name(last)
    };
    if name.is_empty() {
        "Schema".into()
    } else {
        name
    }
}

/// A JSON value as a literal type.
fn literal(v: &Value) -> Ty {
    match v {
        Value::Null => Ty::Keyword("null"),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Ty::Literal(v.to_string()),
        Value::Array(items) => {
            Ty::Tuple { required: items.len(), items: items.iter().map(literal).collect(), rest: None }
        }
        Value::Object(m) => Ty::Object(Object {
            props: m
                .iter()
                .map(|(k, v)| Prop { key: k.clone(), optional: false, ty: literal(v), doc: Vec::new() })
                .collect(),
            index: None,
        }),
    }
}

/// JSDoc lines for a schema: title, description, then one tag per constraint the type
/// cannot carry, and a note for each keyword the type leaves out.
pub(crate) fn doc_lines(schema: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let Value::Object(m) = schema else { return lines };
    let title = m.get("title").and_then(Value::as_str);
    let description = m.get("description").and_then(Value::as_str);
    if let Some(t) = title {
        if description.is_none_or(|d| !d.starts_with(t)) {
            text_lines(t, &mut lines);
        }
    }
    if let Some(d) = description {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        text_lines(d, &mut lines);
    }
    let integer = match m.get("type") {
        Some(Value::String(t)) => t == "integer",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
        _ => false,
    };
    let mut tags = Vec::new();
    if integer {
        tags.push("@integer".to_string());
    }
    for key in [
        "default",
        "format",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "contentMediaType",
        "contentEncoding",
    ] {
        if let Some(v) = m.get(key) {
            let text = match v {
                Value::String(s) if key != "default" => s.clone(),
                v => v.to_string(),
            };
            tags.push(format!("@{key} {text}"));
        }
    }
    if m.get("deprecated") == Some(&Value::Bool(true)) {
        tags.push("@deprecated".into());
    }
    if let Some(Value::Array(examples)) = m.get("examples") {
        tags.extend(examples.iter().map(|e| format!("@example {e}")));
    }
    if m.contains_key("not") {
        tags.push("@remarks Not expressed in the type: `not`.".into());
    }
    if m.contains_key("if") && !(m.contains_key("then") && m.contains_key("else")) {
        tags.push("@remarks Not expressed in the type: `if`/`then`/`else`.".into());
    }
    if !tags.is_empty() && !lines.is_empty() {
        lines.push(String::new());
    }
    lines.extend(tags);
    lines
}

#[cfg(test)]
mod cycle_tests {
    #[test]
    fn cyclic_nodes_are_exactly_those_on_a_cycle() {
        // 0 → 1 → 2 → 0 is a cycle; 3 → 3 is one; 4 → 0 and 5 are not.
        let next = vec![vec![1], vec![2], vec![0], vec![3], vec![0], vec![]];
        let mut got = super::cyclic_nodes(&next);
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3]);
        // A chain of 100,000 is linear and needs no stack.
        let chain: Vec<Vec<usize>> =
            (0..100_000).map(|i| if i + 1 < 100_000 { vec![i + 1] } else { vec![] }).collect();
        assert!(super::cyclic_nodes(&chain).is_empty());
    }
}
