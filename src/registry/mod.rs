//! Tools, grouped in namespaces, with their schemas and async handlers.
//!
//! A [`Registry`] is built once and then shared (cheaply cloned, immutable) by every execution.
//! Each tool keeps its original name (what an MCP server or a client calls it) and gets a
//! deterministic JS name (what the sandbox calls it): `get-sum` → `getSum`,
//! `tree.insert-node` → `treeInsertNode`, `delete` → `delete_`.

pub(crate) mod discovery;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::definitions::ToolDefinition;
use crate::error::{RegistryError, ToolError};
use crate::skills::{self, Skill};
pub use crate::typegen::js_name;
use crate::typegen::{self, is_identifier, property_key, Declarations, ToolSchema};
use discovery::SearchIndex;

/// A boxed, sendable future, the return type of a [`ToolHandler`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a tool returns: a JSON value, or JSON text that is handed to the sandbox's parser as it
/// is. Text skips building and then serializing a `Value` — worth it for large results a tool
/// already has as JSON (a cached response, an upstream server's payload, rows serialized
/// straight from storage). Text that is not valid JSON rejects the call with a `ToolError`.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutput {
    /// A value, serialized by the bridge.
    Value(Value),
    /// JSON text, parsed only inside the sandbox.
    Json(String),
}

impl From<Value> for ToolOutput {
    fn from(v: Value) -> Self {
        ToolOutput::Value(v)
    }
}

impl ToolOutput {
    pub(crate) fn into_text(self) -> String {
        match self {
            ToolOutput::Value(v) => v.to_string(),
            ToolOutput::Json(text) => text,
        }
    }
}

/// What a tool does when called. Implemented for every `Fn(Value) -> impl Future<Output =
/// Result<T, ToolError>>` closure where `T` is a `serde_json::Value` or a [`ToolOutput`], so a
/// plain async closure is a handler.
///
/// The future's first poll runs on the sandbox thread, inside the caller's tokio runtime: a
/// handler that answers at once costs no thread hop. If it must wait, it continues as a tokio
/// task. Long CPU-bound work belongs in `tokio::task::spawn_blocking`, not before the first
/// `.await`.
pub trait ToolHandler: Send + Sync + 'static {
    /// Runs the tool with arguments that already passed the input schema.
    fn call(&self, args: Value) -> BoxFuture<Result<ToolOutput, ToolError>>;
}

impl<F, Fut, O> ToolHandler for F
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
    O: Into<ToolOutput>,
{
    fn call(&self, args: Value) -> BoxFuture<Result<ToolOutput, ToolError>> {
        let fut = self(args);
        Box::pin(async move { fut.await.map(Into::into) })
    }
}

/// One tool: names, description, schemas, handler, and the compiled input validator.
#[derive(Clone)]
pub struct Tool {
    name: String,
    js_name: String,
    title: Option<String>,
    description: String,
    input_schema: Value,
    output_schema: Option<Value>,
    /// What declarations give as the result when there is no output schema.
    result_type: Option<Arc<ResultType>>,
    handler: Arc<dyn ToolHandler>,
    /// A call waits for a person's decision before it reaches the handler.
    approval: bool,
}

