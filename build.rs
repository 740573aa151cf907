//! Build-time work, all into OUT_DIR:
//! * compiles the sandbox prelude (`js/prelude.js`) to QuickJS bytecode, behind a header that
//!   names the QuickJS version it was made with (the runtime checks it before loading);
//! * checks the demo tool definitions before the crate embeds them: a broken schema file fails
//!   the build with the file and what is wrong, instead of failing at run time.

use std::path::{Path, PathBuf};

use rquickjs::module::WriteOptions;
use rquickjs::{CatchResultExt, Context, Module, Runtime};

/// Must match `PRELUDE_MAGIC` in src/sandbox/mod.rs.
const PRELUDE_MAGIC: &[u8] = b"codemode-prelude\0";

fn main() {
    prelude();
    demo_schemas();
}

fn prelude() {
    println!("cargo::rerun-if-changed=js/prelude.js");
    let source = std::fs::read_to_string("js/prelude.js").expect("js/prelude.js is readable");
    let rt = Runtime::new().expect("QuickJS runtime");
    let ctx = Context::full(&rt).expect("QuickJS context");
    let bytecode = ctx.with(|ctx| {
        let module = Module::declare(ctx.clone(), "codemode:prelude", source)
            .catch(&ctx)
            .unwrap_or_else(|e| panic!("js/prelude.js does not compile: {e}"));
        // Its source and line tables are never needed: its frames are dropped from stacks, and
        // it is read once per sandbox, so a smaller image is faster.
        module
            .write(WriteOptions { strip_source: true, strip_debug: true, ..WriteOptions::default() })
            .expect("prelude bytecode")
    });
    let version = unsafe { std::ffi::CStr::from_ptr(rquickjs::qjs::JS_GetVersion()) };
    let mut out = Vec::with_capacity(PRELUDE_MAGIC.len() + 16 + bytecode.len());
    out.extend_from_slice(PRELUDE_MAGIC);
    out.extend_from_slice(version.to_bytes_with_nul());
    out.extend_from_slice(&bytecode);
    let path = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("prelude.qjsbc");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn demo_schemas() {
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
