//! Programs are checked against the tools' declarations before any of them runs, by the real
//! TypeScript compiler (TypeScript 7, the native one) kept warm as a language server.
//!
//! A cold `tsc -p` costs about 150 ms here; a warm `tsc --lsp --stdio` answers a pull-diagnostics
//! request for a changed document in 2–15 ms, so one server process lives as long as the
//! [`TypeChecker`]. It runs on a thread of its own with its own small tokio runtime, so a check
//! does not depend on the caller's runtime and the server is started (and its project loaded)
//! as soon as the checker is made, off the execution path.
//!
//! The server sees a directory of our own with four files: `tsconfig.json` (the settings below),
//! `codemode.d.ts` (the runtime's globals), `tools.d.ts` (the registry's declarations, kept as
//! an open document and changed only when the registry changes) and `program.ts` (the program,
//! an open document changed for every check). The program is wrapped as
//! `export default async function main() {` + program + `}` on its own first line, so every
//! line keeps its number and only first-line columns move.
//!
//! A server that crashes, hangs past the check's time or answers nonsense fails that one check
//! with [`CheckError`] and is replaced by a fresh one for the next.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};

pub use crate::error::Diagnostic;
pub use crate::limits::TypeCheck;
use crate::session::{self, SessionFile};

/// The TypeScript version programs are checked with (the `typescript` npm package).
pub const TYPESCRIPT_VERSION: &str = "7.0.2";

/// What `codemode setup` installs with `npm ci`: the compiler at exactly this version, every
/// package pinned by its integrity hash.
pub const INSTALL_PACKAGE_JSON: &str = include_str!("../js/checker/package.json");
/// The lock file that goes with [`INSTALL_PACKAGE_JSON`].
pub const INSTALL_PACKAGE_LOCK: &str = include_str!("../js/checker/package-lock.json");

/// Compiler settings. Chosen so that what agents really write passes (callbacks and helper
/// functions without annotations, `any`, `JSON.parse`, index access on records, `catch (e)`
/// reading `e.message`, values that may be `undefined`) while the mistakes that silently do
/// the wrong thing fail (a misspelt property or argument, a wrong type, a wrong call). No
/// diagnostic code is filtered out: only the compiler's errors count, its suggestions (an
/// unused variable) never do.
///
/// * `strict` with `noImplicitAny`, `strictNullChecks` and `useUnknownInCatchVariables` off:
///   an untyped parameter is `any` as in JavaScript; `rows.find(…).id` is not an error (it
///   is a runtime `TypeError` the program sees with its line); `catch (e) { e.message }` works.
/// * `noLib` and no `@types`, with copies of the compiler's own ECMAScript library files
///   (`esnext`) instead, no DOM and no Node, cut to what the sandbox has ([`sandbox_lib`]);
///   `codemode.d.ts` adds `console`, timers and `codemode`.
/// * `skipLibCheck`: declarations are ours to get right, not the program's to fail on.
const TSCONFIG: &str = r#"{
  "compilerOptions": {
    "strict": true,
    "noImplicitAny": false,
    "strictNullChecks": false,
    "useUnknownInCatchVariables": false,
    "noEmit": true,
    "target": "esnext",
    "noLib": true,
    "types": [],
    "module": "esnext",
    "moduleDetection": "force",
    "skipLibCheck": true,
    "allowUnreachableCode": true,
    "allowImportingTsExtensions": true,
    "allowUnusedLabels": true
  },
  "files": ["codemode.d.ts", "tools.d.ts", "program.ts"]
}
"#;

/// A body program: `return` and `await` work at its top level.
const BODY_PREFIX: &str = "export default async function main() {";
const BODY_SUFFIX: &str = "\n}\n";
/// A single function expression (`async () => { … }`).
const EXPR_PREFIX: &str = "export default (";
const EXPR_SUFFIX: &str = "\n);\n";

/// The least time a replacement server is given to start (a cold start takes about 150 ms).
const COLD_START: Duration = Duration::from_secs(2);