/// A result type that codemode wrote for a tool without an output schema (what the MCP result
/// mapping gives, or a type learned from results), never text from a tool source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResultType {
    /// The TypeScript type, indented for a namespace block.
    pub(crate) typescript: String,
    /// Its JSDoc lines.
    pub(crate) doc: Vec<String>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("js_name", &self.js_name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// A tool taking and returning JSON values.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        handler: impl ToolHandler,
    ) -> Self {
        let name = name.into();
        Tool {
            js_name: js_name(&name).unwrap_or_default(),
            name,
            title: None,
            description: description.into(),
            input_schema,
            output_schema: None,
            result_type: None,
            handler: Arc::new(handler),
            approval: false,
        }
    }

    /// A tool from a definitions file entry (an MCP tool definition), run by `handler`.
    pub fn from_definition(definition: ToolDefinition, handler: impl ToolHandler) -> Self {
        let mut tool = Tool::new(definition.name, definition.description, definition.input_schema, handler);
        tool.title = definition.title;
        tool.output_schema = definition.output_schema;
        tool
    }

    /// A tool whose handler takes and returns serde types. Arguments that pass the input schema
    /// but do not deserialize into `I` become a `ToolError` with code `invalid_argument`.
    pub fn typed<I, O, F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
        handler: F,
    ) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
    {
        let definition = ToolDefinition {
            name: name.into(),
            title: None,
            description: description.into(),
            input_schema,
            output_schema: None,
        };
        Tool::typed_from_definition(definition, handler)
    }

    /// [`Tool::typed`] for a tool definition; what the functions generated by
    /// [`build`](crate::build) call.
    pub fn typed_from_definition<I, O, F, Fut>(definition: ToolDefinition, handler: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Tool::from_definition(definition, move |args: Value| {
            let handler = Arc::clone(&handler);
            async move {
                let input: I = serde_json::from_value(args)
                    .map_err(|e| ToolError::with_code("invalid_argument", e.to_string()))?;
                let output = handler(input).await?;
                // Straight to text: no intermediate `Value`.
                serde_json::to_string(&output)
                    .map(ToolOutput::Json)
                    .map_err(|e| ToolError::with_code("invalid_output", e.to_string()))
            }
        })
    }

    /// Declares the schema of the tool's result (used for declarations; not enforced).
    pub fn with_output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// Declares the result as `result` when there is no output schema.
    #[cfg_attr(not(feature = "mcp"), allow(dead_code, reason = "used by upstream servers"))]
    pub(crate) fn with_result_type(mut self, result: ResultType) -> Self {
        self.result_type = Some(Arc::new(result));
        self
    }

    /// Gives the tool a human title (MCP tools may have one); declarations show it.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Makes every call of the tool wait for a person's approval: the execution pauses with
    /// the call's arguments in [`Outcome::paused`](crate::Outcome::paused), nothing reaches the
    /// handler, and [`Engine::resume`](crate::Engine::resume) lets it through or rejects it.
    /// Declarations say so, so the agent knows before it calls.
    pub fn requiring_approval(mut self) -> Self {
        self.approval = true;
        self
    }

    /// Whether calls wait for approval ([`Tool::requiring_approval`], or a pattern given to
    /// [`Registry::require_approval`] before or after it was registered).
    pub fn requires_approval(&self) -> bool {
        self.approval
    }

    /// The human title, if one was given.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The original name, as registered.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The name inside the sandbox: `namespace.<js_name>(args)`.
    pub fn js_name(&self) -> &str {
        &self.js_name
    }
    /// The description given at registration.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The input JSON Schema.
    pub fn input_schema(&self) -> &Value {
        &self.input_schema
    }
    /// The output JSON Schema, if declared.
    pub fn output_schema(&self) -> Option<&Value> {
        self.output_schema.as_ref()
    }
    /// Whether declarations give the result a type codemode wrote (see [`ResultType`]).
    pub(crate) fn has_result_type(&self) -> bool {
        self.result_type.is_some()
    }
    pub(crate) fn handler(&self) -> &Arc<dyn ToolHandler> {
        &self.handler
    }
}

/// A registered tool with its compiled validator.
pub(crate) struct Entry {
    pub(crate) tool: Tool,
    /// Shared, so an entry can be remade with another approval setting without compiling again.
    pub(crate) validator: Arc<jsonschema::Validator>,
    /// `namespace.jsName`, as errors and spans name the tool; made once, not per call.
    pub(crate) label: Arc<str>,
}

/// The tools of one namespace, keyed by JS name.
pub(crate) struct Namespace {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) tools: BTreeMap<String, Arc<Entry>>,
    /// Generated on first use and kept until the namespace changes (a change makes a new
    /// `Namespace`), so declarations are made once per registry version, not per execution.
    declarations: OnceLock<Arc<Declarations>>,
    /// Declarations made elsewhere, not from schemas: the saved programs' namespace.
    preset: Option<Arc<Declarations>>,
}

impl Namespace {
    fn new(name: &str) -> Self {
        Namespace {
            name: name.into(),
            description: String::new(),
            tools: BTreeMap::new(),
            declarations: OnceLock::new(),
            preset: None,
        }
    }

    /// The namespace's TypeScript declarations.
    pub(crate) fn declarations(&self, js_name: &str) -> &Arc<Declarations> {
        if let Some(preset) = &self.preset {
            return preset;
        }
        self.declarations.get_or_init(|| {
            let schemas: Vec<ToolSchema<'_>> = self
                .tools
                .values()
                .map(|e| ToolSchema {
                    name: &e.tool.name,
                    js_name: &e.tool.js_name,
                    title: e.tool.title.as_deref(),
                    description: &e.tool.description,
                    input: &e.tool.input_schema,
                    output: e.tool.output_schema.as_ref(),
                    untyped: e.tool.result_type.as_deref().map(|r| (r.typescript.as_str(), r.doc.as_slice())),
                    approval: e.tool.approval,
                })
                .collect();
            Arc::new(typegen::declarations(js_name, &self.description, &schemas))
        })
    }
}

