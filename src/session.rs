//! Sessions: executions that share a sandbox, as the steps of a REPL do, and a store of JSON
//! values that outlives the sandbox.
//!
//! The table here is the engine's bookkeeping: which sessions are live, on which sandbox
//! thread each one's sandbox lives (a QuickJS runtime cannot move between threads), what each
//! has stored and declared, and which ended how, so that the next use of an ended session says
//! so instead of starting silently empty. The sandboxes themselves stay on their threads
//! (`engine.rs`); this module only tells a thread when to drop one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::outcome::SessionReset;

/// Limits on sessions, for the whole engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions alive at once; starting one more ends the least recently used idle one
    /// (reported as `evicted` on its next use).
    pub max_sessions: usize,
    /// A session unused this long ends (reported as `expired` on its next use).
    pub idle_timeout: Duration,
    /// Heap a session's sandbox may hold across its executions; an execution that would pass it
    /// ends with `memory_limit` and the sandbox is replaced.
    pub memory_bytes: usize,
    /// Bytes of keys and JSON values `codemode.store` may keep per session.
    pub store_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: 64,
            idle_timeout: Duration::from_secs(30 * 60),
            memory_bytes: 256 << 20,
            store_bytes: 4 << 20,
        }
    }
}

/// How many ended sessions are remembered, so their next use is reported.
const REMEMBERED_ENDS: usize = 4096;

/// One earlier program of a session, as the type checker sees it: its source at a module's top
/// level (so its declarations keep their inferred types), importing what came before it and
/// exporting what it declared.
#[derive(Debug)]
pub(crate) struct SessionFile {
    /// A file name unique in the engine (`session-ID-N.ts`).
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) names: Vec<String>,
}

/// The largest total of earlier programs a session's type checks see; past it the oldest are
/// forgotten (their names then read as `any`).
const MAX_DECLARATION_BYTES: usize = 1 << 20;

/// One live session.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// Unique in the engine; the sandbox thread keys the sandbox by it.
    pub(crate) id: u64,
    pub(crate) key: String,
    /// The sandbox thread that holds its sandbox.
    pub(crate) worker: usize,
    /// One execution at a time, type check included, so each program is checked against what
    /// the one before it declared.
    pub(crate) turn: tokio::sync::Mutex<()>,
    pub(crate) store: Mutex<Store>,
    pub(crate) state: Mutex<Progress>,
    /// Its private values' tokens: consistent across its executions, resolved only in them.
    pub(crate) vault: Arc<Mutex<crate::privacy::Vault>>,
}

impl SessionState {
    /// Neither running a program nor waiting on a person's decision (a paused execution):
    /// only such a session may be evicted or expire.
    fn at_rest(&self) -> bool {
        self.turn.try_lock().is_ok() && self.state.lock().expect("session lock").paused.is_none()
    }
}

/// What a session has done so far.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) executions: u64,
    pub(crate) last_used: Option<Instant>,
    /// Why the session it replaces ended, told in its first outcome.
    pub(crate) notice: Option<SessionReset>,
    /// Earlier programs that declared something, oldest first.
    pub(crate) files: Vec<Arc<SessionFile>>,
    /// The approval the session's paused execution waits on: no other program runs until it
    /// is decided (or expires).
    pub(crate) paused: Option<String>,
    files_bytes: usize,
    next_file: u64,
}

impl Progress {
    /// Keeps a program that ran and declared `names` for the next programs' type checks.
    pub(crate) fn declared(&mut self, session: u64, code: &str, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        self.next_file += 1;
        let name = format!("session-{session}-{}.ts", self.next_file);
        let text = format!("{}{code}\nexport {{ {} }};\n", imports(&self.files, &names), names.join(", "));
        self.files_bytes += text.len();
        self.files.push(Arc::new(SessionFile { name, text, names }));
        while self.files_bytes > MAX_DECLARATION_BYTES && self.files.len() > 1 {
            let old = self.files.remove(0);
            self.files_bytes -= old.text.len();
        }
    }
}

/// `import` lines for the names `files` declare, each from the latest file declaring it, all on
/// one line; names in `except` are left out (the program declares them itself).
pub(crate) fn imports(files: &[Arc<SessionFile>], except: &[String]) -> String {
    let mut from: BTreeMap<&str, &str> = BTreeMap::new();
    for file in files {
        for name in &file.names {
            if !except.contains(name) {
                from.insert(name, &file.name);
            }
        }
    }
    let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, file) in from {
        by_file.entry(file).or_default().push(name);
    }
    by_file
        .iter()
        .map(|(file, names)| format!("import {{ {} }} from \"./{file}\"; ", names.join(", ")))
        .collect()
}

