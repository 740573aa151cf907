//! Progressive disclosure: an agent learns the tools a little at a time instead of reading
//! every schema up front. [`Registry::list`] gives the namespaces, [`Registry::search`] ranks
//! tools for a query (BM25 over names, descriptions and parameter names), [`Registry::describe`]
//! gives the declarations of exactly the tools asked for, and [`Registry::read_file`] serves the
//! same declarations as a virtual file tree (`tools/<namespace>/<tool>.d.ts`). Programs reach
//! search and describe as `codemode.search(...)` and `codemode.describe(...)`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Namespace, Registry};
use crate::error::DiscoveryError;
use crate::params::{parse, Params};

/// How much [`Registry::search`] says about each tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    /// `namespace.tool` only.
    Name,
    /// The name, the signature and the first sentence of the description.
    #[default]
    Summary,
    /// The complete declarations with JSDoc, as [`Registry::describe`] gives them.
    Full,
}

impl std::str::FromStr for Detail {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "name" => Ok(Detail::Name),
            "summary" => Ok(Detail::Summary),
            "full" => Ok(Detail::Full),
            other => Err(format!("detail must be name, summary or full, not {other:?}")),
        }
    }
}

/// One namespace in [`Registry::list`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamespaceInfo {
    /// The name in programs.
    pub namespace: String,
    /// The name it was registered under.
    pub name: String,
    /// Its one-line description.
    pub description: String,
    /// How many tools it holds.
    pub tools: usize,
}

/// One result of [`Registry::search`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// `namespace.tool`, as a program calls it.
    pub path: String,
    /// The name the tool was registered under.
    pub name: String,
    /// BM25 score; higher is better. Only the order is meaningful.
    pub score: f64,
    /// `getRows(args: GetRowsInput): Promise<GetRowsOutput>` (summary and full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The first sentence of the description (summary and full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The tool's declarations in their namespace block (full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declarations: Option<String>,
}

impl SearchHit {
    /// The hit as text, as the CLI and the MCP server show it: its declarations (full), else
    /// `ns.signature — summary`, else the path.
    pub fn to_text(&self) -> String {
        match (&self.declarations, &self.signature) {
            (Some(d), _) => d.clone(),
            (None, Some(sig)) => {
                let ns = self.path.split('.').next().unwrap_or("");
                format!("{ns}.{sig} — {}", self.summary.as_deref().unwrap_or(""))
            }
            (None, None) => self.path.clone(),
        }
    }
}

/// The BM25F index over every tool (BM25 with fields: a word in a short name outweighs the same
/// word in a long description), built on first search and kept per registry version.
pub(crate) struct SearchIndex {
    docs: Vec<IndexedTool>,
    /// term → number of tools containing it in any field.
    df: HashMap<String, usize>,
    avg_len: [f64; FIELDS],
}

struct IndexedTool {
    namespace: String,
    js_name: String,
    /// Lower-cased spellings a query may use verbatim: `getrows`, `get_rows`, `sheets.getrows`.
    exact: Vec<String>,
    /// Per field: term → count.
    tf: [HashMap<String, f64>; FIELDS],
    len: [f64; FIELDS],
}

/// Fields: the tool's names and title; its parameter names; descriptions (the tool's, its
/// parameters', its namespace's).
const FIELDS: usize = 3;
const NAME: usize = 0;
const PARAMS: usize = 1;
const TEXT: usize = 2;
const WEIGHT: [f64; FIELDS] = [3.0, 1.5, 1.0];
const K1: f64 = 1.2;
const B: [f64; FIELDS] = [0.5, 0.5, 0.75];

impl SearchIndex {
    pub(crate) fn build(registry: &Registry) -> Self {
        let mut docs = Vec::new();
        for (ns_js, ns) in registry.namespaces() {
            for (js, entry) in &ns.tools {
                let tool = &entry.tool;
                let mut tf: [HashMap<String, f64>; FIELDS] = Default::default();
                let mut add = |field: usize, text: &str| {
                    for term in terms(text) {
                        *tf[field].entry(term).or_default() += 1.0;
                    }
                };
                add(NAME, tool.name());
                if tool.name() != js {
                    add(NAME, js);
                }
                add(NAME, tool.title().unwrap_or(""));
                add(TEXT, ns_js);
                // The namespace's description gives context a terse tool description lacks.
                add(TEXT, &ns.description);
                add(TEXT, tool.description());
                let mut params = Vec::new();
                parameters(tool.input_schema(), 0, &mut params);
                for (name, description) in params {
                    add(PARAMS, name);
                    add(TEXT, description);
                }
                let len = [0, 1, 2].map(|f| tf[f].values().sum());
                let exact = vec![
                    js.to_lowercase(),
                    tool.name().to_lowercase(),
                    format!("{ns_js}.{js}").to_lowercase(),
                    format!("{}.{}", ns.name, tool.name()).to_lowercase(),
                ];
                docs.push(IndexedTool { namespace: ns_js.into(), js_name: js.clone(), exact, tf, len });
            }
        }
        let mut df: HashMap<String, usize> = HashMap::new();
        for d in &docs {
            let mut seen: Vec<&String> = d.tf.iter().flat_map(|f| f.keys()).collect();
            seen.sort();
            seen.dedup();
            for term in seen {
                *df.entry(term.clone()).or_default() += 1;
            }
        }
        let n = docs.len().max(1) as f64;
        let avg_len = [0, 1, 2].map(|f| (docs.iter().map(|d| d.len[f]).sum::<f64>() / n).max(1.0));
        SearchIndex { docs, df, avg_len }
    }

