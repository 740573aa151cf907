//! Tool schemas → TypeScript declarations.
//!
//! Pure and deterministic: the same schemas give byte-identical text, with no I/O. The crate's
//! build script compiles this module too (through `#[path]`), so it depends on nothing but
//! `std` and `serde_json`.
//!
//! Each namespace becomes one `declare namespace` block. For each tool it holds the function
//! (`function getRows(args: GetRowsInput): Promise<GetRowsOutput>`, with the tool's description
//! as JSDoc), its input and output types, and a named type for every `$ref` target. What JSON
//! Schema can say and TypeScript cannot is widened, never narrowed; each widening is listed in
//! `schema.rs` and leaves a comment in the output.

mod names;
mod schema;
mod ts;

use serde_json::Value;

pub(crate) use names::Names;
pub use names::{is_identifier, js_name, property_key, type_name};
pub(crate) use schema::resolve;

use schema::{Doc, Gen};
use ts::{doc_comment, pad, print, print_object, text_lines, Ty};

/// One tool as the generator sees it.
#[derive(Debug, Clone, Copy)]
pub struct ToolSchema<'a> {
    /// The name it was registered under (an MCP tool name, say).
    pub name: &'a str,
    /// The function name in the namespace (see [`js_name`]).
    pub js_name: &'a str,
    /// A human title, if the source gave one (MCP tools may).
    pub title: Option<&'a str>,
    /// What the tool does.
    pub description: &'a str,
    /// The input JSON Schema.
    pub input: &'a Value,
    /// The output JSON Schema; `None` gives an `unknown` result, or `untyped`.
    pub output: Option<&'a Value>,
    /// The result type when there is no `output` schema: TypeScript that the caller wrote
    /// (never a tool source's text), with its JSDoc lines.
    pub untyped: Option<(&'a str, &'a [String])>,
    /// Calls wait for a person's approval; the declaration says so.
    pub approval: bool,
}

/// Something in a schema that the generator could not express and widened to `unknown`: a
/// dangling `$ref`, a keyword of the wrong shape, nesting too deep. The build-time helper
/// turns these into errors; at run time they stay comments in the declarations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The tool's registered name.
    pub tool: String,
    /// `"input"` or `"output"`.
    pub which: &'static str,
    /// JSON pointer to the offending schema inside that tool's schema.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tool {:?}, {} schema at {}: {}", self.tool, self.which, self.path, self.message)
    }
}

/// The declarations of one namespace, whole and per tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Declarations {
    /// The namespace's JS name.
    pub namespace: String,
    /// Its one-line description.
    pub description: String,
    /// One entry per tool, in the order given.
    pub tools: Vec<ToolDeclaration>,
    /// What was widened because the schema was broken.
    pub problems: Vec<Problem>,
}

/// One tool's part of a namespace block.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDeclaration {
    /// The registered name.
    pub name: String,
    /// The function name.
    pub js_name: String,
    /// The name of its input type (`GetRowsInput`).
    pub input_type: String,
    /// The name of its output type (`GetRowsOutput`).
    pub output_type: String,
    /// `getRows(args: GetRowsInput): Promise<GetRowsOutput>`.
    pub signature: String,
    /// The first sentence of the description.
    pub summary: String,
    /// The function with JSDoc and every type it uses, indented for the namespace block.
    pub text: String,
}

/// Every `None` output schema converts as this: any value.
static ANY: Value = Value::Bool(true);