/// Largest message the server may send; a larger one is a broken server.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Why a check could not be made. The program it was for is not run in `strict` mode.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The compiler could not be started (not installed where it was said to be, say).
    #[error("the TypeScript checker could not start: {0}")]
    Start(String),
    /// The compiler exited, hung past the check's time, or answered something unreadable; a
    /// fresh one serves the next check.
    #[error("the TypeScript checker failed on this program: {0}")]
    Failed(String),
    /// The checker's thread has stopped.
    #[error("the TypeScript checker has stopped")]
    Stopped,
}

/// A warm TypeScript compiler. Cheap to clone; every clone talks to the same server, one check
/// at a time. Dropping the last clone stops the server.
#[derive(Clone)]
pub struct TypeChecker {
    requests: mpsc::UnboundedSender<Request>,
    binary: PathBuf,
}

impl std::fmt::Debug for TypeChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeChecker").field("binary", &self.binary).finish()
    }
}

struct Request {
    program: String,
    function: bool,
    declarations: Arc<str>,
    session: Vec<Arc<SessionFile>>,
    timeout: Duration,
    reply: oneshot::Sender<Result<Vec<Diagnostic>, CheckError>>,
}

impl TypeChecker {
    /// Starts a checker running `binary` (TypeScript 7's native `tsc`; see
    /// [`TypeChecker::installed_binary`]) in `work_dir`, a directory it creates and owns
    /// (its four files are rewritten). The server starts at once, in the background.
    pub fn start(
        binary: impl Into<PathBuf>,
        work_dir: impl Into<PathBuf>,
    ) -> Result<TypeChecker, CheckError> {
        // Absolute: the server runs in `work_dir`, where a relative path would mean another file.
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let binary = absolute(binary.into());
        let work_dir = absolute(work_dir.into());
        if !binary.is_file() {
            return Err(CheckError::Start(format!("{} does not exist", binary.display())));
        }
        let lib_dir = binary.parent().unwrap_or(Path::new("."));
        let lib = sandbox_lib(lib_dir).map_err(CheckError::Start)?;
        write_project(&work_dir, &lib)
            .map_err(|e| CheckError::Start(format!("{}: {e}", work_dir.display())))?;
        let (requests, mut rx) = mpsc::unbounded_channel::<Request>();
        let server_binary = binary.clone();
        std::thread::Builder::new()
            .name("codemode-typecheck".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                runtime.block_on(async move {
                    let mut server: Option<Server> = None;
                    // Warm: start the server and load its project before the first program.
                    if let Ok(mut s) = Server::start(&server_binary, &work_dir).await {
                        if s.check("", false, &Arc::from(""), &[], Duration::from_secs(30)).await.is_ok() {
                            server = Some(s);
                        }
                    }
                    while let Some(request) = rx.recv().await {
                        let result = match server.take() {
                            Some(s) => Ok(s),
                            // A fresh server gets the check's time, but at least what a cold
                            // start needs, so short deadlines cannot keep it from ever warming.
                            None => {
                                let wait = request.timeout.max(COLD_START);
                                tokio::time::timeout(wait, Server::start(&server_binary, &work_dir))
                                    .await
                                    .unwrap_or_else(|_| {
                                        Err(CheckError::Start(format!(
                                            "no answer within {} ms",
                                            wait.as_millis()
                                        )))
                                    })
                            }
                        };
                        let result = match result {
                            Ok(mut s) => {
                                let out = s
                                    .check(
                                        &request.program,
                                        request.function,
                                        &request.declarations,
                                        &request.session,
                                        request.timeout,
                                    )
                                    .await;
                                if out.is_ok() {
                                    server = Some(s);
                                }
                                out
                            }
                            Err(e) => Err(e),
                        };
                        let _ = request.reply.send(result);
                    }
                });
            })
            .map_err(|e| CheckError::Start(e.to_string()))?;
        Ok(TypeChecker { requests, binary })
    }

    /// Where `npm ci` of [`INSTALL_PACKAGE_JSON`] in `install_dir` puts the native compiler for
    /// this platform.
    pub fn installed_binary(install_dir: &Path) -> PathBuf {
        let os = match std::env::consts::OS {
            "windows" => "win32",
            "macos" => "darwin",
            other => other,
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "x64",
            "aarch64" => "arm64",
            "x86" => "ia32",
            other => other,
        };
        let exe = if os == "win32" { "tsc.exe" } else { "tsc" };
        install_dir
            .join("node_modules/@typescript")
            .join(format!("typescript-{os}-{arch}"))
            .join("lib")
            .join(exe)
    }

    /// Writes [`INSTALL_PACKAGE_JSON`] and [`INSTALL_PACKAGE_LOCK`] into `install_dir` for
    /// `npm ci` to install from, atomically. A `package.json` or lock there that an earlier
    /// call did not write is never replaced: the error says which.
    pub fn write_install_files(install_dir: &Path) -> Result<(), String> {
        Self::write_package_files(
            install_dir,
            "codemode-type-checker",
            INSTALL_PACKAGE_JSON,
            INSTALL_PACKAGE_LOCK,
        )
    }

    /// Writes a `package.json` and its lock (the package named `name`) into `install_dir` for
    /// `npm ci`, atomically, as [`TypeChecker::write_install_files`] does; `codemode setup v8`
    /// writes Node.js's ([`crate::NODE_PACKAGE_JSON`]) this way.
    pub fn write_package_files(
        install_dir: &Path,
        name: &str,
        package: &str,
        lock: &str,
    ) -> Result<(), String> {
        let files = [("package.json", package), ("package-lock.json", lock)];
        for (file, text) in files {
            let path = install_dir.join(file);
            let Ok(existing) = std::fs::read_to_string(&path) else { continue };
            let ours =
                existing == text || serde_json::from_str::<Value>(&existing).is_ok_and(|v| v["name"] == name);
            if !ours {
                return Err(format!("{} exists and was not written by codemode", path.display()));
            }
        }
        write_files(install_dir, &files)
            .map_err(|e| format!("cannot write into {}: {e}", install_dir.display()))
    }

    /// The compiler this checker runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Checks `code` (an agent program that transpiled, in the form the transpiler read it)
    /// against `declarations` (the tools' `.d.ts` text; the runtime's own globals are always
    /// there), and what the earlier programs of its session declared. Errors only, at the
    /// agent's positions, in order.
    pub(crate) async fn check(
        &self,
        code: &str,
        function: bool,
        declarations: Arc<str>,
        session: Vec<Arc<SessionFile>>,
        timeout: Duration,
    ) -> Result<Vec<Diagnostic>, CheckError> {
        let (reply, answer) = oneshot::channel();
        let request = Request { program: code.to_string(), function, declarations, session, timeout, reply };
        self.requests.send(request).map_err(|_| CheckError::Stopped)?;
        answer.await.map_err(|_| CheckError::Stopped)?
    }
}

