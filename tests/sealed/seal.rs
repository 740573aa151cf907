//! What only sealed workers have: each layer of the seal, seen from outside the worker, and a
//! worker that dies or will not stop costing one execution while the daemon keeps serving.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use codemode::{ErrorKind, Isolation};
use serde_json::{json, Value};

use crate::harness::*;

/// `codemode serve --stdio` with sealed workers (one sandbox thread, so one worker), started
/// with the test hooks.
struct Served {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Served {
    fn start() -> Served {
        let dir = std::env::temp_dir().join(format!("codemode-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("codemode.toml");
        std::fs::write(&config, "[pool]\nworkers = 1\n\n[engine]\nisolation = \"process\"\n").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_codemode"))
            .args(["serve", "--stdio", "--typecheck", "off", "--config"])
            .arg(&config)
            .env("CODEMODE_TEST_HOOKS", "1")
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Served { child, stdin, stdout, next: 0 }
    }

    fn execute(&mut self, code: &str) -> Value {
        self.next += 1;
        let request =
            json!({"jsonrpc": "2.0", "id": self.next, "method": "code/execute", "params": {"code": code}});
        writeln!(self.stdin, "{request}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["id"], json!(self.next), "{answer}");
        answer["result"].clone()
    }

    /// The daemon's worker processes: its children started with the worker flag.
    fn workers(&self) -> Vec<u32> {
        let mut found = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id())).unwrap() {
            let children = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
            for pid in children.split_whitespace() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(codemode::sealed::WORKER_FLAG) {
                    found.push(pid.parse().unwrap());
                }
            }
        }
        found
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in the status of {pid}"))
        .trim()
        .to_string()
}

/// Whether this kernel lets a process leave its network namespace (the worker does the same
/// as soon as it starts, so the two must agree).
fn kernel_allows_new_namespaces() -> bool {
    let out = Command::new("unshare").args(["-n", "true"]).stderr(Stdio::null()).status();
    let direct = out.is_ok_and(|s| s.success());
    let user = Command::new("unshare")
        .args(["-Urn", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    direct || user
}

#[test]
fn every_worker_is_sealed_before_it_runs_a_program() {
    let mut served = Served::start();
    assert_eq!(served.execute("return 1 + 1")["value"], json!(2));
    let workers = served.workers();
    assert_eq!(workers.len(), 1, "one sandbox thread, one worker: {workers:?}");
    let pid = workers[0];
    // 2: a seccomp-bpf filter is installed; no_new_privs is what allows it unprivileged.
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let limit = |name: &str| {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().skip(name.split_whitespace().count()).take(2).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(limit("Max open files"), "16 16");
    assert_eq!(limit("Max file size"), "0 0");
    assert_eq!(limit("Max core file size"), "0 0");
    // Nothing of the daemon's environment reached the worker.
    assert_eq!(std::fs::read(format!("/proc/{pid}/environ")).unwrap(), b"");
    let ns = |pid: &str, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let daemon = served.child.id().to_string();
    if kernel_allows_new_namespaces() {
        assert_ne!(
            ns(&pid.to_string(), "net"),
            ns(&daemon, "net"),
            "the worker has a network namespace of its own"
        );
        assert_ne!(ns(&pid.to_string(), "mnt"), ns(&daemon, "mnt"));
    } else {
        assert_eq!(ns(&pid.to_string(), "net"), ns(&daemon, "net"));
        eprintln!(
            "this kernel refuses new namespaces: the worker keeps the daemon's (the seal report says why)"
        );
    }
}

/// A worker's threads: name, scheduling policy (field 41 of `stat`) and seccomp mode.
fn threads(pid: u32) -> Vec<(String, u32, String)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: u32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{tid}/stat")).unwrap();
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        found.push((
            stat[open + 1..close].to_string(),
            fields[41 - 3].parse().unwrap(),
            status_field(tid, "Seccomp"),
        ));
    }
    found.sort();
    found
}

#[test]
fn a_warm_worker_builds_and_frees_its_sandboxes_on_a_sealed_thread_at_idle_priority() {
    let mut served = Served::start();
    // Sandboxes built by the builder and run by the serving thread: each run is fresh, and
    // the stack limit is the serving thread's (a recursion 500 deep runs, an endless
    // one is a RangeError, not a crash or an overflow at the first call).
    for i in 0..20 {
        let result = served.execute(&format!("globalThis.seen ??= 0; seen++; return [seen, {i} * 2]"));
        assert_eq!(result["value"], json!([1, i * 2]), "{result}");
    }
    let deep = served.execute("const f = (n) => n === 0 ? 0 : 1 + f(n - 1); return f(500)");
    assert_eq!(deep["value"], json!(500), "{deep}");
    let endless =
        served.execute("const f = (n) => 1 + f(n); try { f(0) } catch (e) { return [e.name, e.message] }");
    assert_eq!(endless["value"], json!(["RangeError", "Maximum call stack size exceeded"]), "{endless}");
    let workers = served.workers();
    assert_eq!(workers.len(), 1);
    // The main thread, the serving thread (both named after the binary) and the builder, its
    // name cut to 15 bytes; 0 is SCHED_OTHER and 5 SCHED_IDLE; all sealed.
    let expected = [("codemode", 0, "2"), ("codemode", 0, "2"), ("codemode-builde", 5, "2")];
    let expected: Vec<(String, u32, String)> =
        expected.iter().map(|(n, p, s)| (n.to_string(), *p, s.to_string())).collect();
    assert_eq!(threads(workers[0]), expected);
}

#[test]
fn a_forbidden_system_call_kills_only_its_worker_and_the_daemon_serves_on() {
    let mut served = Served::start();
    assert_eq!(served.execute("return 1 + 1")["value"], json!(2));
    for call in ["socket", "openat", "execve"] {
        let before = served.workers();
        let result = served.execute(&format!("__codemodeSyscall({call:?}); return 'not reached'"));
        assert_eq!(result["error"]["kind"], json!("internal"), "{call}: {result}");
        let message = result["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "the sandbox's worker process ended during the execution (killed by signal 31 (SIGSYS: a system \
                 call outside its seccomp allow-list)"
            ),
            "{call}: {message}"
        );
        assert!(served.alive(), "the daemon survives the worker's death");
        assert_eq!(served.execute("return 6 * 7")["value"], json!(42), "a new worker serves after {call}");
        let after = served.workers();
        assert_eq!(after.len(), 1);
        assert_ne!(before, after, "{call}: the dead worker was replaced");
    }
}

#[test]
fn a_program_stuck_where_no_interrupt_reaches_is_stopped_by_killing_its_worker() {
    let mut served = Served::start();
    let started = std::time::Instant::now();
    let result = served.execute("__codemodeSyscall('spin')");
    assert_eq!(result["error"]["kind"], json!("timeout"), "{result}");
    assert_eq!(
        result["error"]["message"],
        json!("the program ran past its 10000 ms deadline (the program did not stop, so its worker process was killed)")
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(11),
        "the worker had its deadline and a grace second"
    );
    assert_eq!(served.execute("return 'next'")["value"], json!("next"));
}

#[tokio::test]
async fn a_worker_without_test_hooks_has_no_way_to_make_system_calls() {
    assert_eq!(crate::ISOLATION, Isolation::Process);
    assert_eq!(engine().isolation(), Isolation::Process);
    assert_eq!(value("return typeof __codemodeSyscall").await, json!("undefined"));
    let seal = engine().seal().expect("a sealed engine reports its seal");
    assert!(seal.seccomp);
    assert_eq!(seal.rlimits, ["fsize=0", "core=0", "nofile=16", "memlock=0"]);
    assert_eq!(seal.namespaces.is_empty(), seal.namespaces_refused.is_some(), "{seal:?}");
    // What Landlock can do here decides what the report must say: the seal asks for ABI 6.
    let abi =
        unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    match abi {
        6.. => assert_eq!(seal.landlock, "fully enforced"),
        1..=5 => assert_eq!(seal.landlock, "partially enforced (an older Landlock ABI)"),
        _ => assert!(seal.landlock.starts_with("not enforced ("), "{}", seal.landlock),
    }
    failure("return globalThis.process.pid", ErrorKind::Exception).await;
}

#[tokio::test]
async fn a_worker_that_cannot_start_fails_the_build_and_says_what_to_do() {
    let e = codemode::Engine::builder()
        .isolation(Isolation::Process)
        .worker_program("/bin/true")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("could not start a sealed sandbox process: the worker /bin/true did not start ("),
        "{e}"
    );
    assert!(
        e.ends_with("a binary that runs sandboxes in sealed processes calls codemode::sealed::serve_if_worker() first thing in main"),
        "{e}"
    );
}
