//! W3C trace context at the edges: a caller's `traceparent` (a daemon request's param, an MCP
//! request's `_meta` or HTTP header) becomes the parent of the spans codemode makes for it, and
//! the current span's context is passed on to upstream servers.
//!
//! The spans themselves are plain `tracing` spans (`execute`, `typecheck`, `tool_call`,
//! `upstream_request`, and one per daemon or MCP request), so an embedder's subscriber sees them
//! whether or not this feature is on. With the `telemetry` feature and a
//! `tracing-opentelemetry` layer installed (the binary installs one when an OTLP endpoint is
//! configured), they become OpenTelemetry spans. Without the feature a `traceparent` is
//! accepted and ignored, and nothing is passed on.

use tracing::Span;

/// A `traceparent` that is not a W3C trace context header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "traceparent is not a W3C trace context header (version-traceid-parentid-flags, such as \
     00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01): {0:?}"
)]
pub struct BadTraceparent(pub String);

/// Makes `span` (not yet entered) a child of the caller's span that `traceparent` names, with
/// its `tracestate`. Nothing happens when no OpenTelemetry layer records `span`.
#[cfg(feature = "telemetry")]
pub fn continue_trace(
    span: &Span,
    traceparent: &str,
    tracestate: Option<&str>,
) -> Result<(), BadTraceparent> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let mut carrier = std::collections::HashMap::with_capacity(2);
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    if !context.span().span_context().is_valid() {
        return Err(BadTraceparent(traceparent.to_string()));
    }
    // Without a layer (nothing exports) or with the span filtered out, there is no parent to set.
    let _ = span.set_parent(context);
    Ok(())
}

/// Without the `telemetry` feature: the caller's trace context is accepted and ignored.
#[cfg(not(feature = "telemetry"))]
pub fn continue_trace(
    _span: &Span,
    _traceparent: &str,
    _tracestate: Option<&str>,
) -> Result<(), BadTraceparent> {
    Ok(())
}

/// The current span's `traceparent` and `tracestate`, to pass on to an upstream server; `None`
/// when no OpenTelemetry layer records it.
#[cfg(feature = "telemetry")]
pub fn current() -> Option<(String, Option<String>)> {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::with_capacity(2);
    opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(&context, &mut carrier);
    let parent = carrier.remove("traceparent")?;
    Some((parent, carrier.remove("tracestate").filter(|s| !s.is_empty())))
}

/// Without the `telemetry` feature nothing is passed on.
#[cfg(not(feature = "telemetry"))]
pub fn current() -> Option<(String, Option<String>)> {
    None
}