/// Generates the declarations of namespace `namespace` (a JS name) holding `tools`.
pub fn declarations(namespace: &str, description: &str, tools: &[ToolSchema<'_>]) -> Declarations {
    let mut gen = Gen::default();
    let prefixes: Vec<String> = tools.iter().map(|t| type_name(t.js_name)).collect();
    // Input and output types claim their names before any `$ref` target can.
    let roots: Vec<(String, String)> = prefixes
        .iter()
        .map(|p| (gen.claim(&format!("{p}Input"), ""), gen.claim(&format!("{p}Output"), "")))
        .collect();
    let mut docs = Vec::with_capacity(tools.len() * 2);
    for (t, prefix) in tools.iter().zip(&prefixes) {
        docs.push(Doc::new(t.input, t.name, "input", prefix));
        docs.push(Doc::new(t.output.unwrap_or(&ANY), t.name, "output", prefix));
    }
    let mut root_index = Vec::with_capacity(tools.len());
    for (i, (input, output)) in roots.into_iter().enumerate() {
        let a = gen.root(&docs, 2 * i, input, i);
        let b = gen.root(&docs, 2 * i + 1, output, i);
        if let (None, Some((ts, doc))) = (tools[i].output, tools[i].untyped) {
            // `Literal` prints its text as written.
            gen.named[b].ty = Ty::Literal(ts.to_string());
            gen.named[b].doc = doc.to_vec();
        }
        root_index.push((a, b));
    }
    gen.break_cycles();

    let mut out_tools = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let (input, output) = root_index[i];
        let input_named = &gen.named[input];
        let output_named = &gen.named[output];
        let optional = if input_named.ty.all_optional() { "?" } else { "" };
        let signature =
            format!("{}(args{optional}: {}): Promise<{}>", t.js_name, input_named.name, output_named.name);
        let mut text = String::new();
        doc_comment(&tool_doc(t), 1, &mut text);
        pad(1, &mut text);
        text.push_str("function ");
        text.push_str(&signature);
        text.push_str(";\n");
        let own = std::iter::once(input)
            .chain(std::iter::once(output))
            .chain((0..gen.named.len()).filter(|&n| n != input && n != output && gen.named[n].tool == i));
        for n in own {
            let named = &gen.named[n];
            doc_comment(&named.doc, 1, &mut text);
            pad(1, &mut text);
            match &named.ty {
                Ty::Object(o) => {
                    text.push_str("interface ");
                    text.push_str(&named.name);
                    text.push(' ');
                    print_object(o, 1, &mut text);
                    text.push('\n');
                }
                ty => {
                    text.push_str("type ");
                    text.push_str(&named.name);
                    text.push_str(" = ");
                    print(ty, 1, &mut text);
                    text.push_str(";\n");
                }
            }
        }
        out_tools.push(ToolDeclaration {
            name: t.name.into(),
            js_name: t.js_name.into(),
            input_type: input_named.name.clone(),
            output_type: output_named.name.clone(),
            signature,
            summary: first_sentence(t.description),
            text,
        });
    }
    Declarations {
        namespace: namespace.into(),
        description: description.into(),
        tools: out_tools,
        problems: gen.problems,
    }
}

impl Declarations {
    /// The whole `declare namespace` block.
    pub fn render(&self) -> String {
        self.render_only(|_| true)
    }

    /// The block with only the tools `keep` accepts (by JS name), or `None` if it accepts none.
    pub fn render_tools(&self, keep: impl Fn(&str) -> bool) -> Option<String> {
        self.tools.iter().any(|t| keep(&t.js_name)).then(|| self.render_only(|t| keep(t)))
    }

    fn render_only(&self, keep: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        if !self.description.is_empty() {
            let mut lines = Vec::new();
            text_lines(&self.description, &mut lines);
            doc_comment(&lines, 0, &mut out);
        }
        out.push_str("declare namespace ");
        out.push_str(&self.namespace);
        out.push_str(" {\n");
        let mut first = true;
        for t in self.tools.iter().filter(|t| keep(&t.js_name)) {
            if !first {
                out.push('\n');
            }
            first = false;
            out.push_str(&t.text);
        }
        out.push_str("}\n");
        out
    }
}

/// What a tool's declaration says when its calls wait for approval.
const APPROVAL_NOTE: &str =
    "Needs a person's approval: the execution pauses at this call until it is approved \
     (then it runs) or rejected (then it throws a ToolError whose code is \"rejected\").";

fn tool_doc(t: &ToolSchema<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(title) = t.title.filter(|title| !title.is_empty() && !t.description.starts_with(title)) {
        text_lines(title, &mut lines);
        lines.push(String::new());
    }
    text_lines(t.description, &mut lines);
    if t.name != t.js_name {
        if lines.iter().any(|l| !l.is_empty()) {
            lines.push(String::new());
        }
        lines.push(format!("Registered as {}.", Value::String(t.name.into())));
    }
    if t.approval {
        if lines.iter().any(|l| !l.is_empty()) {
            lines.push(String::new());
        }
        lines.push(APPROVAL_NOTE.into());
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    while lines.first().is_some_and(String::is_empty) {
        lines.remove(0);
    }
    lines
}

/// `text` as a JSDoc block indented `indent` levels.
#[cfg_attr(not(feature = "runtime"), allow(dead_code, reason = "for saved programs"))]
pub(crate) fn jsdoc(text: &str, indent: usize) -> String {
    let mut lines = Vec::new();
    text_lines(text, &mut lines);
    let mut out = String::new();
    doc_comment(&lines, indent, &mut out);
    out
}

/// The first sentence (or line) of `text`, at most 200 characters.
pub fn first_sentence(text: &str) -> String {
    let text = text.trim();
    let line = text.lines().next().unwrap_or("");
    let end = line.find(". ").map(|i| i + 1).unwrap_or(line.len());
    let sentence = &line[..end];
    if sentence.chars().count() <= 200 {
        sentence.to_string()
    } else {
        let mut s: String = sentence.chars().take(199).collect();
        s.push('…');
        s
    }
}
