//! JS values → JSON, on the host side, without running any code of the program.
//!
//! Only own, enumerable *data* properties are read (through `JS_GetOwnProperty`), so getters,
//! `toJSON` and patched prototypes never run; a Proxy is refused before any of its traps could
//! run. The walk has a byte budget: in `Cut` mode a result past it is cut structurally (it stays
//! valid JSON and every cut is marked), in `Fail` mode it is an error.

use std::ptr;

use rquickjs::{qjs, Ctx, FromJs, Function, Type, Value};
use serde_json::{Map, Number, Value as Json};

/// Deeper nesting than this is refused: no real result needs it, and it bounds the host's
/// recursion.
pub(crate) const MAX_DEPTH: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    Cut,
    Fail,
}

#[derive(Debug)]
pub(crate) struct Converted {
    pub(crate) json: Json,
    pub(crate) truncated: bool,
}

pub(crate) struct Walker<'js> {
    ctx: Ctx<'js>,
    budget: usize,
    used: usize,
    overflow: Overflow,
    truncated: bool,
    ancestors: Vec<*mut std::ffi::c_void>,
    path: Vec<Seg>,
    date_to_iso: Option<Function<'js>>,
    texts: Texts<'js>,
}

enum Seg {
    Key(String),
    Index(usize),
}

pub(crate) enum Prop<'js> {
    Data(Value<'js>),
    /// A getter and/or a setter (a Proxy's answer counts as both: its traps are not run).
    Accessor {
        get: bool,
        set: bool,
    },
    Missing,
}

impl<'js> Walker<'js> {
    pub(crate) fn new(
        ctx: Ctx<'js>,
        budget: usize,
        overflow: Overflow,
        date_to_iso: Option<Function<'js>>,
        texts: Texts<'js>,
    ) -> Self {
        Walker {
            ctx,
            budget,
            used: 0,
            overflow,
            truncated: false,
            ancestors: Vec::new(),
            path: Vec::new(),
            date_to_iso,
            texts,
        }
    }

    /// Converts a value. Top-level `undefined` is `null`; a top-level function or symbol is an
    /// error (nested ones are dropped from objects and become `null` in arrays, as in JSON).
    pub(crate) fn convert(mut self, v: &Value<'js>) -> Result<Converted, String> {
        if v.is_function() {
            return Err("the result is a function, which has no JSON form".into());
        }
        let json = self.walk(v, 0)?.unwrap_or(Json::Null);
        Ok(Converted { json, truncated: self.truncated })
    }