    /// (tool index, score) of every tool that matches, best first; ties by name.
    fn rank(&self, query: &str) -> Vec<(usize, f64)> {
        let mut q: Vec<String> = terms(query).collect();
        q.sort();
        q.dedup();
        let whole = query.trim().to_lowercase();
        let n = self.docs.len() as f64;
        let mut out: Vec<(usize, f64)> = self
            .docs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                let mut score = 0.0;
                for term in &q {
                    let Some(&df) = self.df.get(term) else { continue };
                    let tf: f64 = (0..FIELDS)
                        .map(|f| {
                            let raw = d.tf[f].get(term).copied().unwrap_or(0.0);
                            WEIGHT[f] * raw / (1.0 - B[f] + B[f] * d.len[f] / self.avg_len[f])
                        })
                        .sum();
                    if tf > 0.0 {
                        let df = df as f64;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        score += idf * tf / (K1 + tf);
                    }
                }
                // Naming a tool exactly puts it first.
                if d.exact.contains(&whole) {
                    score += 100.0;
                }
                (score > 0.0).then_some((i, score))
            })
            .collect();
        out.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then_with(|| self.docs[a.0].namespace.cmp(&self.docs[b.0].namespace))
                .then_with(|| self.docs[a.0].js_name.cmp(&self.docs[b.0].js_name))
        });
        out
    }
}

/// Property names (and their descriptions) of an input schema, two levels deep.
fn parameters<'a>(schema: &'a Value, depth: usize, out: &mut Vec<(&'a str, &'a str)>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, s) in props {
        out.push((name, s.get("description").and_then(Value::as_str).unwrap_or("")));
        if depth < 1 {
            parameters(s, depth + 1, out);
            if let Some(items) = s.get("items") {
                parameters(items, depth + 1, out);
            }
        }
    }
}

/// Search terms: words split at case changes and punctuation, lower-cased, a plural `s`
/// dropped, stop words left out. `listSheets` → `list`, `sheet`.
fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if c.is_uppercase() && prev_lower && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            word.extend(c.to_lowercase());
        } else {
            prev_lower = false;
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.into_iter().filter(|w| !STOP_WORDS.contains(&w.as_str())).map(|mut w| {
        if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
            w.pop();
        }
        w
    })
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "if", "in", "is", "it", "of", "on", "or",
    "that", "the", "this", "to", "with",
];

impl Registry {
    /// The namespaces, sorted, with tool counts and descriptions.
    pub fn list(&self) -> Vec<NamespaceInfo> {
        self.namespaces()
            .map(|(js, ns)| NamespaceInfo {
                namespace: js.into(),
                name: ns.name.clone(),
                description: ns.description.clone(),
                tools: ns.tools.len(),
            })
            .collect()
    }

    /// The `limit` tools that best match `query`, best first, each described at `detail`.
    pub fn search(&self, query: &str, detail: Detail, limit: usize) -> Vec<SearchHit> {
        let index = self.search_index();
        index
            .rank(query)
            .into_iter()
            .take(limit)
            .map(|(i, score)| {
                let d = &index.docs[i];
                let (ns_js, ns) = self.namespace(&d.namespace).expect("indexed namespace exists");
                let decls = ns.declarations(ns_js);
                let tool = decls.tools.iter().find(|t| t.js_name == d.js_name).expect("declared tool");
                let (signature, summary, declarations) = match detail {
                    Detail::Name => (None, None, None),
                    Detail::Summary => (Some(tool.signature.clone()), Some(tool.summary.clone()), None),
                    Detail::Full => (
                        Some(tool.signature.clone()),
                        Some(tool.summary.clone()),
                        decls.render_tools(|js| js == d.js_name),
                    ),
                };
                SearchHit {
                    path: format!("{}.{}", d.namespace, d.js_name),
                    name: tool.name.clone(),
                    score: (score * 1000.0).round() / 1000.0,
                    signature,
                    summary,
                    declarations,
                }
            })
            .collect()
    }

