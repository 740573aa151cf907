//! The build-time helper, in the spirit of prost-build: a build script turns tool definition
//! files into TypeScript declarations and typed Rust code in `OUT_DIR`.
//!
//! ```no_run
//! // build.rs of a crate with `codemode = { version = "0.1", default-features = false }`
//! // under [build-dependencies]: only this module and the generator are compiled then.
//! let out_dir = std::env::var("OUT_DIR").unwrap();
//! let generated = codemode::build::Builder::new(out_dir)
//!     .namespace("weather", "Forecasts and alerts.", "schemas/weather.json")
//!     .compile()
//!     .unwrap_or_else(|e| panic!("{e}"));
//! for input in &generated.inputs {
//!     println!("cargo::rerun-if-changed={}", input.display());
//! }
//! ```
//!
//! For namespace `weather` it writes `weather.d.ts` (the declarations programs are written
//! against) and `weather.rs`, which the crate includes with
//! `include!(concat!(env!("OUT_DIR"), "/weather.rs"));`. That file holds `pub mod weather`
//! with a serde type for each tool's input and output, `DECLARATIONS`, and per tool a function
//! that makes the [`Tool`](crate::Tool) from a typed handler:
//! `registry.register("weather", weather::get_forecast(|input| async move { ... }))`.
//!
//! A broken definitions file fails the build with the file, the JSON path and what is wrong —
//! including every `$ref` or keyword the generator would have had to widen.
//!
//! Like the rest of the library, the helper neither prints nor reads the environment: the
//! build script passes `OUT_DIR` in and prints the `rerun-if-changed` lines.

mod rust;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::definitions::{self, ToolDefinition};
use crate::typegen;

/// Collects namespaces of definition files, then [`compile`](Builder::compile)s them.
#[derive(Debug, Clone)]
pub struct Builder {
    out_dir: PathBuf,
    namespaces: Vec<(String, String, PathBuf)>,
}

/// What [`Builder::compile`] read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Every file read: print `cargo::rerun-if-changed` for each.
    pub inputs: Vec<PathBuf>,
    /// Every file written (`<namespace>.d.ts`, `<namespace>.rs`).
    pub outputs: Vec<PathBuf>,
}

/// Why the build failed: the file, where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// The definitions file (or the directory or output file, for I/O errors).
    pub file: PathBuf,
    /// A JSON pointer into the file (`/tools/2/inputSchema/properties/id`), a line and column,
    /// or empty.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: at {}: {}", self.file.display(), self.at, self.message)
        }
    }
}

impl std::error::Error for BuildError {}

impl Builder {
    /// A builder writing into `out_dir` (a build script passes `OUT_DIR`).
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Builder { out_dir: out_dir.into(), namespaces: Vec::new() }
    }

    /// Adds namespace `namespace` from `path`: one definitions file, or a directory whose
    /// `*.json` files are each one (read in name order).
    pub fn namespace(mut self, namespace: &str, description: &str, path: impl AsRef<Path>) -> Self {
        self.namespaces.push((namespace.into(), description.into(), path.as_ref().to_path_buf()));
        self
    }

    /// Reads, checks and generates every namespace; writes a file only when its text changed,
    /// so an unchanged schema does not rebuild the crate.
    pub fn compile(self) -> Result<Generated, BuildError> {
        let mut generated = Generated { inputs: Vec::new(), outputs: Vec::new() };
        for (namespace, description, path) in &self.namespaces {
            let (tools, inputs) = read(path)?;
            generated.inputs.extend(inputs);
            let files = generate(namespace, description, &tools)?;
            for (name, text) in [(format!("{namespace}.d.ts"), files.0), (format!("{namespace}.rs"), files.1)]
            {
                let out = self.out_dir.join(name);
                if std::fs::read_to_string(&out).ok().as_deref() != Some(&text) {
                    std::fs::write(&out, text).map_err(|e| io_error(&out, e))?;
                }
                generated.outputs.push(out);
            }
        }
        Ok(generated)
    }
}

/// A definition with where it came from.
struct Located {
    file: PathBuf,
    at: String,
    def: ToolDefinition,
    js_name: String,
}

fn read(path: &Path) -> Result<(Vec<Located>, Vec<PathBuf>), BuildError> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| io_error(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut tools = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| io_error(file, e))?;
        let defs = definitions::parse_located(&text).map_err(|e| BuildError {
            file: file.clone(),
            at: e.at,
            message: e.message,
        })?;
        for (at, def) in defs {
            let Some(js_name) = typegen::js_name(&def.name) else {
                return Err(BuildError {
                    file: file.clone(),
                    at: format!("{at}/name"),
                    message: format!("tool name {:?} has no character a JS name can use", def.name),
                });
            };
            if let Some(other) = tools.iter().find(|t: &&Located| t.js_name == js_name) {
                return Err(BuildError {
                    file: file.clone(),
                    at: format!("{at}/name"),
                    message: format!(
                        "tool {:?} and tool {:?} ({}) are both `{js_name}` in the sandbox",
                        def.name,
                        other.def.name,
                        other.file.display()
                    ),
                });
            }
            tools.push(Located { file: file.clone(), at, def, js_name });
        }
    }
    // The registry keeps tools sorted by JS name; so does the build-time text.
    tools.sort_by(|a, b| a.js_name.cmp(&b.js_name));
    let mut inputs = files;
    if path.is_dir() {
        inputs.insert(0, path.to_path_buf());
    }
    Ok((tools, inputs))
}

