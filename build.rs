//! Checks the demo tool definitions before the crate embeds them: a broken schema file fails
//! the build with the file and what is wrong, instead of failing at run time.

use std::path::Path;

fn main() {
    let dir = Path::new("schemas/demo");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("schemas/demo exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        println!("cargo::rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", path.display()));
        for key in ["name", "description"] {
            if !value[key].is_string() {
                panic!("{}: `{key}` must be a string", path.display());
            }
        }
        if !value["inputSchema"].is_object() {
            panic!("{}: `inputSchema` must be an object", path.display());
        }
    }
}
