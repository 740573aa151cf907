//! Tool definitions read from JSON: an MCP `tools/list` result (`{"tools": [...]}`), a bare
//! array of tools, or one tool per file (`{"name", "description", "inputSchema", ...}`).
//!
//! Shared by the CLI (`--schema FILE`), the build-time helper and the crate's own build script
//! (which compiles this file through `#[path]`), so it needs only `std` and `serde_json`.

use serde_json::Value;

/// One tool as a schema file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// The optional human title (MCP).
    pub title: Option<String>,
    /// What the tool does (empty when the file has none).
    pub description: String,
    /// The input JSON Schema.
    pub input_schema: Value,
    /// The output JSON Schema, when declared.
    pub output_schema: Option<Value>,
}

/// Why a definitions file was rejected: where (a JSON pointer into the file, or a line and
/// column for text that is not JSON) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// JSON pointer of the offending value (`/tools/3/inputSchema`), or `line L, column C`.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", self.at, self.message)
    }
}

impl std::error::Error for DefinitionError {}

/// Parses a definitions file's text.
pub fn parse(text: &str) -> Result<Vec<ToolDefinition>, DefinitionError> {
    Ok(parse_located(text)?.into_iter().map(|(_, d)| d).collect())
}

/// Like [`parse`], with each tool's JSON pointer in the file (`/tools/3`), for errors that
/// point into it.
pub fn parse_located(text: &str) -> Result<Vec<(String, ToolDefinition)>, DefinitionError> {
    let value: Value = serde_json::from_str(text).map_err(|e| DefinitionError {
        at: format!("line {}, column {}", e.line(), e.column()),
        message: format!("not valid JSON: {e}"),
    })?;
    from_value_located(&value)
}

/// Reads definitions from an already parsed value (a daemon's `tools/register` parameters).
pub fn from_value(value: &Value) -> Result<Vec<ToolDefinition>, DefinitionError> {
    Ok(from_value_located(value)?.into_iter().map(|(_, d)| d).collect())
}

fn from_value_located(value: &Value) -> Result<Vec<(String, ToolDefinition)>, DefinitionError> {
    let located = |tools: &[Value], prefix: &str| {
        tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let at = format!("{prefix}/{i}");
                tool(t, &at).map(|d| (at, d))
            })
            .collect()
    };
    match value {
        Value::Object(m) if m.contains_key("tools") => match &m["tools"] {
            Value::Array(tools) => located(tools, "/tools"),
            _ => Err(err("/tools", "must be an array of tools")),
        },
        Value::Object(_) => Ok(vec![(String::new(), tool(value, "")?)]),
        Value::Array(tools) => located(tools, ""),
        _ => Err(err("/", "expected a tool, an array of tools, or an object with `tools`")),
    }
}

/// The declarations of `definitions` as namespace `namespace`, tools in JS-name order as in a
/// registry; function names come from [`js_name`](crate::typegen::js_name) (a name with none
/// keeps its text, which the registry would have refused).
pub fn declarations(
    namespace: &str,
    description: &str,
    definitions: &[ToolDefinition],
) -> crate::typegen::Declarations {
    let js_names: Vec<String> = definitions
        .iter()
        .map(|d| crate::typegen::js_name(&d.name).unwrap_or_else(|| d.name.clone()))
        .collect();
    let mut order: Vec<usize> = (0..definitions.len()).collect();
    order.sort_by(|&a, &b| js_names[a].cmp(&js_names[b]));
    let schemas: Vec<crate::typegen::ToolSchema<'_>> = order
        .into_iter()
        .map(|i| (&definitions[i], &js_names[i]))
        .map(|(d, js)| crate::typegen::ToolSchema {
            name: &d.name,
            js_name: js,
            title: d.title.as_deref(),
            description: &d.description,
            input: &d.input_schema,
            output: d.output_schema.as_ref(),
            untyped: None,
            approval: false,
        })
        .collect();
    crate::typegen::declarations(namespace, description, &schemas)
}

fn tool(v: &Value, at: &str) -> Result<ToolDefinition, DefinitionError> {
    let Value::Object(m) = v else {
        return Err(err(at, "a tool must be an object"));
    };
    let name = match m.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(err(&format!("{at}/name"), "must be a non-empty string")),
        None => return Err(err(at, "missing `name`")),
    };
    let text = |key: &str| -> Result<Option<String>, DefinitionError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(&format!("{at}/{key}"), "must be a string")),
        }
    };
    let schema = |key: &str| -> Result<Option<Value>, DefinitionError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(s @ (Value::Object(_) | Value::Bool(_))) => Ok(Some(s.clone())),
            Some(_) => Err(err(&format!("{at}/{key}"), "a schema must be an object or a boolean")),
        }
    };
    let input_schema =
        schema("inputSchema")?.ok_or_else(|| err(at, &format!("tool {name:?} has no `inputSchema`")))?;
    Ok(ToolDefinition {
        title: text("title")?,
        description: text("description")?.unwrap_or_default(),
        input_schema,
        output_schema: schema("outputSchema")?,
        name,
    })
}

fn err(at: &str, message: &str) -> DefinitionError {
    DefinitionError { at: if at.is_empty() { "/".into() } else { at.into() }, message: message.into() }
}
