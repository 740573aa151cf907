//! The sandbox's own JavaScript (`js/prelude.js`): compiled to bytecode by build.rs, checked
//! against the running QuickJS and evaluated into each fresh context.

use super::*;

pub(super) const PRELUDE_NAME: &str = "codemode:prelude";

/// The prelude compiled by build.rs: `PRELUDE_MAGIC`, the QuickJS version, a NUL, bytecode.
pub(super) static EMBEDDED_PRELUDE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prelude.qjsbc"));

pub(super) const PRELUDE_MAGIC: &[u8] = b"codemode-prelude\0";

/// The embedded prelude's bytecode when it was made by this very QuickJS version.
pub(super) fn embedded_prelude() -> Option<&'static [u8]> {
    let rest = EMBEDDED_PRELUDE.strip_prefix(PRELUDE_MAGIC)?;
    let end = rest.iter().position(|&b| b == 0)?;
    let running = unsafe { std::ffi::CStr::from_ptr(rquickjs::qjs::JS_GetVersion()) };
    (&rest[..end] == running.to_bytes()).then(|| &rest[end + 1..])
}

/// The prelude's bytecode, checked against the running engine. Build-dependency and dependency
/// are one locked version, so a mismatch means a broken build; it is reported, never loaded.
pub(super) fn prelude_bytecode() -> Result<&'static [u8], String> {
    embedded_prelude().ok_or_else(|| {
        "the embedded prelude was compiled for another QuickJS version; rebuild the crate".to_string()
    })
}

/// Evaluates the prelude's bytecode (a script whose value is its `init` function).
pub(super) fn load_prelude<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Function<'js>> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: bytecode build.rs compiled with this very engine version (checked by
    // `prelude_bytecode`); JS_EvalFunction takes the function's reference.
    let value = unsafe {
        let function = rquickjs::qjs::JS_ReadObject(
            raw,
            bytecode.as_ptr(),
            bytecode.len() as _,
            rquickjs::qjs::JS_READ_OBJ_BYTECODE as _,
        );
        if rquickjs::qjs::JS_IsException(function) {
            return Err(rquickjs::Error::Exception);
        }
        let value = rquickjs::qjs::JS_EvalFunction(raw, function);
        if rquickjs::qjs::JS_IsException(value) {
            return Err(rquickjs::Error::Exception);
        }
        Value::from_raw(ctx.clone(), value)
    };
    Function::from_value(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_prelude_matches_the_engine() {
        let bytecode = super::embedded_prelude().expect("build.rs compiled the prelude for this QuickJS");
        assert!(bytecode.len() > 1000, "{} bytes", bytecode.len());
    }
}