    /// The path as JS writes it; a deep one keeps its first and last steps, so an error about
    /// a value nested hundreds of levels down stays one readable line.
    fn path_text(&self) -> String {
        const HEAD: usize = 6;
        const TAIL: usize = 2;
        let mut out = String::from("$");
        let n = self.path.len();
        for (i, seg) in self.path.iter().enumerate() {
            if n > HEAD + TAIL + 1 && i >= HEAD && i < n - TAIL {
                if i == HEAD {
                    out.push_str(&format!("…({} levels)…", n - HEAD - TAIL));
                }
                continue;
            }
            match seg {
                Seg::Key(k) => crate::registry::push_property(&mut out, k),
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn charge(&mut self, bytes: usize) -> Result<(), String> {
        self.used += bytes;
        if self.overflow == Overflow::Fail && self.used > self.budget {
            return Err(format!("the value is larger than the {} byte limit", self.budget));
        }
        Ok(())
    }

    fn over(&self) -> bool {
        self.used >= self.budget
    }

    fn walk(&mut self, v: &Value<'js>, depth: usize) -> Result<Option<Json>, String> {
        let json = match v.type_of() {
            Type::Undefined | Type::Uninitialized => return Ok(None),
            Type::Function | Type::Constructor | Type::Symbol => return Ok(None),
            Type::Null => Json::Null,
            Type::Bool => Json::Bool(v.as_bool().unwrap_or(false)),
            Type::Int => Json::from(v.as_int().unwrap_or(0)),
            Type::Float => number(v.as_float().unwrap_or(f64::NAN)),
            Type::BigInt => Json::String(self.texts.bigint(v).unwrap_or_else(big_bigint)),
            Type::String => return self.string(v).map(Some),
            Type::Object | Type::Array | Type::Promise | Type::Exception | Type::Proxy => {
                return self.object(v, depth).map(Some);
            }
            other => return Err(format!("{} at {} has no JSON form", other, self.path_text())),
        };
        self.charge(json_len(&json))?;
        Ok(Some(json))
    }

    fn string(&mut self, v: &Value<'js>) -> Result<Json, String> {
        // In `Cut` mode only what fits is read; in `Fail` mode the whole string is needed, or
        // nothing when it cannot fit (each UTF-16 unit is at least one byte of JSON).
        let room = self.budget.saturating_sub(self.used + 2);
        let (s, left) = match self.overflow {
            Overflow::Cut => self.texts.prefix(v, room),
            Overflow::Fail if string_units(v) > room => {
                return Err(format!("the value is larger than the {} byte limit", self.budget));
            }
            Overflow::Fail => (js_string(v), 0),
        };
        if left > 0 {
            let cut = format!("{s}… [{left} more characters]");
            self.truncated = true;
            self.used += cut.len() + 2;
            return Ok(Json::String(cut));
        }
        self.charge(s.len() + 2)?;
        Ok(Json::String(s))
    }

    fn object(&mut self, v: &Value<'js>, depth: usize) -> Result<Json, String> {
        if v.is_proxy() {
            return Err(format!("a Proxy at {} cannot leave the sandbox", self.path_text()));
        }
        if depth >= MAX_DEPTH {
            return Err(format!(
                "the value at {} is nested deeper than {MAX_DEPTH} levels",
                self.path_text()
            ));
        }
        let raw = v.as_raw();
        if unsafe { qjs::JS_IsDate(raw) } {
            let iso = self.date_to_iso.as_ref().and_then(|f| call_for_string(&self.ctx, f, v));
            let json = iso.map_or(Json::Null, Json::String);
            self.charge(json_len(&json))?;
            return Ok(json);
        }
        let ptr = unsafe { qjs::JS_VALUE_GET_PTR(raw) };
        if self.ancestors.contains(&ptr) {
            return Err(format!("the value has a cycle at {}", self.path_text()));
        }
        self.ancestors.push(ptr);
        let result = if v.is_array() { self.array(v, depth) } else { self.plain(v, depth) };
        self.ancestors.pop();
        result
    }

    fn array(&mut self, v: &Value<'js>, depth: usize) -> Result<Json, String> {
        let len = match own_property_str(&self.ctx, v, "length") {
            Prop::Data(l) => l
                .as_int()
                .map(|i| i.max(0) as usize)
                .or_else(|| l.as_float().map(|f| f as usize))
                .unwrap_or(0),
            _ => 0,
        };
        self.charge(2)?;
        let mut items = Vec::with_capacity(len.min(1 << 16));
        for i in 0..len {
            if self.overflow == Overflow::Cut && self.over() {
                items.push(Json::String(format!("… [{} more items]", len - i)));
                self.truncated = true;
                break;
            }
            self.path.push(Seg::Index(i));
            let item = match own_property_index(&self.ctx, v, i as u32) {
                Prop::Data(item) => self.walk(&item, depth + 1)?.unwrap_or(Json::Null),
                Prop::Accessor { .. } | Prop::Missing => {
                    self.charge(4)?;
                    Json::Null
                }
            };
            self.path.pop();
            self.charge(1)?;
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn plain(&mut self, v: &Value<'js>, depth: usize) -> Result<Json, String> {
        let Some(keys) = OwnKeys::read(&self.ctx, v, true) else {
            return Err(format!("the properties of the value at {} cannot be read", self.path_text()));
        };
        self.charge(2)?;
        let mut map = Map::new();
        for i in 0..keys.len() {
            if self.overflow == Overflow::Cut && self.over() {
                map.insert("…".into(), Json::String(format!("[{} more keys]", keys.len() - i)));
                self.truncated = true;
                break;
            }
            let (key, atom) = keys.get(i);
            let Prop::Data(value) = own_property(&self.ctx, v, atom) else { continue };
            self.path.push(Seg::Key(key));
            let item = self.walk(&value, depth + 1)?;
            let Some(Seg::Key(key)) = self.path.pop() else { unreachable!() };
            if let Some(item) = item {
                self.charge(key.len() + 4)?;
                map.insert(key, item);
            }
        }
        Ok(Json::Object(map))
    }
}

/// The own string keys of an object, in property order (array indices first, ascending).
pub(crate) struct OwnKeys<'js> {
    ctx: Ctx<'js>,
    tab: *mut qjs::JSPropertyEnum,
    len: u32,
}

impl<'js> OwnKeys<'js> {
    /// The enumerable ones, or all of them; `None` when they cannot be read (the engine's
    /// exception is cleared).
    pub(crate) fn read(ctx: &Ctx<'js>, v: &Value<'js>, enumerable_only: bool) -> Option<Self> {
        let mut tab: *mut qjs::JSPropertyEnum = ptr::null_mut();
        let mut len: u32 = 0;
        let only = if enumerable_only { qjs::JS_GPN_ENUM_ONLY } else { 0 };
        let flags = (qjs::JS_GPN_STRING_MASK | only) as i32;
        // SAFETY: a live value of this context; the table is freed on drop.
        if unsafe {
            qjs::JS_GetOwnPropertyNames(ctx.as_raw().as_ptr(), &mut tab, &mut len, v.as_raw(), flags)
        } < 0
        {
            let _ = ctx.catch();
            return None;
        }
        Some(OwnKeys { ctx: ctx.clone(), tab, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_enumerable(&self, i: usize) -> bool {
        assert!(i < self.len());
        // SAFETY: in bounds.
        unsafe { (*self.tab.add(i)).is_enumerable }
    }

    /// The key at `i < len()`, as text and as the atom (valid while `self` lives).
    pub(crate) fn get(&self, i: usize) -> (String, qjs::JSAtom) {
        assert!(i < self.len());
        // SAFETY: in bounds; the atom is owned by the table.
        let atom = unsafe { (*self.tab.add(i)).atom };
        let raw_ctx = self.ctx.as_raw().as_ptr();
        let key =
            unsafe { js_string(&Value::from_raw(self.ctx.clone(), qjs::JS_AtomToValue(raw_ctx, atom))) };
        (key, atom)
    }
}

impl Drop for OwnKeys<'_> {
    fn drop(&mut self) {
        // SAFETY: the table JS_GetOwnPropertyNames gave, freed once.
        unsafe { qjs::JS_FreePropertyEnum(self.ctx.as_raw().as_ptr(), self.tab, self.len) };
    }
}

fn number(f: f64) -> Json {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        Json::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Json::Null, Json::Number)
    }
}

/// The size of a BigInt too large to print in decimal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BigSize {
    pub(crate) bits: usize,
    pub(crate) negative: bool,
}

/// What stands for a BigInt too large to print in decimal.
pub(crate) fn big_bigint(size: BigSize) -> String {
    let sign = if size.negative { "negative " } else { "" };
    format!("[{sign}BigInt of about {} bits, too large to print]", size.bits)
}

fn json_len(j: &Json) -> usize {
    match j {
        Json::Null => 4,
        Json::Bool(b) => {
            if *b {
                4
            } else {
                5
            }
        }
        Json::Number(n) => n.to_string().len(),
        Json::String(s) => s.len() + 2,
        _ => 2,
    }
}

/// `f` called with `this = v`, when it returns a string. A throw gives `None` and is cleared,
/// so no stale exception is left in the engine.
pub(crate) fn call_for_string<'js>(ctx: &Ctx<'js>, f: &Function<'js>, v: &Value<'js>) -> Option<String> {
    match f.call::<_, Value>((rquickjs::function::This(v.clone()),)) {
        Ok(out) => out.is_string().then(|| js_string(&out)),
        Err(_) => {
            let _ = ctx.catch();
            None
        }
    }
}

/// An error's name (default `Error`), message (default empty) and stack, read without running
/// program code: string data properties on the error or its prototypes, else the built-in
/// `stack` getter captured before the program ran. Each is read up to `max` bytes.
pub(crate) fn error_parts<'js>(
    ctx: &Ctx<'js>,
    error: &Value<'js>,
    stack_getter: Option<&Function<'js>>,
    texts: &Texts<'js>,
    max: usize,
) -> (String, String, Option<String>) {
    let read = |name: &str| inherited_string(ctx, error, name).map(|s| texts.read(&s, max));
    let name = read("name").unwrap_or_else(|| "Error".into());
    let message = read("message").unwrap_or_default();
    let stack = read("stack").or_else(|| {
        let f = stack_getter?;
        match f.call::<_, Value>((rquickjs::function::This(error.clone()),)) {
            Ok(out) => out.is_string().then(|| texts.read(&out, max)),
            Err(_) => {
                let _ = ctx.catch();
                None
            }
        }
    });
    (name, message, stack)
}

/// Reads program strings as Rust text within a byte bound, reading no more of a long string
/// than it keeps: the host's work on a 30 MB string is then the bound, not 30 MB, however
/// often the program refers to it.
#[derive(Clone, Default)]
pub(crate) struct Texts<'js> {
    /// `String.prototype.slice`, as the prelude captured it before the program ran.
    slice: Option<Function<'js>>,
    /// `BigInt.prototype.toString`, likewise.
    bigint: Option<Function<'js>>,
}

