//! Compiled scripts, shared by every sandbox thread and bounded in entries and bytes.

use super::*;

/// Compiled scripts, keyed by their exact source, shared by all sandboxes of an engine.
#[derive(Default)]
pub(crate) struct ScriptCache {
    scripts: Mutex<Scripts>,
}

#[derive(Default)]
pub(super) struct Scripts {
    map: HashMap<Arc<str>, Arc<Script>>,
    bytes: usize,
}

/// Entries kept before the cache starts over; agent programs repeat in bursts, so a simple
/// bound beats bookkeeping.
pub(super) const SCRIPT_CACHE_ENTRIES: usize = 512;

/// Bytes of source, JavaScript and bytecode kept before the cache starts over: 512 entries of
/// any size once let 110 distinct 15 MB programs abort the daemon. A script of more than a
/// quarter of this is not kept at all.
pub(super) const SCRIPT_CACHE_BYTES: usize = 64 << 20;

pub(crate) struct Script {
    pub(super) bytecode: Vec<u8>,
    pub(crate) compiled: Compiled,
    /// The hint for a run of this program that returns nothing, made at most once per source
    /// (it parses the program again).
    pub(super) hint: std::sync::OnceLock<Option<String>>,
}

impl Script {
    pub(super) fn new(bytecode: Vec<u8>, compiled: Compiled) -> Self {
        Script { bytecode, compiled, hint: Default::default() }
    }

    pub(crate) fn hint(&self, source: &str) -> Option<String> {
        self.hint.get_or_init(|| transpile::dropped_value_hint(source)).clone()
    }

    fn bytes(&self, source: &str) -> usize {
        source.len() + self.bytecode.len() + self.compiled.js.len()
    }
}

impl ScriptCache {
    pub(super) fn get(&self, source: &str) -> Option<Arc<Script>> {
        self.scripts.lock().expect("script cache lock").map.get(source).cloned()
    }

    pub(super) fn put(&self, source: Arc<str>, script: Arc<Script>) {
        let cost = script.bytes(&source);
        if cost > SCRIPT_CACHE_BYTES / 4 {
            return;
        }
        let mut scripts = self.scripts.lock().expect("script cache lock");
        if scripts.map.len() >= SCRIPT_CACHE_ENTRIES || scripts.bytes + cost > SCRIPT_CACHE_BYTES {
            scripts.map.clear();
            scripts.bytes = 0;
        }
        if let Some(old) = scripts.map.insert(Arc::clone(&source), script) {
            scripts.bytes -= old.bytes(&source);
        }
        scripts.bytes += cost;
    }

    /// Entries and bytes held now.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let scripts = self.scripts.lock().expect("script cache lock");
        (scripts.map.len(), scripts.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_cache_is_bounded_in_bytes_not_only_entries() {
        let cache = ScriptCache::default();
        let script = |js_bytes: usize| {
            let compiled = transpile::transpile("return 1").unwrap();
            Arc::new(Script::new(vec![0; js_bytes], compiled))
        };
        // 110 distinct 1 MB programs: never more than the byte bound held.
        for i in 0..110 {
            cache.put(Arc::from(format!("{i}")), script(1 << 20));
            let (_, bytes) = cache.held();
            assert!(bytes <= SCRIPT_CACHE_BYTES, "{bytes}");
        }
        assert!(cache.held().0 >= 32, "{:?}", cache.held());
        // One larger than a quarter of the bound is not kept.
        cache.put(Arc::from("huge"), script(SCRIPT_CACHE_BYTES / 4 + 1));
        assert!(cache.get("huge").is_none());
    }
}
