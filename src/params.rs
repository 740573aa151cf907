//! A request's params as a serde type, with errors that say what the field must be: the
//! daemon's methods, MCP's tools and the discovery calls inside programs read their arguments
//! through [`parse`].

use serde::de::DeserializeOwned;
#[cfg(feature = "mcp")]
use serde::Deserialize;
use serde_json::Value;

#[cfg(feature = "mcp")]
use crate::limits::LimitsPatch;

/// The params of one request, typed.
pub(crate) trait Params: DeserializeOwned {
    /// What `field` must be, said to a client that left it out or sent the wrong type
    /// (`"code must be a string"`); `None` for a field whose type error speaks for itself.
    fn expected(field: &str) -> Option<&'static str>;
}

/// `params` as `T`. Absent or `null` params are an empty object. A missing or mistyped field is
/// reported with what it must be ([`Params::expected`]), else as `field.path: serde's message`.
pub(crate) fn parse<T: Params>(params: &Value) -> Result<T, String> {
    let empty = Value::Object(Default::default());
    let params = if params.is_null() { &empty } else { params };
    if !params.is_object() {
        return Err("params must be an object".into());
    }
    serde_path_to_error::deserialize(params).map_err(|e| {
        let inner = e.inner().to_string();
        // serde says a required field is missing at the object itself, in a fixed form.
        let missing = inner.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
        let field = match e.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.as_str()),
            _ => missing,
        };
        match field.and_then(T::expected) {
            Some(expected) => expected.to_string(),
            None if e.path().iter().next().is_some() => format!("{}: {inner}", e.path()),
            None => inner,
        }
    })
}

/// What a field shared by several methods must be.
#[cfg(feature = "mcp")]
pub(crate) fn common(field: &str) -> Option<&'static str> {
    Some(match field {
        "session" => "session must be a string of 1 to 256 bytes",
        "shared" => "shared must be a boolean",
        "tokens" => "tokens must be a boolean",
        "calls" => "calls must be a boolean",
        "traceparent" => "traceparent must be a string",
        "tracestate" => "tracestate must be a string",
        _ => return None,
    })
}

/// `code/execute` of the daemon and MCP's `execute_code` (which reads `code` and `session`).
#[cfg(feature = "mcp")]
#[derive(Deserialize)]
#[cfg_attr(not(feature = "daemon"), allow(dead_code, reason = "the daemon reads the rest"))]
pub(crate) struct Execute {
    pub(crate) code: String,
    /// Each at most the engine's.
    pub(crate) limits: Option<LimitsPatch>,
    pub(crate) session: Option<String>,
    pub(crate) shared: Option<bool>,
    /// Count tokens exactly.
    pub(crate) tokens: Option<bool>,
    /// Return the audit record of the tool calls.
    pub(crate) calls: Option<bool>,
}

#[cfg(feature = "mcp")]
impl Params for Execute {
    fn expected(field: &str) -> Option<&'static str> {
        match field {
            "code" => Some("code must be a string"),
            other => common(other),
        }
    }
}

/// `code/resume` of the daemon and MCP's `resume_execution`.
#[cfg(feature = "mcp")]
#[derive(Deserialize)]
#[cfg_attr(not(feature = "daemon"), allow(dead_code, reason = "the daemon reads the rest"))]
pub(crate) struct Resume {
    pub(crate) approval: String,
    pub(crate) approve: bool,
    pub(crate) reason: Option<String>,
    pub(crate) tokens: Option<bool>,
    pub(crate) calls: Option<bool>,
}

#[cfg(feature = "mcp")]
impl Params for Resume {
    fn expected(field: &str) -> Option<&'static str> {
        match field {
            "approval" => Some("approval (the id in a paused outcome) must be a string"),
            "approve" => Some("approve must be true (the call runs) or false (it is rejected)"),
            "reason" => Some("reason must be a string"),
            other => common(other),
        }
    }
}

/// A session's name and whether it is shared, when `session` names one.
#[cfg(feature = "mcp")]
pub(crate) fn session(name: Option<&str>, shared: Option<bool>) -> Result<Option<(&str, bool)>, String> {
    let shared = shared.unwrap_or(false);
    match name {
        None if shared => Err("shared needs a session name".into()),
        None => Ok(None),
        Some(name) if !name.is_empty() && name.len() <= 256 => Ok(Some((name, shared))),
        Some(_) => Err("session must be a string of 1 to 256 bytes".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{parse, Params};

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only deserialized")]
    struct Sample {
        code: String,
        limit: Option<u8>,
        nested: Option<std::collections::BTreeMap<String, u8>>,
    }

    impl Params for Sample {
        fn expected(field: &str) -> Option<&'static str> {
            (field == "code").then_some("code must be a string")
        }
    }

    #[test]
    fn errors_say_what_the_field_must_be_or_where_it_is() {
        let err = |v| parse::<Sample>(&v).unwrap_err();
        assert_eq!(err(json!({})), "code must be a string");
        assert_eq!(err(json!(null)), "code must be a string");
        assert_eq!(err(json!({"code": 5})), "code must be a string");
        assert_eq!(err(json!([1])), "params must be an object");
        assert_eq!(
            err(json!({"code": "x", "limit": 300})),
            "limit: invalid value: integer `300`, expected u8"
        );
        assert_eq!(
            err(json!({"code": "x", "nested": {"a": "b"}})),
            "nested.a: invalid type: string \"b\", expected u8"
        );
        assert!(parse::<Sample>(&json!({"code": "x", "limit": null, "other": 1})).is_ok());
    }
}
