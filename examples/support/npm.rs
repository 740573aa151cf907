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
