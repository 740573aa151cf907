//! One dependency direction: each top-level module of `src/` uses only the modules before it
//! in [`LAYERS`] (ARCHITECTURE.md draws it). A `use` of a later module is a cycle in the
//! making; the test names the file, the line and the two modules.

/// Leaf helpers and names first, the faces last.
const LAYERS: &[&str] = &[
    "typegen",
    "definitions",
    "build",
    "globals",
    "telemetry",
    "error",
    "nesting",
    "flow",
    "rpc",
    "limits",
    "params",
    "outcome",
    "privacy",
    "transpile",
    "skills",
    "registry",
    "suggest",
    "session",
    "typecheck",
    "prompt",
    "bridge",
    "sandbox",
    "sealed",
    "engine",
    "demo",
    "mcp",
    "daemon",
    "config",
    "fuzz",
];

/// The root's re-exports, by the module that defines them: `crate::Engine` is a use of `engine`.
const ROOT_NAMES: &[(&str, &str)] = &[
    ("Engine", "engine"),
    ("EngineBuilder", "engine"),
    ("ExecuteOptions", "engine"),
    ("Isolation", "engine"),
    ("EngineKind", "engine"),
    ("CheckError", "typecheck"),
    ("TypeChecker", "typecheck"),
    ("RUNTIME_DECLARATIONS", "globals"),
    ("SANDBOX_GLOBALS", "globals"),
    ("PendingCall", "error"),
    ("Diagnostic", "error"),
    ("RegistryError", "error"),
    ("Outcome", "outcome"),
    ("SessionLimits", "session"),
    ("Privacy", "privacy"),
    ("PrivacyError", "privacy"),
    ("Session", "engine"),
    ("Tool", "registry"),
    ("Skill", "skills"),
    ("SkillStore", "skills"),
    ("ToolHandler", "registry"),
    ("ToolOutput", "registry"),
];

#[test]
fn each_module_uses_only_the_modules_below_it() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut wrong = Vec::new();
    let mut seen = 0;
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs");
        let Some(rank) = LAYERS.iter().position(|m| *m == module) else {
            // The binary (`src/bin/`) is a crate of its own over the public API.
            assert!(["lib", "bin"].contains(&module), "{module} (src/{}) is in no layer", relative.display());
            continue;
        };
        seen += 1;
        for (n, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let name: String =
                    line[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let used = ROOT_NAMES.iter().find(|(n, _)| *n == name).map_or(name.as_str(), |(_, m)| m);
                let Some(used_rank) = LAYERS.iter().position(|m| *m == used) else {
                    assert!(
                        name.is_empty() || name.chars().next().unwrap().is_lowercase(),
                        "src/{}:{}: crate::{name} is a re-export the test does not know; add it to ROOT_NAMES",
                        relative.display(),
                        n + 1
                    );
                    continue;
                };
                if used_rank > rank {
                    wrong.push(format!("src/{}:{}: {module} uses {used}", relative.display(), n + 1));
                }
            }
        }
    }
    assert!(seen > 30, "only {seen} files read");
    assert!(wrong.is_empty(), "uses against the layering:\n{}", wrong.join("\n"));
}