    /// The declarations of exactly the tools named: `namespace.tool` (JS or registered name) or
    /// a whole `namespace`, or a path of the virtual tree (`tools/ns/tool.d.ts`). Each
    /// namespace block appears once, with its tools in registry
    /// order. Fails, naming them, if any name matches nothing.
    pub fn describe<S: AsRef<str>>(&self, names: &[S]) -> Result<String, DiscoveryError> {
        let mut wanted: Vec<(&str, Option<String>)> = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            let given = name.as_ref().trim();
            let from_path = file_to_name(given);
            let name = from_path.as_deref().unwrap_or(given);
            if let Some((ns_js, _)) = self.namespace(name) {
                wanted.push((ns_js, None));
                continue;
            }
            let found = name.split_once('.').and_then(|(ns, tool)| {
                let (ns_js, _) = self.namespace(ns)?;
                Some((ns_js, self.entry(ns_js, tool)?.tool.js_name().to_string()))
            });
            match found {
                Some((ns_js, js)) => wanted.push((ns_js, Some(js))),
                None => unknown.push(given.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(DiscoveryError::UnknownTools(unknown));
        }
        let mut out = String::new();
        for (ns_js, ns) in self.namespaces() {
            let mine: Vec<&Option<String>> =
                wanted.iter().filter(|(n, _)| *n == ns_js).map(|(_, t)| t).collect();
            if mine.is_empty() {
                continue;
            }
            let whole = mine.iter().any(|t| t.is_none());
            let keep = |js: &str| whole || mine.iter().any(|t| t.as_deref() == Some(js));
            if let Some(text) = ns.declarations(ns_js).render_tools(keep) {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&text);
            }
        }
        Ok(out)
    }

    /// The virtual file tree: `tools/<namespace>/index.d.ts` and `tools/<namespace>/<tool>.d.ts`
    /// for every tool, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (ns_js, ns) in self.namespaces() {
            out.push(format!("tools/{ns_js}/index.d.ts"));
            out.extend(ns.tools.keys().map(|js| format!("tools/{ns_js}/{js}.d.ts")));
        }
        out
    }

    /// A file of [`Registry::files`]: a whole namespace (`index.d.ts`) or one tool. `None` for
    /// a path that is not in the tree.
    pub fn read_file(&self, path: &str) -> Option<String> {
        let name = file_to_name(path)?;
        self.describe(&[name]).ok()
    }

    fn namespace(&self, name: &str) -> Option<(&str, &Namespace)> {
        self.namespaces().find(|(js, ns)| *js == name || ns.name == name)
    }
}

/// The arguments of a search: `{query, detail?, limit?}`.
#[derive(Deserialize)]
struct SearchArgs {
    query: String,
    detail: Option<String>,
    limit: Option<u64>,
}

impl Params for SearchArgs {
    fn expected(field: &str) -> Option<&'static str> {
        Some(match field {
            "query" => "query must be a string",
            "detail" => "detail must be \"name\", \"summary\" or \"full\"",
            "limit" => LIMIT,
            _ => return None,
        })
    }
}

const LIMIT: &str = "limit must be an integer from 1 to 100";

/// Reads `{query, detail?, limit?}` for search: the daemon's `tools/search`, MCP's
/// `search_tools` and `codemode.search` accept and refuse the same arguments.
pub(crate) fn search_args(args: &Value) -> Result<(String, Detail, usize), String> {
    let SearchArgs { query, detail, limit } = parse(args)?;
    let detail = match detail {
        None => Detail::default(),
        Some(d) => d.parse()?,
    };
    let limit = limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(LIMIT.into());
    }
    Ok((query, detail, limit as usize))
}

/// `{names}` for describe: a string or an array of strings.
#[derive(Deserialize)]
struct NamesArg {
    names: Names,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Names {
    One(String),
    Many(Vec<String>),
}

impl Params for NamesArg {
    fn expected(field: &str) -> Option<&'static str> {
        (field == "names").then_some("names must be a string or an array of strings")
    }
}

/// Reads `{names}` (a string or an array of strings) for describe.
pub(crate) fn names_arg(args: &Value) -> Result<Vec<String>, String> {
    Ok(match parse::<NamesArg>(args)?.names {
        Names::One(name) => vec![name],
        Names::Many(names) => names,
    })
}

/// `tools/<ns>/index.d.ts` → `<ns>`, `tools/<ns>/<tool>.d.ts` → `<ns>.<tool>`.
fn file_to_name(path: &str) -> Option<String> {
    let rest = path.trim_start_matches("./").strip_prefix("tools/")?;
    let (ns, file) = rest.split_once('/')?;
    let stem = file.strip_suffix(".d.ts")?;
    if ns.is_empty() || stem.is_empty() || stem.contains('/') {
        return None;
    }
    Some(if stem == "index" { ns.to_string() } else { format!("{ns}.{stem}") })
}

#[cfg(test)]
mod tests {
    use super::terms;

    #[test]
    fn terms_split_case_and_punctuation_and_drop_plurals() {
        let t: Vec<String> = terms("listSheets get_rows the HTTPServer tree.insert-node Address").collect();
        assert_eq!(t, ["list", "sheet", "get", "row", "httpserver", "tree", "insert", "node", "address"]);
    }
}