/// Bits past which a BigInt is not printed in decimal: QuickJS converts in quadratic time
/// (about 1.2 s for 221,538 digits here); 33,220 bits are 10,000 digits, a few milliseconds.
pub(crate) const MAX_BIGINT_BITS: usize = 33_220;

impl<'js> Texts<'js> {
    pub(crate) fn new(slice: Option<Function<'js>>, bigint: Option<Function<'js>>) -> Self {
        Texts { slice, bigint }
    }

    /// A BigInt's decimal text, or its size when it is too large to print in decimal.
    pub(crate) fn bigint(&self, v: &Value<'js>) -> Result<String, BigSize> {
        if let Some(to_string) = &self.bigint {
            match to_string.call::<_, Value>((rquickjs::function::This(v.clone()), 16)) {
                Ok(hex) if hex.is_string() => {
                    let negative = js_string_starts_with_minus(&hex);
                    let bits = (string_units(&hex) - usize::from(negative)) * 4;
                    if bits > MAX_BIGINT_BITS {
                        return Err(BigSize { bits, negative });
                    }
                }
                _ => drop(v.ctx().catch()),
            }
        }
        Ok(rquickjs::Coerced::<String>::from_js(v.ctx(), v.clone()).map(|c| c.0).unwrap_or_default())
    }