/// Reads a resource of a tool source by URI (an upstream MCP server's `resources/read`).
pub(crate) trait ResourceReader: Send + Sync + 'static {
    fn read(&self, uri: String) -> BoxFuture<Result<Value, ToolError>>;
}

/// The `skills` namespace's description.
const SKILLS_DESCRIPTION: &str =
    "Saved programs: call one as `await skills.name(input)`; it runs inside your program, with its limits.";

/// `codemode.readResource`'s label, as errors and pending calls name it.
pub(crate) const READ_RESOURCE: &str = "codemode.readResource";

/// Tools grouped in namespaces. Build it with [`Registry::register`], then hand it to an
/// [`EngineBuilder`](crate::EngineBuilder); cloning shares the same tools.
#[derive(Clone, Default)]
pub struct Registry {
    namespaces: BTreeMap<String, Arc<Namespace>>,
    /// What reads the resources of a namespace's server (`codemode.readResource`), by JS name.
    resources: BTreeMap<String, Arc<dyn ResourceReader>>,
    /// Patterns of tools whose calls wait for approval ([`Registry::require_approval`]); kept so
    /// a tool registered later (an upstream server's list changing) is matched too.
    approve: Vec<String>,
    /// Saved programs, by name; the namespace `skills` declares them.
    skills: BTreeMap<String, Arc<Skill>>,
    /// Saved programs left out when they were loaded, with why: a program that calls one is
    /// told.
    left_out: BTreeMap<String, Arc<str>>,
    /// What is derived from this version of the registry; a change starts a new one, and
    /// clones of one version (the engine's, the caller's) share it.
    derived: Arc<Derived>,
}