/// A session's stored values, as JSON text.
#[derive(Debug, Default)]
pub(crate) struct Store {
    values: BTreeMap<String, String>,
    bytes: usize,
}

impl Store {
    /// Keeps `value` under `key` (removes it when `value` is `None`), within `limit` bytes.
    pub(crate) fn put(&mut self, key: &str, value: Option<&Value>, limit: usize) -> Result<(), String> {
        let old = self.values.get(key).map_or(0, |v| key.len() + v.len());
        let Some(value) = value else {
            self.values.remove(key);
            self.bytes -= old;
            return Ok(());
        };
        let text = value.to_string();
        let bytes = self.bytes - old + key.len() + text.len();
        if bytes > limit {
            return Err(format!(
                "the session's store would hold {bytes} bytes, more than its {limit} (store_bytes); \
                 remove values with codemode.store(key, undefined)"
            ));
        }
        self.bytes = bytes;
        self.values.insert(key.to_string(), text);
        Ok(())
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// A session's sandbox, as its sandbox thread knows it: the thread, and the session's id.
pub(crate) type SandboxOf = (usize, u64);

/// The engine's sessions.
pub(crate) struct Sessions {
    pub(crate) limits: SessionLimits,
    table: Mutex<Table>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Table {
    live: HashMap<String, Arc<SessionState>>,
    ended: HashMap<String, SessionReset>,
    ended_order: VecDeque<String>,
    /// Live sessions per sandbox thread, to place a new one on the least loaded.
    per_worker: Vec<usize>,
}

/// Why a session could not be started.
pub(crate) const ALL_BUSY: &str =
    "too many live sessions: every one of them is running an execution or waiting on an approval";

impl Sessions {
    pub(crate) fn new(limits: SessionLimits, workers: usize) -> Sessions {
        Sessions {
            limits,
            table: Mutex::new(Table { per_worker: vec![0; workers], ..Table::default() }),
            next_id: AtomicU64::new(1),
        }
    }

    /// The live session `key`, started if there is none: the sessions that ended to make room
    /// for it, or idle past the timeout, are returned so their sandboxes are dropped.
    pub(crate) fn open(&self, key: &str) -> Result<(Arc<SessionState>, Vec<SandboxOf>), String> {
        let now = Instant::now();
        let mut table = self.table.lock().expect("sessions lock");
        let mut ended = self.expire(&mut table, now);
        if let Some(live) = table.live.get(key) {
            return Ok((Arc::clone(live), ended));
        }
        if table.live.len() >= self.limits.max_sessions.max(1) {
            // The least recently used session not running now.
            let victim = table
                .live
                .values()
                .filter(|s| s.at_rest())
                .min_by_key(|s| s.state.lock().expect("session lock").last_used)
                .map(|s| s.key.clone());
            let Some(victim) = victim else { return Err(ALL_BUSY.into()) };
            let message = format!(
                "this session had ended to make room: at most {} sessions live at once, and it was the \
                 least recently used; its declarations, globals and stored values are gone",
                self.limits.max_sessions
            );
            ended.push(self.end(&mut table, &victim, Some(reset("evicted", message))));
        }
        let worker = (0..table.per_worker.len()).min_by_key(|&w| table.per_worker[w]).unwrap_or(0);
        table.per_worker[worker] += 1;
        let notice = table.ended.remove(key);
        let state = Arc::new(SessionState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            key: key.to_string(),
            worker,
            turn: tokio::sync::Mutex::new(()),
            store: Mutex::new(Store::default()),
            state: Mutex::new(Progress { last_used: Some(now), notice, ..Progress::default() }),
            vault: Default::default(),
        });
        table.live.insert(key.to_string(), Arc::clone(&state));
        Ok((state, ended))
    }

    /// Ends the session `key` at the caller's request: its next use starts a new one, and says
    /// nothing of this one. The sandbox to drop, if it was live.
    pub(crate) fn close(&self, key: &str) -> Option<SandboxOf> {
        let mut table = self.table.lock().expect("sessions lock");
        table.ended.remove(key);
        table.live.contains_key(key).then(|| self.end(&mut table, key, None))
    }

    /// Ends idle sessions now (the sandbox threads call this while they wait): the sandboxes to
    /// drop.
    pub(crate) fn sweep(&self) -> Vec<SandboxOf> {
        let mut table = self.table.lock().expect("sessions lock");
        self.expire(&mut table, Instant::now())
    }

    /// True while `state` is the live session of its name (not ended since it was opened).
    pub(crate) fn is_live(&self, state: &SessionState) -> bool {
        let table = self.table.lock().expect("sessions lock");
        table.live.get(&state.key).is_some_and(|live| live.id == state.id)
    }

    /// The names of the live sessions.
    pub(crate) fn live(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.table.lock().expect("sessions lock").live.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn expire(&self, table: &mut Table, now: Instant) -> Vec<SandboxOf> {
        let idle = self.limits.idle_timeout;
        let expired: Vec<String> = table
            .live
            .values()
            .filter(|s| s.at_rest())
            .filter(|s| {
                let last = s.state.lock().expect("session lock").last_used;
                last.is_some_and(|t| now.saturating_duration_since(t) >= idle)
            })
            .map(|s| s.key.clone())
            .collect();
        expired
            .into_iter()
            .map(|key| {
                let message = format!(
                    "this session had ended after {} s idle (its idle timeout); its declarations, globals \
                     and stored values are gone",
                    idle.as_secs_f64()
                );
                self.end(table, &key, Some(reset("expired", message)))
            })
            .collect()
    }

    fn end(&self, table: &mut Table, key: &str, why: Option<SessionReset>) -> SandboxOf {
        let state = table.live.remove(key).expect("a live session");
        table.per_worker[state.worker] -= 1;
        if let Some(why) = why {
            if table.ended.insert(key.to_string(), why).is_none() {
                table.ended_order.push_back(key.to_string());
            }
            while table.ended_order.len() > REMEMBERED_ENDS {
                if let Some(old) = table.ended_order.pop_front() {
                    table.ended.remove(&old);
                }
            }
        }
        (state.worker, state.id)
    }
}

pub(crate) fn reset(reason: &str, message: String) -> SessionReset {
    SessionReset { reason: reason.to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keeps_its_byte_limit() {
        let mut store = Store::default();
        store.put("a", Some(&serde_json::json!([1, 2, 3])), 10).unwrap();
        assert_eq!(store.get("a"), Some("[1,2,3]"));
        let e = store.put("b", Some(&serde_json::json!("xxxx")), 10).unwrap_err();
        assert!(e.starts_with("the session's store would hold 15 bytes, more than its 10"), "{e}");
        store.put("a", None, 10).unwrap();
        store.put("b", Some(&serde_json::json!("xxxx")), 10).unwrap();
        assert_eq!((store.get("a"), store.bytes), (None, 7));
    }

    #[test]
    fn imports_name_the_latest_file_of_each_name() {
        let file = |name: &str, names: &[&str]| {
            Arc::new(SessionFile {
                name: name.into(),
                text: String::new(),
                names: names.iter().map(|n| n.to_string()).collect(),
            })
        };
        let files = [file("a.ts", &["x", "y"]), file("b.ts", &["y", "z"])];
        assert_eq!(
            imports(&files, &["z".to_string()]),
            "import { x } from \"./a.ts\"; import { y } from \"./b.ts\"; "
        );
    }

    #[test]
    fn the_least_recently_used_session_makes_room() {
        let sessions = Sessions::new(SessionLimits { max_sessions: 2, ..SessionLimits::default() }, 2);
        let (a, _) = sessions.open("a").unwrap();
        let (b, _) = sessions.open("b").unwrap();
        assert_ne!(a.worker, b.worker);
        a.state.lock().unwrap().last_used = Some(Instant::now());
        let (_, dropped) = sessions.open("c").unwrap();
        assert_eq!(dropped, vec![(b.worker, b.id)]);
        assert_eq!(sessions.live(), ["a", "c"]);
        let (b2, _) = sessions.open("b").unwrap();
        let notice = b2.state.lock().unwrap().notice.clone().unwrap();
        assert_eq!(notice.reason, "evicted");
        // A closed session starts again without a notice.
        sessions.close("b");
        let (b3, _) = sessions.open("b").unwrap();
        assert!(b3.state.lock().unwrap().notice.is_none());
    }
}