/// Globals of the ECMAScript library that the sandbox leaves out (see `SANDBOX_GLOBALS`):
/// binary buffers and shared memory. Their types stay (other declarations name them); the
/// values go, so a program that uses one fails the check instead of at run time.
const ABSENT_GLOBALS: &[&str] = &[
    "ArrayBuffer",
    "SharedArrayBuffer",
    "Atomics",
    "DataView",
    "Int8Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "Int16Array",
    "Uint16Array",
    "Int32Array",
    "Uint32Array",
    "Float16Array",
    "Float32Array",
    "Float64Array",
    "BigInt64Array",
    "BigUint64Array",
];

/// Namespaces of the library that QuickJS-ng does not have at all: `Intl` (`toLocaleString`
/// and friends exist, without options) and `Temporal`. They are renamed out of reach, and
/// the files that only add to them (`*.intl`, `esnext.temporal`, and `esnext.date`, which
/// is `Date.prototype.toTemporalInstant`) are left out.
const ABSENT_NAMESPACES: &[&str] = &["Intl", "Temporal"];

/// The compiler's `esnext` library from `lib_dir` (where the native compiler keeps its
/// `lib.*.d.ts` files): every file it references, by name, cut to what the sandbox has, so a
/// program the check passes does not stop at a missing global. The files' own
/// `/// <reference>` lines go (`noLib` reads only the files the project lists); they stay
/// files of their own, as some are modules with a `declare global`.
fn sandbox_lib(lib_dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut pending = vec!["esnext".to_string()];
    let mut files = Vec::new();
    while let Some(name) = pending.pop() {
        let skipped = name.ends_with(".intl") || name == "esnext.temporal" || name == "esnext.date";
        if skipped || !seen.insert(name.clone()) {
            continue;
        }
        let path = lib_dir.join(format!("lib.{name}.d.ts"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!("{}: {e} (the compiler's ECMAScript library should be beside it)", path.display())
        })?;
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("/// <reference lib=\"") {
                pending.push(rest.split('"').next().unwrap_or_default().to_string());
                continue;
            }
            if line.starts_with("/// <reference") {
                continue;
            }
            let declared = |prefix: &str| {
                line.strip_prefix(prefix)
                    .map(|rest| rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or(""))
            };
            if declared("declare var ").is_some_and(|n| ABSENT_GLOBALS.contains(&n)) {
                continue;
            }
            match declared("declare namespace ").filter(|n| ABSENT_NAMESPACES.contains(n)) {
                Some(n) => out.push_str(&line.replacen(n, &format!("__NotInTheSandbox_{n}"), 1)),
                None => out.push_str(line),
            }
            out.push('\n');
        }
        files.push((format!("lib.{name}.d.ts"), out));
    }
    Ok(files)
}

