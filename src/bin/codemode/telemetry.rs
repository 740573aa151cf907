//! OpenTelemetry for the commands that run programs: their spans are exported over OTLP/HTTP
//! with protobuf when `[telemetry] otlp_endpoint` or the standard `OTEL_EXPORTER_OTLP_*`
//! variables say where, and flushed before the command exits.

use super::*;

/// A layer of the tracing subscriber.
pub(crate) type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The exporter of a command's spans, flushed by [`Exporter::finish`].
pub(crate) struct Exporter {
    #[cfg(feature = "telemetry")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Exporter {
    /// Sends the spans not yet sent, waiting at most a few seconds for the collector.
    pub(crate) fn finish(self) {
        #[cfg(feature = "telemetry")]
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("codemode: warning: spans not all exported: {e}");
        }
    }
}

/// An `OTEL_*` variable, as unset when it is empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The layer that turns codemode's spans into OpenTelemetry spans, with its exporter; `None`
/// when nothing says where to send them. The configuration is read for `[telemetry]` only:
/// the command reads it again and reports what is wrong with it.
pub(crate) fn start(sources: Option<&Sources>) -> Result<Option<(BoxedLayer, Exporter)>, String> {
    let section = sources
        .and_then(load::config_path)
        .and_then(|path| Config::load(&path).ok())
        .map(|config| config.telemetry)
        .unwrap_or_default();
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    let configured = section.otlp_endpoint.is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    if disabled || !configured {
        return Ok(None);
    }
    export(section)
}

#[cfg(feature = "telemetry")]
fn export(section: codemode::config::TelemetrySection) -> Result<Option<(BoxedLayer, Exporter)>, String> {
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::Layer;

    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    if let Some(base) = &section.otlp_endpoint {
        // As `OTEL_EXPORTER_OTLP_ENDPOINT` is: the collector's base URL.
        builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = builder.build().map_err(|e| format!("cannot export spans over OTLP: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    match section.service_name {
        Some(name) => resource = resource.with_service_name(name),
        None if env("OTEL_SERVICE_NAME").is_none() => resource = resource.with_service_name("codemode"),
        None => {}
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("codemode");
    // codemode's spans, and its warnings as their events; not the connection spans of the
    // daemon, which last as long as a client stays and would make one trace of all its requests.
    let filter = tracing_subscriber::filter::filter_fn(|meta| {
        meta.target().starts_with("codemode")
            && if meta.is_span() {
                meta.name() != "connection"
            } else {
                *meta.level() <= tracing::Level::WARN
            }
    });
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter).boxed();
    Ok(Some((layer, Exporter { provider })))
}

#[cfg(not(feature = "telemetry"))]
fn export(_section: codemode::config::TelemetrySection) -> Result<Option<(BoxedLayer, Exporter)>, String> {
    Err("this codemode was built without the telemetry feature; spans cannot be exported".into())
}
