//! Build-time work, all into OUT_DIR:
//! * compiles the sandbox prelude (`js/prelude.js`) to QuickJS bytecode, behind a header that
//!   names the QuickJS version it was made with (the runtime checks it before loading);
//! * turns the demo tool definitions into declarations and typed Rust with the library's own
//!   build helper (src/build/, src/definitions.rs, src/typegen/, compiled here through
//!   `#[path]`), exactly as a downstream build script would.
#![cfg_attr(not(feature = "runtime"), allow(dead_code, unused_imports))]

use std::path::PathBuf;

#[allow(dead_code, unused_imports, reason = "the build script uses only part of these library modules")]
#[path = "src/build/mod.rs"]
mod build;
#[allow(dead_code, unused_imports, reason = "the build script uses only part of these library modules")]
#[path = "src/definitions.rs"]
mod definitions;
#[allow(dead_code, unused_imports, reason = "the build script uses only part of these library modules")]
#[path = "src/typegen/mod.rs"]
mod typegen;

/// Must match `DESCRIPTION` in src/demo.rs.
const DEMO_DESCRIPTION: &str = "A workbook of spreadsheets: list sheets, read rows, update rows.";

/// Must match `PRELUDE_MAGIC` in src/sandbox/mod.rs.
const PRELUDE_MAGIC: &[u8] = b"codemode-prelude\0";

fn main() {
    // Without the runtime (a build-dependency use of the crate), there is no sandbox to give a
    // prelude and no demo to generate.
    #[cfg(feature = "runtime")]
    {
        prelude();
        demo_schemas();
    }
}

#[cfg(feature = "runtime")]
fn prelude() {
    use rquickjs::{qjs, Context, Runtime};

    println!("cargo::rerun-if-changed=js/prelude.js");
    let source = std::fs::read_to_string("js/prelude.js").expect("js/prelude.js is readable");
    // A script whose value is `init`: its names live in the closure, not in the global scope,
    // and evaluating it costs none of a module's linking and promise machinery.
    let script = std::ffi::CString::new(format!("(() => {{\n{source}\nreturn init;\n}})()\n"))
        .expect("js/prelude.js has no NUL");
    let rt = Runtime::new().expect("QuickJS runtime");
    let ctx = Context::full(&rt).expect("QuickJS context");
    let bytecode = ctx.with(|ctx| unsafe {
        let raw = ctx.as_raw().as_ptr();
        let flags = qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_STRICT | qjs::JS_EVAL_FLAG_COMPILE_ONLY;
        let function = qjs::JS_Eval(
            raw,
            script.as_ptr(),
            script.as_bytes().len() as _,
            c"codemode:prelude".as_ptr(),
            flags as _,
        );
        if qjs::JS_IsException(function) {
            let error: rquickjs::Value = ctx.catch();
            panic!("js/prelude.js does not compile: {error:?}");
        }
        // Its source and line tables are never needed: its frames are dropped from stacks, and
        // it is read once per sandbox, so a smaller image is faster.
        let mut size = 0;
        let flags =
            qjs::JS_WRITE_OBJ_BYTECODE | qjs::JS_WRITE_OBJ_STRIP_SOURCE | qjs::JS_WRITE_OBJ_STRIP_DEBUG;
        let data = qjs::JS_WriteObject(raw, &mut size, function, flags as _);
        assert!(!data.is_null(), "prelude bytecode");
        let bytes = std::slice::from_raw_parts(data, size as usize).to_vec();
        qjs::js_free(raw, data.cast());
        qjs::JS_FreeValue(raw, function);
        bytes
    });
    let version = unsafe { std::ffi::CStr::from_ptr(rquickjs::qjs::JS_GetVersion()) };
    let mut out = Vec::with_capacity(PRELUDE_MAGIC.len() + 16 + bytecode.len());
    out.extend_from_slice(PRELUDE_MAGIC);
    out.extend_from_slice(version.to_bytes_with_nul());
    out.extend_from_slice(&bytecode);
    let path = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("prelude.qjsbc");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The demo tools go through the same helper a downstream crate uses (src/build/): a broken
/// file fails the build with the file, the JSON path and what is wrong; OUT_DIR gets
/// sheets.d.ts and sheets.rs (the typed inputs src/demo.rs uses).
#[cfg(feature = "runtime")]
fn demo_schemas() {
    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let generated = build::Builder::new(out_dir)
        .namespace("sheets", DEMO_DESCRIPTION, "schemas/demo")
        .compile()
        .unwrap_or_else(|e| panic!("{e}"));
    for input in &generated.inputs {
        println!("cargo::rerun-if-changed={}", input.display());
    }
}