fn write_project(dir: &Path, lib: &[(String, String)]) -> std::io::Result<()> {
    // The project lists the library files before its own.
    let mut tsconfig: Value = serde_json::from_str(TSCONFIG).expect("TSCONFIG is JSON");
    let own = tsconfig["files"].as_array().cloned().unwrap_or_default();
    tsconfig["files"] = lib.iter().map(|(name, _)| json!(name)).chain(own).collect();
    let tsconfig = serde_json::to_string_pretty(&tsconfig).expect("serializable");
    let mut files = vec![
        ("tsconfig.json", tsconfig.as_str()),
        ("codemode.d.ts", crate::globals::RUNTIME_DECLARATIONS),
        ("tools.d.ts", "export {};\n"),
        ("program.ts", "export {};\n"),
        (PROJECT_MARKER, "A type-check project of codemode's; it rewrites the files here.\n"),
    ];
    files.extend(lib.iter().map(|(name, text)| (name.as_str(), text.as_str())));
    // Never someone else's project: a directory with files of its own and no marker of ours
    // is refused before anything in it is overwritten.
    if !dir.join(PROJECT_MARKER).exists() {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = files.iter().any(|(f, _)| *f == name)
                    || (name.starts_with('.') && name.ends_with(".tmp"));
                if !ours {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!(
                            "holds {name}, which codemode did not write; the type check needs a directory of its own"
                        ),
                    ));
                }
            }
        }
    }
    write_files(dir, &files)
}

/// The file that marks a directory as a type-check project codemode made.
const PROJECT_MARKER: &str = ".codemode-typecheck";

/// Writes `files` into `dir` (created if needed), each atomically (a temporary file renamed over
/// it), so a second process sharing the directory never reads half a file; a file already
/// holding the text is left alone.
fn write_files(dir: &Path, files: &[(&str, &str)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == *text) {
            continue;
        }
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&temp, text)?;
        std::fs::rename(&temp, &path)?;
    }
    Ok(())
}

/// The wrapper for a program in the form the transpiler read it in, after `imports` (of its
/// session's earlier declarations), all on the first line.
fn wrap(code: &str, function: bool, imports: &str) -> (String, usize) {
    if function {
        let expr = code.trim_end().trim_end_matches(';');
        (format!("{imports}{EXPR_PREFIX}{expr}{EXPR_SUFFIX}"), imports.len() + EXPR_PREFIX.len())
    } else {
        (format!("{imports}{BODY_PREFIX}{code}{BODY_SUFFIX}"), imports.len() + BODY_PREFIX.len())
    }
}

/// Session files the server keeps open; past it the least recently needed are closed (and
/// opened again when needed).
const MAX_OPEN_SESSION_FILES: usize = 256;

/// A language server process and the state of its two open documents.
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
    version: i64,
    /// The declarations the open `tools.d.ts` holds.
    declarations: Option<Arc<str>>,
    /// Session files open now, least recently needed first. Each name is unique and its text
    /// never changes, so a file is opened once and never changed.
    session_files: std::collections::VecDeque<String>,
    root: String,
}