    /// `v` (a string) as text of at most `max` bytes; a longer one ends with
    /// `… [N more characters]`.
    pub(crate) fn read(&self, v: &Value<'js>, max: usize) -> String {
        let (mut text, left) = self.prefix(v, max);
        if left > 0 {
            text.push_str(&format!("… [{left} more characters]"));
        }
        text
    }

    /// At most `max` bytes of the start of `v`, and how many UTF-16 units were left out.
    pub(crate) fn prefix(&self, v: &Value<'js>, max: usize) -> (String, usize) {
        let units = string_units(v);
        if units.saturating_mul(3) <= max {
            return (js_string(v), 0);
        }
        // UTF-16 units: `max` of them hold at least `max` bytes of text.
        let head = self.slice.as_ref().and_then(|slice| {
            slice
                .call::<_, Value>((rquickjs::function::This(v.clone()), 0, max.min(i32::MAX as usize) as i32))
                .ok()
        });
        let mut text = match head {
            Some(head) if head.is_string() => js_string(&head),
            // No captured slice (a bug): the whole string, once.
            _ => {
                let _ = v.ctx().catch();
                js_string(v)
            }
        };
        if text.len() <= max && text.encode_utf16().count() == units {
            return (text, 0);
        }
        let mut end = max.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        let kept = text.encode_utf16().count();
        (text, units.saturating_sub(kept))
    }
}

/// Whether a short engine string (a BigInt's hex text) starts with `-`, read without copying
/// more than its first character.
fn js_string_starts_with_minus(v: &Value<'_>) -> bool {
    let ctx = v.ctx().as_raw().as_ptr();
    // SAFETY: a live string of this context; index 0 of a string runs no program code.
    let first = unsafe { qjs::JS_GetPropertyUint32(ctx, v.as_raw(), 0) };
    let first = unsafe { Value::from_raw(v.ctx().clone(), first) };
    first.as_string().and_then(|s| s.to_string().ok()).is_some_and(|s| s == "-")
}

/// The length of a string in UTF-16 units, read by the engine (a string primitive's `length`
/// runs no program code).
fn string_units(v: &Value<'_>) -> usize {
    let ctx = v.ctx().as_raw().as_ptr();
    // SAFETY: a live value of this context; `length` is a predefined atom (no lookup by
    // name), and the result is an integer or an exception.
    let len = unsafe { qjs::JS_GetProperty(ctx, v.as_raw(), qjs::JS_ATOM_length as qjs::JSAtom) };
    let value = unsafe { Value::from_raw(v.ctx().clone(), len) };
    value.as_int().map_or(0, |n| n.max(0) as usize)
}

