//! The names a program finds on its global object: a leaf the registry (which keeps tools'
//! names off them) and the sandbox (which removes everything else) share, and their declarations.

/// Every global a program sees, besides one per tool namespace. Registering a namespace with one
/// of these names is refused, and a test fails when the sandbox grows a global that is not
/// listed here, so each new global is a reviewed change.
pub const SANDBOX_GLOBALS: &[&str] = &[
    "AggregateError",
    "Array",
    "AsyncDisposableStack",
    "BigInt",
    "Boolean",
    "Date",
    "DisposableStack",
    "Error",
    "EvalError",
    "FinalizationRegistry",
    "Function",
    "Infinity",
    "InternalError",
    "Iterator",
    "JSON",
    "Map",
    "Math",
    "NaN",
    "Number",
    "Object",
    "Promise",
    "Proxy",
    "RangeError",
    "ReferenceError",
    "Reflect",
    "RegExp",
    "Set",
    "String",
    "SuppressedError",
    "Symbol",
    "SyntaxError",
    "TypeError",
    "URIError",
    "WeakMap",
    "WeakRef",
    "WeakSet",
    "clearTimeout",
    "codemode",
    "console",
    "decodeURI",
    "decodeURIComponent",
    "encodeURI",
    "encodeURIComponent",
    "escape",
    "eval",
    "globalThis",
    "isFinite",
    "isNaN",
    "parseFloat",
    "parseInt",
    "performance",
    "queueMicrotask",
    "setTimeout",
    "undefined",
    "unescape",
];

/// How the V8 engine's globals ([`crate::EngineKind::V8`]) differ from [`SANDBOX_GLOBALS`],
/// reviewed the same way: V8 adds `Intl` (formatting by locale, with the ICU data Node
/// carries; it reaches nothing outside) and lacks QuickJS's own `InternalError`. Binary
/// buffers, shared memory, `Atomics` and `WebAssembly` are removed in both: V8's heap limit
/// does not count an `ArrayBuffer`'s memory.
pub const V8_GLOBALS_ADDED: &[&str] = &["Intl"];
/// See [`V8_GLOBALS_ADDED`].
pub const V8_GLOBALS_REMOVED: &[&str] = &["InternalError"];

/// The declarations of the sandbox's own globals (`console`, `setTimeout`, `codemode.search`,
/// ...), to show an agent beside the tools' declarations.
pub const RUNTIME_DECLARATIONS: &str = include_str!("../js/codemode.d.ts");
