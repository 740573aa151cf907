//! What every command starts from: the tools of its sources, the configuration, the
//! upstream servers, and the engine with its type checker.

use super::*;

/// What a command runs with: the async runtime, the tools of every source, the configuration,
/// and the connections to upstream servers (which must outlive the engine).
pub(crate) struct Loaded {
    pub(crate) runtime: tokio::runtime::Runtime,
    /// `--typecheck`, over the configuration's `[limits] typecheck`.
    pub(crate) typecheck: Option<TypeCheck>,
    /// `--isolation`, over the configuration's `[engine] isolation`.
    pub(crate) isolation: Option<codemode::Isolation>,
    /// `--engine`, over the configuration's `[engine] kind`.
    pub(crate) engine: Option<codemode::EngineKind>,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) upstreams: Vec<std::sync::Arc<codemode::mcp::Upstream>>,
}

/// The configuration file: `--config`, else `./codemode.toml` when it exists.
pub(crate) fn config_path(sources: &Sources) -> Option<PathBuf> {
    let default = std::path::Path::new("codemode.toml");
    sources.config.clone().or_else(|| default.exists().then(|| default.to_path_buf()))
}

/// Loads `sources` and the configuration, and connects the configured upstream servers; or
/// says what is wrong and returns the exit code. Tools read from schema files have no handler;
/// they are there to be declared and searched.
///
/// With `forward_client_requests`, upstream servers are told that sampling, elicitation and
/// roots requests are taken (`codemode mcp` forwards them to its client).
pub(crate) fn load(sources: &Sources, forward_client_requests: bool) -> Result<Loaded, ExitCode> {
    let forward_client_requests =
        if forward_client_requests { codemode::mcp::ClientFeatures::ALL } else { Default::default() };
    let config = match config_path(sources) {
        Some(path) => Config::load(&path),
        None => Ok(Config::default()),
    }
    .map_err(|e| usage_error(e.to_string()))?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| {
            eprintln!("codemode: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })?;
    let mut registry = Registry::new();
    if sources.demo {
        codemode::demo::register(&mut registry).expect("demo tools are valid");
        codemode::demo::register_crm(&mut registry).expect("demo tools are valid");
    }
    // Before the other tools are registered: a pattern matches the tools registered after it.
    for pattern in config.approval_patterns() {
        registry.require_approval(&pattern);
    }
    for spec in &sources.schemas {
        let (namespace, file) = match spec.split_once('=') {
            Some((ns, file)) => (ns.to_string(), PathBuf::from(file)),
            None => {
                let file = PathBuf::from(spec);
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("tools");
                (stem.split('.').next().unwrap_or(stem).to_string(), file)
            }
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| usage_error(format!("cannot read {}: {e}", file.display())))?;
        let defs = definitions::parse(&text).map_err(|e| usage_error(format!("{}: {e}", file.display())))?;
        for def in defs {
            let tool = Tool::from_definition(def, |_: serde_json::Value| async {
                Err::<serde_json::Value, _>(ToolError::with_code(
                    "unavailable",
                    "declared from a schema file; no handler is attached",
                ))
            });
            registry
                .register(&namespace, tool)
                .map_err(|e| usage_error(format!("{}: {e}", file.display())))?;
        }
    }
    let upstreams =
        config.upstreams(|name| std::env::var(name).ok()).map_err(|e| usage_error(e.to_string()))?;
    let mut connected = Vec::with_capacity(upstreams.len());
    for mut upstream in upstreams {
        upstream.forward_client_requests = forward_client_requests;
        sign_in_if_interactive(&runtime, &upstream);
        let up =
            runtime.block_on(codemode::mcp::Upstream::register(upstream, &mut registry)).map_err(|e| {
                eprintln!("codemode: {e}");
                ExitCode::FAILURE
            })?;
        connected.push(up);
    }
    Ok(Loaded {
        runtime,
        typecheck: sources.typecheck,
        isolation: sources.isolation,
        engine: sources.engine,
        registry,
        config,
        upstreams: connected,
    })
}

/// A server that needs a token codemode lacks starts the browser flow when a person is at the
/// terminal; otherwise connecting fails with the command to run.
fn sign_in_if_interactive(runtime: &tokio::runtime::Runtime, upstream: &codemode::mcp::UpstreamConfig) {
    use std::io::IsTerminal;
    if !codemode::mcp::needs_login(upstream)
        || !std::io::stdin().is_terminal()
        || !std::io::stderr().is_terminal()
    {
        return;
    }
    if let Err(e) = runtime.block_on(super::auth::sign_in(upstream)) {
        eprintln!("codemode: {e}");
    }
}

/// The engine for `loaded`, with the configuration's limits and pool size and the saved
/// skills that still type-check, or the exit code after saying why not. A skill left out (or
/// kept with type errors, in `warn` mode) is reported on stderr.
pub(crate) fn start(
    loaded: &Loaded,
    tweak: impl FnOnce(codemode::EngineBuilder) -> codemode::EngineBuilder,
) -> Result<Engine, ExitCode> {
    let (engine, problems) = start_with_skills(loaded, tweak)?;
    for (name, problem) in problems {
        let fate = if engine.registry().skill(&name).is_some() { "kept" } else { "left out" };
        eprintln!("codemode: warning: {problem} ({fate})");
    }
    Ok(engine)
}

/// The skills of the state directory, when there is one.
pub(crate) fn skill_store(config: &Config) -> Option<codemode::SkillStore> {
    let dir = config.state_dir(|name| std::env::var(name).ok())?;
    Some(codemode::SkillStore::new(dir.join("skills")))
}

/// [`start`], returning the saved skills' problems rather than reporting them.
pub(crate) fn start_with_skills(
    loaded: &Loaded,
    tweak: impl FnOnce(codemode::EngineBuilder) -> codemode::EngineBuilder,
) -> Result<(Engine, Vec<(String, codemode::SkillError)>), ExitCode> {
    let engine = build_engine(loaded, tweak)?;
    let problems = match skill_store(&loaded.config) {
        Some(store) => {
            loaded.runtime.block_on(engine.load_skills(&store)).unwrap_or_else(|e| vec![(String::new(), e)])
        }
        None => Vec::new(),
    };
    Ok((engine, problems))
}

fn build_engine(
    loaded: &Loaded,
    tweak: impl FnOnce(codemode::EngineBuilder) -> codemode::EngineBuilder,
) -> Result<Engine, ExitCode> {
    let mut limits = loaded.config.limits();
    if let Some(mode) = loaded.typecheck {
        limits.typecheck = mode;
    }
    let checker = type_checker(limits.typecheck);
    let mut builder = Engine::builder()
        .registry(loaded.registry.clone())
        .limits(limits)
        .sessions(loaded.config.sessions())
        .privacy(loaded.config.privacy());
    if let Some(timeout) = loaded.config.approval_timeout() {
        builder = builder.approval_timeout(timeout);
    }
    if let Some(checker) = checker {
        builder = builder.type_checker(checker);
    }
    if let Some(w) = loaded.config.pool.workers {
        builder = builder.workers(w);
    }
    if let Some(w) = loaded.config.pool.warm {
        builder = builder.warm_sandboxes(w);
    }
    if let Some(isolation) = loaded.isolation.or(loaded.config.engine.isolation) {
        builder = builder.isolation(isolation);
    }
    if let Some(kind) = loaded.engine.or(loaded.config.engine.kind) {
        builder = builder.engine(kind);
        if kind == codemode::EngineKind::V8 {
            let node =
                loaded.config.node_program().or_else(|| v8_dir().map(|d| codemode::installed_node(&d)));
            match node {
                Some(node) if node.is_file() => builder = builder.node_program(node),
                Some(node) => {
                    eprintln!(
                        "codemode: the V8 engine needs Node.js, and {} does not exist: run `codemode setup v8`",
                        node.display()
                    );
                    return Err(ExitCode::FAILURE);
                }
                None => {
                    eprintln!("codemode: the V8 engine needs Node.js: run `codemode setup v8`");
                    return Err(ExitCode::FAILURE);
                }
            }
        }
    }
    // Tests of the seal start workers that can be told to break it; nothing else should.
    if std::env::var_os("CODEMODE_TEST_HOOKS").is_some_and(|v| v == "1") {
        builder = builder.worker_test_hooks(true);
    }
    let engine = tweak(builder).build().map_err(|e| {
        eprintln!("codemode: {e}");
        ExitCode::FAILURE
    })?;
    // From here on, a server's `tools/list_changed` updates the engine's namespace.
    let _entered = loaded.runtime.enter();
    for upstream in &loaded.upstreams {
        upstream.follow(&engine);
    }
    Ok(engine)
}

/// Where `codemode setup` installs TypeScript: `$CODEMODE_TYPESCRIPT_DIR`, else the user's
/// cache directory.
pub(crate) fn typescript_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CODEMODE_TYPESCRIPT_DIR") {
        return Some(PathBuf::from(dir));
    }
    Some(cache_dir()?.join(format!("typescript-{}", codemode::TYPESCRIPT_VERSION)))
}

/// Where `codemode setup v8` installs Node.js: `$CODEMODE_V8_DIR`, else the user's cache
/// directory.
pub(crate) fn v8_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CODEMODE_V8_DIR") {
        return Some(PathBuf::from(dir));
    }
    Some(cache_dir()?.join(format!("node-{}", codemode::NODE_VERSION)))
}

pub(crate) fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("codemode"))
}

/// The checker for `mode`, when TypeScript is installed. Without it, executions run unchecked
/// and their outcome says so (`stats.warnings`); a checker that cannot start is logged the same
/// way, never fatal.
pub(crate) fn type_checker(mode: TypeCheck) -> Option<TypeChecker> {
    if mode == TypeCheck::Off {
        return None;
    }
    if !typescript_installed() {
        return None;
    }
    let binary = TypeChecker::installed_binary(&typescript_dir()?);
    let project = cache_dir()?.join("typecheck-project");
    match TypeChecker::start(binary, project) {
        Ok(checker) => Some(checker),
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// Whether `codemode setup` has installed TypeScript.
pub(crate) fn typescript_installed() -> bool {
    typescript_dir().is_some_and(|dir| TypeChecker::installed_binary(&dir).is_file())
}
