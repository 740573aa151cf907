//! The params of the daemon's methods, as serde types ([`crate::params::parse`] reads them and
//! says what a wrong field must be).

use serde::Deserialize;
use serde_json::Value;

use super::RpcError;
use crate::params::{common, parse, Params};

pub(super) use crate::params::{Execute, Resume};

/// `params` of a method as `T`, or `-32602` saying what is wrong.
pub(super) fn read<T: Params>(params: &Value) -> Result<T, RpcError> {
    parse(params).map_err(RpcError::params)
}

/// A session's name and whether it is shared, when `session` names one.
pub(super) fn session(name: Option<&str>, shared: Option<bool>) -> Result<Option<(&str, bool)>, RpcError> {
    crate::params::session(name, shared).map_err(RpcError::params)
}

/// The caller's W3C trace context, which any request may carry.
#[derive(Deserialize)]
pub(super) struct Trace {
    pub(super) traceparent: Option<String>,
    pub(super) tracestate: Option<String>,
}

impl Params for Trace {
    fn expected(field: &str) -> Option<&'static str> {
        common(field)
    }
}

/// `code/cancel` and `code/calls`: the id of an execute (or resume) request.
#[derive(Deserialize)]
pub(super) struct Request {
    pub(super) id: Value,
}

impl Params for Request {
    fn expected(field: &str) -> Option<&'static str> {
        (field == "id").then_some("id (of the code/execute request) is required")
    }
}

/// `session/close`.
#[derive(Deserialize)]
pub(super) struct CloseSession {
    pub(super) session: String,
    pub(super) shared: Option<bool>,
}

impl Params for CloseSession {
    fn expected(field: &str) -> Option<&'static str> {
        match field {
            "session" => Some("session (the name given to code/execute) must be a string of 1 to 256 bytes"),
            other => common(other),
        }
    }
}

/// `tools/register`.
#[derive(Deserialize)]
pub(super) struct Register {
    pub(super) namespace: String,
    /// Tool definitions, read by `definitions::from_value` (which says where one is wrong).
    pub(super) tools: Vec<Value>,
    pub(super) description: Option<String>,
    /// Patterns of this namespace's tool names (`*` for any run of characters) whose calls
    /// need a person's approval, as a `[[servers]]` entry's `approve`.
    #[serde(default)]
    pub(super) approve: Vec<String>,
}

impl Params for Register {
    fn expected(field: &str) -> Option<&'static str> {
        Some(match field {
            "namespace" => "namespace must be a string",
            "tools" => "tools must be an array of tool definitions",
            "description" => "description must be a string",
            "approve" => "approve must be an array of tool name patterns (`*` matches any run of characters)",
            _ => return None,
        })
    }
}

/// `prompt {session?}`: the instructions for programs run in a session, or each on its own.
#[derive(Deserialize)]
pub(super) struct Prompt {
    pub(super) session: Option<bool>,
}

impl Params for Prompt {
    fn expected(field: &str) -> Option<&'static str> {
        (field == "session").then_some("session must be true (programs run in a session) or false")
    }
}

/// `skills/show` and `skills/remove`.
#[derive(Deserialize)]
pub(super) struct SkillName {
    pub(super) name: String,
}

impl Params for SkillName {
    fn expected(field: &str) -> Option<&'static str> {
        (field == "name").then_some("name (of the skill) must be a string")
    }
}

/// `skills/save`.
#[derive(Deserialize)]
pub(super) struct SaveSkill {
    pub(super) name: String,
    pub(super) source: String,
}

impl Params for SaveSkill {
    fn expected(field: &str) -> Option<&'static str> {
        match field {
            "source" => Some("source (the program's TypeScript) must be a string"),
            other => SkillName::expected(other),
        }
    }
}