#[derive(Default)]
struct Derived {
    read_resource: OnceLock<Arc<Entry>>,
    index: OnceLock<Arc<SearchIndex>>,
    entries: OnceLock<Arc<[Arc<Entry>]>>,
    declarations: OnceLock<Arc<str>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (js, ns) in &self.namespaces {
            m.entry(js, &ns.tools.keys().collect::<Vec<_>>());
        }
        m.finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tool` to `namespace` (created on first use). Fails on an invalid name, a JS-name
    /// collision, or a schema that is not valid JSON Schema; the registry is unchanged then.
    pub fn register(&mut self, namespace: &str, mut tool: Tool) -> Result<&mut Self, RegistryError> {
        let ns_js = namespace_js_name(namespace)?;
        if tool.js_name.is_empty() {
            return Err(RegistryError::InvalidToolName {
                namespace: namespace.into(),
                name: tool.name.clone(),
            });
        }
        let too_big = |which: &'static str, message: String| RegistryError::InvalidSchema {
            namespace: namespace.into(),
            name: tool.name.clone(),
            which,
            message,
        };
        schema_size(&tool.input_schema).map_err(|m| too_big("input", m))?;
        if let Some(out) = &tool.output_schema {
            schema_size(out).map_err(|m| too_big("output", m))?;
        }
        let validator =
            jsonschema::validator_for(&tool.input_schema).map_err(|e| RegistryError::InvalidSchema {
                namespace: namespace.into(),
                name: tool.name.clone(),
                which: "input",
                message: schema_error(&e),
            })?;
        if let Some(out) = &tool.output_schema {
            jsonschema::validator_for(out).map_err(|e| RegistryError::InvalidSchema {
                namespace: namespace.into(),
                name: tool.name.clone(),
                which: "output",
                message: schema_error(&e),
            })?;
        }
        if let Some(e) = self.collision(namespace, &tool) {
            return Err(e);
        }
        let label: Arc<str> = format!("{ns_js}.{}", tool.js_name).into();
        tool.approval |= self.approve.iter().any(|p| approval_matches(p, namespace, &label, &tool.name));
        let ns = self.namespaces.entry(ns_js).or_insert_with(|| Arc::new(Namespace::new(namespace)));
        let ns = Arc::make_mut_namespace(ns);
        ns.tools
            .insert(tool.js_name.clone(), Arc::new(Entry { tool, validator: Arc::new(validator), label }));
        self.derived = Arc::default();
        Ok(self)
    }

    /// Makes the tools matching `pattern` wait for approval (see [`Tool::requiring_approval`]):
    /// `namespace.tool`, by the tool's JS name or its registered name, where `*` matches any
    /// run of characters (`sheets.updateRow`, `crm.send*`, `github.*`). Tools registered later
    /// are matched too. Returns how many registered tools it matched now.
    pub fn require_approval(&mut self, pattern: &str) -> usize {
        self.approve.push(pattern.to_string());
        self.apply_approval(pattern)
    }

    /// Marks the registered tools matching `pattern` as needing approval; how many matched.
    fn apply_approval(&mut self, pattern: &str) -> usize {
        let mut matched = 0;
        // A skill runs in its caller's sandbox: its tool calls are what may need approval.
        for ns in self.namespaces.values_mut().filter(|ns| ns.preset.is_none()) {
            let name = ns.name.clone();
            let hits: Vec<(String, bool)> = ns
                .tools
                .iter()
                .filter(|(_, e)| approval_matches(pattern, &name, &e.label, &e.tool.name))
                .map(|(js, e)| (js.clone(), e.tool.approval))
                .collect();
            matched += hits.len();
            if hits.iter().all(|(_, already)| *already) {
                continue;
            }
            let ns = Arc::make_mut_namespace(ns);
            for (js, _) in hits.into_iter().filter(|(_, already)| !already) {
                let entry = &ns.tools[&js];
                let mut tool = entry.tool.clone();
                tool.approval = true;
                let entry =
                    Entry { tool, validator: Arc::clone(&entry.validator), label: Arc::clone(&entry.label) };
                ns.tools.insert(js, Arc::new(entry));
            }
        }
        self.derived = Arc::default();
        matched
    }

    /// Sets the description of a namespace: its first line is the summary the prompt's index
    /// and `tools list` show; all of it heads the namespace's declarations.
    pub fn describe_namespace(
        &mut self,
        namespace: &str,
        description: impl Into<String>,
    ) -> Result<&mut Self, RegistryError> {
        let ns_js = namespace_js_name(namespace)?;
        let description = description.into();
        let ns = self.namespaces.entry(ns_js).or_insert_with(|| Arc::new(Namespace::new(namespace)));
        Arc::make_mut_namespace(ns).description = description;
        self.derived = Arc::default();
        Ok(self)
    }

    /// The error [`Registry::register`] gives when `tool`'s JS name is taken in `namespace`.
    /// The daemon checks a client's tools against the engine's with it.
    pub(crate) fn collision(&self, namespace: &str, tool: &Tool) -> Option<RegistryError> {
        let ns = self.namespaces.get(&namespace_js_name(namespace).ok()?)?;
        let existing = ns.tools.get(&tool.js_name)?;
        Some(RegistryError::Collision {
            namespace: namespace.into(),
            name: tool.name.clone(),
            existing: existing.tool.name.clone(),
            js_name: tool.js_name.clone(),
        })
    }

    /// Lets programs read `namespace`'s resources with `codemode.readResource(namespace, uri)`.
    #[cfg_attr(not(feature = "mcp"), allow(dead_code, reason = "used by upstream servers"))]
    pub(crate) fn set_resource_reader(&mut self, namespace: &str, reader: Arc<dyn ResourceReader>) {
        if let Ok(js) = namespace_js_name(namespace) {
            self.resources.insert(js, reader);
            self.derived = Arc::default();
        }
    }

    /// `codemode.readResource` as a tool: its arguments are checked like a tool's, and it is
    /// dispatched, counted and timed like one (it reaches a server); made once per version.
    pub(crate) fn read_resource_entry(&self) -> Arc<Entry> {
        let make = || {
            let readers = self.resources.clone();
            let names: BTreeMap<String, String> =
                self.namespaces.iter().map(|(js, ns)| (ns.name.clone(), js.clone())).collect();
            let schema = serde_json::json!({
                "type": "object",
                "properties": { "server": { "type": "string" }, "uri": { "type": "string" } },
                "required": ["server", "uri"],
            });
            let validator = jsonschema::validator_for(&schema).expect("a valid schema");
            let tool = Tool::new("readResource", "", schema, move |args: Value| {
                let server = args["server"].as_str().unwrap_or_default();
                let js = names.get(server).map_or(server, String::as_str);
                let reader = readers.get(js).cloned();
                let uri = args["uri"].as_str().unwrap_or_default().to_string();
                let message = format!(
                    "{server:?} is not a server with resources (servers: {})",
                    readers.keys().cloned().collect::<Vec<_>>().join(", ")
                );
                async move {
                    match reader {
                        Some(reader) => reader.read(uri).await.map(ToolOutput::from),
                        None => Err(ToolError::with_code("unknown_server", message)),
                    }
                }
            });
            Arc::new(Entry { tool, validator: Arc::new(validator), label: READ_RESOURCE.into() })
        };
        Arc::clone(self.derived.read_resource.get_or_init(make))
    }

    /// Removes a namespace and its tools; false when there was none. An upstream server whose
    /// tool list changed is re-registered this way.
    pub fn remove_namespace(&mut self, namespace: &str) -> bool {
        let js = namespace_js_name(namespace).ok();
        if let Some(js) = &js {
            self.resources.remove(js);
        }
        let removed = js.and_then(|js| self.namespaces.remove(&js)).is_some();
        if removed {
            self.derived = Arc::default();
        }
        removed
    }

    /// Adds every tool of `other` to this registry, a tool of `other` replacing one of the same
    /// JS name here. The daemon lays each client's own tools over the engine's this way. This
    /// registry's approval patterns cover the added tools too: a deployment's `[approvals]`
    /// binds a client's tools as it binds the engine's.
    pub fn overlay(&mut self, other: &Registry) {
        let ours = std::mem::take(&mut self.approve);
        for (js, theirs) in other.namespaces.iter().filter(|(_, ns)| ns.preset.is_none()) {
            match self.namespaces.get_mut(js) {
                None => {
                    self.namespaces.insert(js.clone(), Arc::clone(theirs));
                }
                Some(ours) => {
                    let ours = Arc::make_mut_namespace(ours);
                    for (name, entry) in &theirs.tools {
                        ours.tools.insert(name.clone(), Arc::clone(entry));
                    }
                    if !theirs.description.is_empty() {
                        ours.description = theirs.description.clone();
                    }
                }
            }
        }
        for (js, reader) in &other.resources {
            self.resources.insert(js.clone(), Arc::clone(reader));
        }
        for pattern in &ours {
            self.apply_approval(pattern);
        }
        self.approve = ours;
        self.approve.extend(other.approve.iter().cloned());
        self.derived = Arc::default();
        if !other.skills.is_empty() {
            self.skills.extend(other.skills.iter().map(|(k, v)| (k.clone(), Arc::clone(v))));
            self.rebuild_skills();
        }
    }

    /// Every tool, as `(namespace, tool)`, sorted by namespace and JS name.
    pub fn tools(&self) -> impl Iterator<Item = (&str, &Tool)> {
        self.namespaces.values().flat_map(|ns| ns.tools.values().map(move |e| (ns.name.as_str(), &e.tool)))
    }

    /// Looks a tool up by namespace and either its JS name or its original name.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Tool> {
        self.entry(namespace, name).map(|e| &e.tool)
    }

    pub(crate) fn entry(&self, namespace: &str, name: &str) -> Option<&Arc<Entry>> {
        let ns = self
            .namespaces
            .get(namespace)
            .or_else(|| self.namespaces.values().find(|ns| ns.name == namespace))?;
        ns.tools.get(name).or_else(|| ns.tools.values().find(|e| e.tool.name == name))
    }

    /// Namespaces as `(js_name, namespace)`, sorted.
    pub(crate) fn namespaces(&self) -> impl Iterator<Item = (&str, &Namespace)> {
        self.namespaces.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    /// The TypeScript declarations of every namespace: one `declare namespace` block each,
    /// generated once per registry version.
    pub fn declarations(&self) -> String {
        let mut out = String::new();
        for (js, ns) in self.namespaces() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&ns.declarations(js).render());
        }
        out
    }

    /// What the generator widened to `unknown` because a schema was broken (see
    /// [`typegen::Problem`]), for every namespace.
    pub fn declaration_problems(&self) -> Vec<typegen::Problem> {
        self.namespaces().flat_map(|(js, ns)| ns.declarations(js).problems.clone()).collect()
    }

    /// [`Registry::declarations`], made once per registry version: every type check sends it.
    pub(crate) fn declarations_text(&self) -> Arc<str> {
        Arc::clone(self.derived.declarations.get_or_init(|| Arc::from(self.declarations())))
    }

    pub(crate) fn search_index(&self) -> Arc<SearchIndex> {
        Arc::clone(self.derived.index.get_or_init(|| Arc::new(SearchIndex::build(self))))
    }

    /// Every tool's entry in the order of [`Registry::namespaces`] and then JS name, so a
    /// sandbox can name a tool by its position; made once per registry version.
    pub(crate) fn entries(&self) -> Arc<[Arc<Entry>]> {
        let make = || self.namespaces.values().flat_map(|ns| ns.tools.values().cloned()).collect();
        Arc::clone(self.derived.entries.get_or_init(make))
    }

    /// Adds (or replaces, returning the old one) a saved program, which programs then call as
    /// `skills.<name>(input)` and discovery lists in the namespace `skills`. Check it first
    /// with [`Engine::check_skill`](crate::Engine::check_skill): the registry takes it as it is.
    pub fn add_skill(&mut self, skill: Skill) -> Option<Arc<Skill>> {
        self.left_out.remove(skill.name());
        let old = self.skills.insert(skill.name().to_string(), Arc::new(skill));
        self.rebuild_skills();
        old
    }

    /// Removes the saved program `name`; false when there was none.
    pub fn remove_skill(&mut self, name: &str) -> bool {
        let removed = self.skills.remove(name).is_some();
        if removed {
            self.rebuild_skills();
        }
        removed
    }

    /// Removes the saved program `name` and remembers why, for a program that calls it.
    pub(crate) fn leave_out_skill(&mut self, name: &str, why: String) {
        self.remove_skill(name);
        self.left_out.insert(name.to_string(), why.into());
    }

    /// Why the saved program `name` was left out, if it was.
    pub(crate) fn left_out_skill(&self, name: &str) -> Option<&str> {
        self.left_out.get(name).map(|why| &**why)
    }

    /// The saved programs left out, with why, by name.
    pub(crate) fn left_out_skills(&self) -> impl Iterator<Item = (&str, &str)> {
        self.left_out.iter().map(|(name, why)| (name.as_str(), &**why))
    }

    /// The saved programs, by name.
    pub fn skills(&self) -> impl Iterator<Item = &Skill> {
        self.skills.values().map(|s| &**s)
    }

    /// The saved program `name`.
    pub fn skill(&self, name: &str) -> Option<&Skill> {
        self.skills.get(name).map(|s| &**s)
    }

    /// Remakes the namespace `skills` from the saved programs: an entry per skill (so that
    /// search, `describe`, the file tree and misspelt names treat them like tools; the sandbox
    /// runs them itself and never calls these handlers) and declarations made from their source.
    fn rebuild_skills(&mut self) {
        self.derived = Arc::default();
        if self.skills.is_empty() {
            self.namespaces.remove(skills::NAMESPACE);
            return;
        }
        let mut ns = Namespace::new(skills::NAMESPACE);
        ns.description = SKILLS_DESCRIPTION.into();
        let mut tools = Vec::new();
        // The sandbox never calls these entries: one validator of nothing serves them all.
        let validator =
            Arc::new(jsonschema::validator_for(&serde_json::json!({})).expect("the empty schema"));
        for skill in self.skills.values() {
            let name = skill.name().to_string();
            let tool =
                Tool::new(name.clone(), skill.description(), serde_json::json!({}), |_: Value| async {
                    Err::<Value, _>(ToolError::new("a saved program runs inside the program that calls it"))
                });
            let label: Arc<str> = format!("{}.{name}", skills::NAMESPACE).into();
            ns.tools.insert(name, Arc::new(Entry { tool, validator: Arc::clone(&validator), label }));
            tools.push(skill.declaration());
        }
        ns.preset = Some(Arc::new(Declarations {
            namespace: skills::NAMESPACE.into(),
            description: SKILLS_DESCRIPTION.into(),
            tools,
            problems: Vec::new(),
        }));
        self.namespaces.insert(skills::NAMESPACE.into(), Arc::new(ns));
    }

    /// True when no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.namespaces.values().all(|ns| ns.tools.is_empty())
    }
}

/// Whether an approval `pattern` names the tool `label` (`namespace.jsName`), or the tool
/// `name` as registered in `namespace`.
fn approval_matches(pattern: &str, namespace: &str, label: &str, name: &str) -> bool {
    glob(pattern, label) || glob(pattern, &format!("{namespace}.{name}"))
}

/// `text` matches `pattern`, where `*` stands for any run of characters (none included).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A meta-schema violation with where it is in the schema.
/// Values one schema may hold (a 1,000,000-value `enum` is about that many). Every stage that
/// reads a schema is linear in it, so this bounds what one registration can cost.
pub const MAX_SCHEMA_VALUES: usize = 2_000_000;
/// `$ref`s one schema may hold. The validator's compiler is quadratic in them (10,000 cost
/// 0.14 s here, 100,000 took 15 s and stalled every other client of the daemon).
pub const MAX_SCHEMA_REFS: usize = 10_000;

/// Refuses a schema past [`MAX_SCHEMA_VALUES`] or [`MAX_SCHEMA_REFS`], naming where the limit
/// was passed. Walks without recursion.
fn schema_size(schema: &Value) -> Result<(), String> {
    let mut values = 1usize;
    let mut refs = 0usize;
    let mut stack: Vec<(&Value, String)> = vec![(schema, String::new())];
    let over = |path: &str| {
        format!("the schema holds more than {MAX_SCHEMA_VALUES} values (passed at {})", or_root(path))
    };
    while let Some((v, path)) = stack.pop() {
        let children: Box<dyn Iterator<Item = (Key<'_>, &Value)>> = match v {
            Value::Object(m) => {
                if m.get("$ref").is_some_and(Value::is_string) {
                    refs += 1;
                    if refs > MAX_SCHEMA_REFS {
                        return Err(format!(
                            "the schema holds more than {MAX_SCHEMA_REFS} `$ref`s (passed at {})",
                            or_root(&path)
                        ));
                    }
                }
                Box::new(m.iter().map(|(k, c)| (Key::Name(k), c)))
            }
            Value::Array(items) => Box::new(items.iter().enumerate().map(|(i, c)| (Key::Index(i), c))),
            _ => continue,
        };
        for (key, child) in children {
            values += 1;
            if values > MAX_SCHEMA_VALUES {
                return Err(over(&path));
            }
            if child.is_object() || child.is_array() {
                let key = match key {
                    Key::Name(k) => k.replace('~', "~0").replace('/', "~1"),
                    Key::Index(i) => i.to_string(),
                };
                stack.push((child, format!("{path}/{key}")));
            }
        }
    }
    Ok(())
}

/// A child's place in its parent, made into a JSON-pointer step only when it is needed.
enum Key<'a> {
    Name(&'a str),
    Index(usize),
}

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn schema_error(e: &jsonschema::ValidationError<'_>) -> String {
    let at = e.instance_path().to_string();
    if at.is_empty() {
        e.to_string()
    } else {
        format!("at {at}: {e}")
    }
}

/// `Arc::make_mut` needs `Clone`; a namespace clones its map of `Arc`ed entries, which is cheap.
trait MakeMutNamespace {
    fn make_mut_namespace(this: &mut Arc<Namespace>) -> &mut Namespace;
}

impl MakeMutNamespace for Arc<Namespace> {
    fn make_mut_namespace(this: &mut Arc<Namespace>) -> &mut Namespace {
        if Arc::get_mut(this).is_none() {
            *this = Arc::new(Namespace {
                name: this.name.clone(),
                description: this.description.clone(),
                tools: this.tools.clone(),
                declarations: OnceLock::new(),
                preset: this.preset.clone(),
            });
        }
        let ns = Arc::get_mut(this).expect("just made unique");
        ns.declarations = OnceLock::new();
        ns
    }
}

fn namespace_js_name(namespace: &str) -> Result<String, RegistryError> {
    let js = js_name(namespace).ok_or_else(|| RegistryError::InvalidNamespace(namespace.into()))?;
    // A global of either engine: a registry runs on both.
    let global = |names: &[&str]| names.contains(&js.as_str());
    if global(crate::globals::SANDBOX_GLOBALS)
        || global(crate::globals::V8_GLOBALS_ADDED)
        || js == skills::NAMESPACE
    {
        return Err(RegistryError::ReservedNamespace(namespace.into()));
    }
    Ok(js)
}

/// Appends `.key`, or `["key"]` when the key is not an identifier: a path as JS code writes it.
pub(crate) fn push_property(path: &mut String, key: &str) {
    if is_identifier(key) {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&property_key(key));
        path.push(']');
    }
}