impl Server {
    async fn start(binary: &Path, dir: &Path) -> Result<Server, CheckError> {
        let mut child = Command::new(binary)
            .args(["--lsp", "--stdio"])
            .current_dir(dir)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CheckError::Start(format!("{}: {e}", binary.display())))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let root = format!("file://{}", dir.display());
        let mut server = Server {
            child,
            stdin,
            stdout,
            next_id: 0,
            version: 0,
            declarations: None,
            session_files: Default::default(),
            root,
        };
        let init = json!({
            "processId": std::process::id(),
            "rootUri": server.root,
            "capabilities": {"textDocument": {"diagnostic": {}}},
            "workspaceFolders": [{"uri": server.root, "name": "codemode"}],
        });
        let started = async {
            server.request("initialize", init).await?;
            server.notify("initialized", json!({})).await?;
            let program = server.uri("program.ts");
            server
                .notify(
                    "textDocument/didOpen",
                    json!({"textDocument": {"uri": program, "languageId": "typescript", "version": 0, "text": "export {};\n"}}),
                )
                .await
        };
        match tokio::time::timeout(Duration::from_secs(30), started).await {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => Err(CheckError::Start(e)),
            Err(_) => Err(CheckError::Start("the server did not answer `initialize` within 30 s".into())),
        }
    }

    fn uri(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }

    async fn check(
        &mut self,
        code: &str,
        function: bool,
        declarations: &Arc<str>,
        session: &[Arc<SessionFile>],
        timeout: Duration,
    ) -> Result<Vec<Diagnostic>, CheckError> {
        let (text, shift) = wrap(code, function, &session::imports(session, &[]));
        let checked = async {
            self.open_session_files(session).await?;
            self.diagnostics(&text, declarations).await
        };
        match tokio::time::timeout(timeout, checked).await {
            Ok(Ok(items)) => Ok(diagnostics(&items, code, shift)),
            Ok(Err(e)) => {
                let _ = self.child.start_kill();
                Err(CheckError::Failed(e))
            }
            Err(_) => {
                let _ = self.child.start_kill();
                Err(CheckError::Failed(format!("no answer within {} ms", timeout.as_millis())))
            }
        }
    }

    /// Opens the session's files the server does not have open, closing the least recently
    /// needed others past [`MAX_OPEN_SESSION_FILES`].
    async fn open_session_files(&mut self, session: &[Arc<SessionFile>]) -> Result<(), String> {
        for file in session {
            if let Some(at) = self.session_files.iter().position(|n| *n == file.name) {
                let name = self.session_files.remove(at).expect("present");
                self.session_files.push_back(name);
                continue;
            }
            let uri = self.uri(&file.name);
            let params = json!({"textDocument": {"uri": uri, "languageId": "typescript", "version": 0, "text": file.text}});
            self.notify("textDocument/didOpen", params).await?;
            self.session_files.push_back(file.name.clone());
        }
        while self.session_files.len() > MAX_OPEN_SESSION_FILES.max(session.len()) {
            let name = self.session_files.pop_front().expect("not empty");
            self.notify("textDocument/didClose", json!({"textDocument": {"uri": self.uri(&name)}})).await?;
        }
        Ok(())
    }

    async fn diagnostics(&mut self, program: &str, declarations: &Arc<str>) -> Result<Vec<Value>, String> {
        self.version += 1;
        let version = self.version;
        // The same registry version shares one text: usually a pointer comparison.
        let same =
            self.declarations.as_ref().is_some_and(|d| Arc::ptr_eq(d, declarations) || d == declarations);
        if !same {
            let uri = self.uri("tools.d.ts");
            let method =
                if self.declarations.is_none() { "textDocument/didOpen" } else { "textDocument/didChange" };
            let params = if self.declarations.is_none() {
                json!({"textDocument": {"uri": uri, "languageId": "typescript", "version": version, "text": &**declarations}})
            } else {
                json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": &**declarations}]})
            };
            self.notify(method, params).await?;
            self.declarations = Some(Arc::clone(declarations));
        }
        let uri = self.uri("program.ts");
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": program}]}),
        )
        .await?;
        let report = self.request("textDocument/diagnostic", json!({"textDocument": {"uri": uri}})).await?;
        match report.get("items") {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Err(format!("a diagnostic report without items: {report:.200}")),
        }
    }

    async fn send(&mut self, message: &Value) -> Result<(), String> {
        let body = message.to_string();
        let framed = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        self.stdin.write_all(framed.as_bytes()).await.map_err(|e| format!("writing to the server: {e}"))?;
        self.stdin.flush().await.map_err(|e| format!("writing to the server: {e}"))
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params})).await
    }

    /// Sends a request and reads until its response; the server's own requests in between get
    /// empty answers (this client offers no capabilities they could need).
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        loop {
            let message = self.receive().await?;
            match (message.get("id"), message.get("method")) {
                (Some(got), None) if got == &json!(id) => {
                    if let Some(error) = message.get("error") {
                        return Err(format!("{method} failed: {error}"));
                    }
                    return Ok(message.get("result").cloned().unwrap_or(Value::Null));
                }
                (Some(their), Some(m)) => {
                    let result = match (m.as_str(), message["params"]["items"].as_array()) {
                        (Some("workspace/configuration"), Some(items)) => {
                            json!(vec![Value::Null; items.len()])
                        }
                        _ => Value::Null,
                    };
                    let their = their.clone();
                    self.send(&json!({"jsonrpc": "2.0", "id": their, "result": result})).await?;
                }
                _ => {}
            }
        }
    }

    async fn receive(&mut self) -> Result<Value, String> {
        let mut length = None;
        loop {
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .await
                .map_err(|e| format!("reading from the server: {e}"))?;
            if n == 0 {
                return Err("the server exited".into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length:") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let length =
            length.filter(|&n| n <= MAX_MESSAGE_BYTES).ok_or("a message without a usable Content-Length")?;
        let mut body = vec![0; length];
        self.stdout.read_exact(&mut body).await.map_err(|e| format!("reading from the server: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("the server sent invalid JSON: {e}"))
    }
}

/// The server's error diagnostics (severity 1) at the agent's positions: the wrapper is on the
/// first line only, and LSP columns count UTF-16 units.
fn diagnostics(items: &[Value], code: &str, shift: usize) -> Vec<Diagnostic> {
    let lines: Vec<&str> = crate::nesting::lines(code);
    let mut out = Vec::new();
    for item in items {
        if item["severity"].as_u64().unwrap_or(1) != 1 {
            continue;
        }
        let line = item["range"]["start"]["line"].as_u64().unwrap_or(0) as usize;
        let mut character = item["range"]["start"]["character"].as_u64().unwrap_or(0) as usize;
        if line == 0 {
            character = character.saturating_sub(shift);
        }
        let (line, column) = match lines.get(line) {
            Some(text) => (line + 1, utf16_to_chars(text, character) + 1),
            // In the wrapper's closing lines: the end of the agent's last line.
            None => (lines.len().max(1), lines.last().map_or(0, |l| l.chars().count()) + 1),
        };
        let code = match &item["code"] {
            Value::Number(n) => n.as_u64().unwrap_or(0) as u32,
            Value::String(s) => s.parse().unwrap_or(0),
            _ => 0,
        };
        let message = item["message"].as_str().unwrap_or_default().to_string();
        out.push(Diagnostic { line: line as u32, column: column as u32, code, message });
    }
    out
}

fn utf16_to_chars(text: &str, units: usize) -> usize {
    let mut seen = 0;
    for (i, c) in text.chars().enumerate() {
        if seen >= units {
            return i;
        }
        seen += c.len_utf16();
    }
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_come_back_to_the_agents_source() {
        let item = |line: u64, character: u64| json!({"severity": 1, "code": 2551, "message": "m", "range": {"start": {"line": line, "character": character}}});
        let code = "const a = 1;\nconst é = x.y;";
        let shift = BODY_PREFIX.len() as u64;
        let got = diagnostics(&[item(0, shift + 6), item(1, 11), item(2, 0)], code, shift as usize);
        let at: Vec<(u32, u32)> = got.iter().map(|d| (d.line, d.column)).collect();
        assert_eq!(at, vec![(1, 7), (2, 12), (2, 15)]);
        let hint = json!({"severity": 4, "code": 6133, "message": "unused", "range": {"start": {"line": 0, "character": 0}}});
        assert!(diagnostics(&[hint], code, 0).is_empty());
    }

    #[test]
    fn utf16_columns_become_character_columns() {
        assert_eq!(utf16_to_chars("😀x", 2), 1);
        assert_eq!(utf16_to_chars("abc", 2), 2);
    }
}