/// A JS string as Rust text; lone surrogates become U+FFFD.
pub(crate) fn js_string(v: &Value<'_>) -> String {
    match v.as_string() {
        Some(s) => s.to_string().unwrap_or_else(|_| {
            let mut len = 0usize;
            let ctx = s.ctx().as_raw().as_ptr();
            unsafe {
                let p = qjs::JS_ToCStringLen(ctx, &mut len, v.as_raw());
                if p.is_null() {
                    return String::new();
                }
                let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len);
                let text = wtf8_lossy(bytes);
                qjs::JS_FreeCString(ctx, p);
                text
            }
        }),
        None => String::new(),
    }
}

/// UTF-8 with lone surrogates encoded as three bytes each (what QuickJS gives for them) as
/// text: each lone surrogate becomes one U+FFFD, other invalid bytes as `from_utf8_lossy`.
fn wtf8_lossy(mut rest: &[u8]) -> String {
    let mut out = String::with_capacity(rest.len());
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).expect("valid up to here"));
                out.push('\u{FFFD}');
                let surrogate = bad.len() >= 3
                    && bad[0] == 0xED
                    && (0xA0..=0xBF).contains(&bad[1])
                    && (0x80..=0xBF).contains(&bad[2]);
                let skip = if surrogate { 3 } else { e.error_len().unwrap_or(bad.len()) };
                rest = &bad[skip..];
            }
        }
    }
}

pub(crate) fn own_property<'js>(ctx: &Ctx<'js>, obj: &Value<'js>, atom: qjs::JSAtom) -> Prop<'js> {
    // A Proxy would answer through its getOwnPropertyDescriptor trap: program code.
    if obj.is_proxy() {
        return Prop::Accessor { get: true, set: true };
    }
    let raw_ctx = ctx.as_raw().as_ptr();
    let mut desc = qjs::JSPropertyDescriptor {
        flags: 0,
        value: qjs::JS_UNDEFINED,
        getter: qjs::JS_UNDEFINED,
        setter: qjs::JS_UNDEFINED,
    };
    let found = unsafe { qjs::JS_GetOwnProperty(raw_ctx, &mut desc, obj.as_raw(), atom) };
    if found < 0 {
        let _ = ctx.catch();
        return Prop::Missing;
    }
    if found == 0 {
        return Prop::Missing;
    }
    let (get, set) = unsafe { (!qjs::JS_IsUndefined(desc.getter), !qjs::JS_IsUndefined(desc.setter)) };
    unsafe {
        qjs::JS_FreeValue(raw_ctx, desc.getter);
        qjs::JS_FreeValue(raw_ctx, desc.setter);
    }
    let value = unsafe { Value::from_raw(ctx.clone(), desc.value) };
    if desc.flags & qjs::JS_PROP_GETSET as i32 != 0 {
        Prop::Accessor { get, set }
    } else {
        Prop::Data(value)
    }
}

pub(crate) fn own_property_index<'js>(ctx: &Ctx<'js>, obj: &Value<'js>, i: u32) -> Prop<'js> {
    let raw_ctx = ctx.as_raw().as_ptr();
    let atom = unsafe { qjs::JS_NewAtomUInt32(raw_ctx, i) };
    let prop = own_property(ctx, obj, atom);
    unsafe { qjs::JS_FreeAtom(raw_ctx, atom) };
    prop
}

pub(crate) fn own_data_property<'js>(ctx: &Ctx<'js>, obj: &Value<'js>, name: &str) -> Option<Value<'js>> {
    match own_property_str(ctx, obj, name) {
        Prop::Data(v) => Some(v),
        _ => None,
    }
}

/// A string data property found on the object or its first prototypes, read without running
/// a getter or a Proxy trap (what `Error.prototype.toString` would read, minus program code).
/// The JS string itself, for the caller to read within its bound.
pub(crate) fn inherited_string<'js>(ctx: &Ctx<'js>, v: &Value<'js>, name: &str) -> Option<Value<'js>> {
    let mut obj = v.as_object().cloned();
    for _ in 0..8 {
        let o = obj.filter(|o| !o.is_proxy())?;
        if let Some(found) = own_data_property(ctx, o.as_value(), name) {
            return found.is_string().then_some(found);
        }
        obj = o.get_prototype();
    }
    None
}

pub(crate) fn own_property_str<'js>(ctx: &Ctx<'js>, obj: &Value<'js>, name: &str) -> Prop<'js> {
    let raw_ctx = ctx.as_raw().as_ptr();
    let atom = unsafe { qjs::JS_NewAtomLen(raw_ctx, name.as_ptr().cast(), name.len() as _) };
    let prop = own_property(ctx, obj, atom);
    unsafe { qjs::JS_FreeAtom(raw_ctx, atom) };
    prop
}