/// The `.d.ts` text and the `.rs` text of one namespace.
fn generate(namespace: &str, description: &str, tools: &[Located]) -> Result<(String, String), BuildError> {
    let ns_js = typegen::js_name(namespace).ok_or_else(|| BuildError {
        file: PathBuf::new(),
        at: String::new(),
        message: format!("namespace {namespace:?} has no character a JS name can use"),
    })?;
    let defs: Vec<ToolDefinition> = tools.iter().map(|t| t.def.clone()).collect();
    let decls = definitions::declarations(&ns_js, description, &defs);
    if let Some(p) = decls.problems.first() {
        let t = tools.iter().find(|t| t.def.name == p.tool).expect("problem names a tool");
        let key = if p.which == "input" { "inputSchema" } else { "outputSchema" };
        let path = if p.path == "/" { String::new() } else { p.path.clone() };
        return Err(BuildError {
            file: t.file.clone(),
            at: format!("{}/{key}{path}", t.at),
            message: p.message.clone(),
        });
    }
    let sources: Vec<String> = {
        let mut files: Vec<String> = tools.iter().map(|t| t.file.display().to_string()).collect();
        files.dedup();
        files
    };
    let header = format!("// @generated by codemode::build from {}; do not edit.\n", sources.join(", "));
    let dts = format!("{header}{}", decls.render());

    let mut gen = rust::RustGen::default();
    let mut functions = String::new();
    let mut fn_names = std::collections::BTreeSet::new();
    // Input and output types claim their names (the declarations' names) before any other.
    let roots: Vec<(String, String)> =
        decls.tools.iter().map(|d| (gen.claim(&d.input_type, ""), gen.claim(&d.output_type, ""))).collect();
    for ((t, d), (input, output)) in tools.iter().zip(&decls.tools).zip(roots) {
        let prefix = typegen::type_name(&t.js_name);
        gen.root(&t.def.input_schema, &input, &prefix);
        match &t.def.output_schema {
            Some(schema) => gen.root(schema, &output, &prefix),
            None => {
                let _ = write!(
                    gen.items,
                    "/// No output schema was declared.\npub type {output} = ::serde_json::Value;\n\n"
                );
            }
        }
        let mut fn_name = rust::field_name(&t.js_name);
        while !fn_names.insert(fn_name.clone()) {
            fn_name.push('_');
        }
        let mut one = serde_json::Map::new();
        one.insert("name".into(), t.def.name.clone().into());
        if let Some(title) = &t.def.title {
            one.insert("title".into(), title.clone().into());
        }
        one.insert("description".into(), t.def.description.clone().into());
        one.insert("inputSchema".into(), t.def.input_schema.clone());
        if let Some(o) = &t.def.output_schema {
            one.insert("outputSchema".into(), o.clone());
        }
        let json = serde_json::Value::Object(one).to_string();
        let _ = write!(
            functions,
            "/// `{ns_js}.{js}`: {summary}\n///\n/// Makes the tool from a handler that takes [`{input}`] and returns [`{output}`].\n\
             pub fn {fn_name}<F, Fut>(handler: F) -> ::codemode::Tool\nwhere\n    \
             F: Fn({input}) -> Fut + Send + Sync + 'static,\n    \
             Fut: ::std::future::Future<Output = Result<{output}, ::codemode::ToolError>> + Send + 'static,\n{{\n    \
             const DEFINITION: &str = {json:?};\n    \
             let definition = ::codemode::definitions::parse(DEFINITION).expect(\"checked at build time\").remove(0);\n    \
             ::codemode::Tool::typed_from_definition(definition, handler)\n}}\n\n",
            js = t.js_name,
            summary = d.summary.replace("```", "'''"),
        );
    }
    let module = rust::field_name(&ns_js);
    let doc = if description.is_empty() {
        format!("Tools of namespace `{ns_js}`.")
    } else {
        description.replace("```", "'''")
    };
    let mut rs = String::new();
    let _ = write!(
        rs,
        "{header}/// {doc}\npub mod {module} {{\n#![allow(dead_code, missing_docs, clippy::all)]\n\n\
         /// The namespace, as programs name it.\npub const NAMESPACE: &str = {ns_js:?};\n\n\
         /// The namespace's description (for `Registry::describe_namespace`).\npub const DESCRIPTION: &str = {description:?};\n\n\
         /// The TypeScript declarations programs are written against.\npub const DECLARATIONS: &str = {text:?};\n\n\
         {items}{functions}}}\n",
        text = decls.render(),
        items = gen.items,
    );
    Ok((dts, rs))
}

fn io_error(path: &Path, e: std::io::Error) -> BuildError {
    BuildError { file: path.to_path_buf(), at: String::new(), message: e.to_string() }
}
