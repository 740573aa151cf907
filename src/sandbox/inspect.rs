//! `console.*` formatting, close to Node's `util.inspect` for plain data, done on the host.
//!
//! It reads values the way the result conversion does (own data properties through the
//! engine's C API), so formatting a value runs none of the program's code: a getter shows as
//! `[Getter]`, a Proxy shows its target without a trap running, and a patched
//! `Array.prototype.join` changes nothing. The one exception is a RegExp, printed by the
//! `RegExp.prototype.toString` captured before the program ran, which reads the `source` and
//! `flags` properties as it does in any engine.
//!
//! Doing this in Rust instead of in the prelude keeps the prelude small, and every sandbox
//! pays for loading the prelude whether or not the program logs.

use std::ffi::c_void;

use rquickjs::function::This;
use rquickjs::{qjs, Coerced, Ctx, FromJs, Function, Object, Type, Value};

use super::convert::{self, Overflow, OwnKeys, Prop, Texts, Walker};
use crate::typegen::is_identifier;

const MAX_DEPTH: usize = 2;
const MAX_ITEMS: usize = 100;
const MAX_STRING: usize = 10_000;
/// `%j` output is cut (and marked) past this.
const MAX_JSON: usize = 64 * 1024;

/// The frozen object of built-ins the prelude captured before the program ran; it comes with
/// each console call. Read only when a value needs one of them, so a plain line pays nothing.
pub(crate) struct Builtins<'js> {
    ctx: Ctx<'js>,
    holder: Value<'js>,
}

impl<'js> Builtins<'js> {
    pub(crate) fn new(ctx: &Ctx<'js>, holder: Value<'js>) -> Self {
        Builtins { ctx: ctx.clone(), holder }
    }

    fn get(&self, name: &str) -> Option<Function<'js>> {
        convert::own_data_property(&self.ctx, &self.holder, name).and_then(|v| v.into_function())
    }

    /// Bounded string reads through the captured `String.prototype.slice`.
    pub(crate) fn texts(&self) -> Texts<'js> {
        Texts::new(self.get("stringSlice"), self.get("bigintToString"))
    }
}

/// What stands for everything past the line's budget.
const CUT: &str = "…";

/// One console call's arguments as one line, as Node's `console.log` formats them
/// (`%s %d %i %f %j %o %O %c %%` in a leading string included). The text taken from the
/// program's values is at most about `max` bytes: past it, strings are cut and whole values
/// become `…` without being read, so a line referring 10,000 times to a 30 MB string costs the
/// host `max`, not 300 GB.
pub(crate) fn format<'js>(
    ctx: &Ctx<'js>,
    args: &[Value<'js>],
    builtins: &Builtins<'js>,
    max: usize,
) -> rquickjs::Result<String> {
    let Some((first, mut rest)) = args.split_first() else { return Ok(String::new()) };
    let texts = builtins.texts();
    let mut inspector =
        Inspector { ctx, builtins, seen: Vec::new(), object_prototype: None, texts, left: max };
    let mut out = if first.is_string() && !rest.is_empty() {
        let template = inspector.read(first, usize::MAX);
        if template.contains('%') {
            inspector.substitute(&template, &mut rest)?
        } else {
            template
        }
    } else {
        inspector.inspect(first, 0)?
    };
    for arg in rest {
        out.push(' ');
        out.push_str(&inspector.inspect(arg, 0)?);
    }
    Ok(out)
}

/// A single thrown value that is not an object (`throw Symbol()`, `throw 10n`), as a console
/// would show it, within `max` bytes.
pub(crate) fn primitive<'js>(ctx: &Ctx<'js>, v: &Value<'js>, builtins: &Builtins<'js>, max: usize) -> String {
    format(ctx, std::slice::from_ref(v), builtins, max).unwrap_or_else(|_| {
        let _ = ctx.catch();
        String::from("a value that could not be shown")
    })
}

struct Inspector<'a, 'js> {
    ctx: &'a Ctx<'js>,
    builtins: &'a Builtins<'js>,
    seen: Vec<*mut c_void>,
    object_prototype: Option<*mut c_void>,
    texts: Texts<'js>,
    /// Bytes of program text this line may still take.
    left: usize,
}

impl<'js> Inspector<'_, 'js> {
    /// A program string, at most `cap` bytes and what is left of the line's budget.
    fn read(&mut self, v: &Value<'js>, cap: usize) -> String {
        let text = self.texts.read(v, cap.min(self.left));
        self.left = self.left.saturating_sub(text.len());
        text
    }

    /// Charges text made from a value (a number, a name) to the line's budget.
    fn spend(&mut self, text: String) -> String {
        self.left = self.left.saturating_sub(text.len());
        text
    }

    /// Replaces each `%x` in `template` with the next argument, consuming it from `args`.
    fn substitute(&mut self, template: &str, args: &mut &[Value<'js>]) -> rquickjs::Result<String> {
        let mut out = String::with_capacity(template.len());
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            let spec = match chars.peek() {
                Some(&s) if c == '%' && "sdifjoOc%".contains(s) => s,
                _ => {
                    out.push(c);
                    continue;
                }
            };
            chars.next();
            if spec == '%' {
                out.push('%');
                continue;
            }
            let Some((arg, left)) = args.split_first() else {
                out.push('%');
                out.push(spec);
                continue;
            };
            *args = left;
            match spec {
                's' if arg.is_string() => {
                    let text = self.read(arg, usize::MAX);
                    out.push_str(&text);
                }
                's' | 'o' | 'O' => out.push_str(&self.inspect(arg, 1)?),
                // As Node: a BigInt keeps its `n`.
                'd' | 'i' if arg.type_of() == Type::BigInt => {
                    let text = self.bigint(arg);
                    out.push_str(&text);
                }
                'd' | 'i' | 'f' => {
                    let n = self.number(arg);
                    let n = if spec == 'i' && !n.is_nan() { n.trunc() } else { n };
                    out.push_str(&self.number_text(n)?);
                }
                'j' => {
                    let json = self.json(arg);
                    out.push_str(&self.spend(json));
                }
                _ => {} // %c: CSS, meaningless here
            }
        }
        Ok(out)
    }

    /// `Number(v)` for primitives. An object would be converted by its own `valueOf`, program
    /// code, so it is NaN here.
    fn number(&self, v: &Value<'js>) -> f64 {
        let coerce = |v: Value<'js>| Coerced::<f64>::from_js(self.ctx, v).map_or(f64::NAN, |c| c.0);
        match v.type_of() {
            Type::Int | Type::Float | Type::Bool | Type::Null | Type::Undefined | Type::String => {
                coerce(v.clone())
            }
            // As Number(10n): through its decimal text; one too large for that is infinite.
            Type::BigInt => match self.texts.bigint(v) {
                Ok(t) => rquickjs::String::from_str(self.ctx.clone(), &t)
                    .map_or(f64::NAN, |s| coerce(s.into_value())),
                Err(size) if size.negative => f64::NEG_INFINITY,
                Err(_) => f64::INFINITY,
            },
            _ => f64::NAN,
        }
    }

    fn number_text(&self, n: f64) -> rquickjs::Result<String> {
        self.primitive_text(&Value::new_float(self.ctx.clone(), n))
    }

    /// A BigInt as Node shows it (`10n`), or its size when it is too large to print.
    fn bigint(&self, v: &Value<'js>) -> String {
        self.texts.bigint(v).map_or_else(convert::big_bigint, |t| format!("{t}n"))
    }

    /// `String(v)` of a number or BigInt: the engine's own formatting, which runs no code.
    fn primitive_text(&self, v: &Value<'js>) -> rquickjs::Result<String> {
        Coerced::<String>::from_js(self.ctx, v.clone()).map(|c| c.0)
    }

    fn json(&self, v: &Value<'js>) -> String {
        if v.is_undefined() || v.is_function() || v.is_symbol() {
            return "undefined".into();
        }
        let budget = MAX_JSON.min(self.left);
        let walker = Walker::new(
            self.ctx.clone(),
            budget,
            Overflow::Cut,
            self.builtins.get("dateToISOString"),
            self.texts.clone(),
        );
        walker.convert(v).map_or_else(|_| "[Circular]".into(), |c| c.json.to_string())
    }

    fn inspect(&mut self, v: &Value<'js>, depth: usize) -> rquickjs::Result<String> {
        if self.left == 0 {
            return Ok(CUT.into());
        }
        let text = self.inspect_within(v, depth)?;
        Ok(self.spend(text))
    }

    fn inspect_within(&mut self, v: &Value<'js>, depth: usize) -> rquickjs::Result<String> {
        Ok(match v.type_of() {
            Type::String if depth == 0 => self.texts.read(v, self.left),
            Type::String => {
                let (s, left) = self.texts.prefix(v, MAX_STRING.min(self.left));
                if left > 0 {
                    quote(&format!("{s}..."))
                } else {
                    quote(&s)
                }
            }
            Type::Int => v.as_int().unwrap_or(0).to_string(),
            Type::Float => {
                let f = v.as_float().unwrap_or(f64::NAN);
                if f == 0.0 && f.is_sign_negative() {
                    "-0".into()
                } else {
                    self.primitive_text(v)?
                }
            }
            Type::BigInt => self.bigint(v),
            Type::Bool => v.as_bool().unwrap_or(false).to_string(),
            Type::Undefined | Type::Uninitialized => "undefined".into(),
            Type::Null => "null".into(),
            Type::Symbol => format!("Symbol({})", symbol_description(self.ctx, v)),
            Type::Function | Type::Constructor => function_text(self.ctx, v),
            _ => self.object(v, depth)?,
        })
    }

    fn object(&mut self, v: &Value<'js>, depth: usize) -> rquickjs::Result<String> {
        // A Proxy is shown as its target, read directly: none of its traps runs.
        let mut v = v.clone();
        for _ in 0..64 {
            if !v.is_proxy() {
                break;
            }
            // SAFETY: a live Proxy of this context; the target comes with its own reference.
            let target = unsafe { qjs::JS_GetProxyTarget(self.ctx.as_raw().as_ptr(), v.as_raw()) };
            if unsafe { qjs::JS_IsException(target) } {
                let _ = self.ctx.catch();
                return Ok("[Proxy]".into());
            }
            v = unsafe { Value::from_raw(self.ctx.clone(), target) };
        }
        if v.is_proxy() {
            return Ok("[Proxy]".into());
        }
        if v.is_function() {
            return Ok(function_text(self.ctx, &v));
        }
        let raw = v.as_raw();
        let ptr = unsafe { qjs::JS_VALUE_GET_PTR(raw) };
        if self.seen.contains(&ptr) {
            return Ok("[Circular *]".into());
        }
        if unsafe { qjs::JS_IsError(raw) } {
            return Ok(self.error(&v));
        }
        if unsafe { qjs::JS_IsDate(raw) } {
            let iso = self.try_builtin("dateToISOString", &v);
            return Ok(iso.unwrap_or_else(|| "Invalid Date".into()));
        }
        if unsafe { qjs::JS_IsRegExp(raw) } {
            // Reads `source` and `flags` as the engine does: program code if it replaced them.
            if let Some(text) = self.call_builtin("regexpToString", &v)? {
                return Ok(text);
            }
        }
        if unsafe { qjs::JS_IsPromise(raw) } {
            return Ok("Promise { <pending> }".into());
        }
        let array = v.is_array();
        if depth > MAX_DEPTH {
            return Ok(if array { "[Array]" } else { "[Object]" }.into());
        }
        self.seen.push(ptr);
        let parts = self.entries(&v, array, depth);
        self.seen.pop();
        let (mut parts, more) = parts?;
        if more > 0 {
            parts.push(more_items(more as u64));
        }
        let prefix = if array { String::new() } else { self.prefix(&v) };
        let (open, close) = if array { ("[", "]") } else { ("{", "}") };
        if parts.is_empty() {
            return Ok(format!("{prefix}{open}{close}"));
        }
        let one_line = parts.join(", ");
        // Node's rule (util.inspect, breakLength 80): one line when the entries, their
        // separators and the indentation fit. Lengths count UTF-16 units, as JS does.
        let width = one_line.encode_utf16().count() + 2 + 11 + 2 * depth;
        if width <= 80 && !one_line.contains('\n') {
            return Ok(format!("{prefix}{open} {one_line} {close}"));
        }
        let indented = parts.join(",\n").replace('\n', "\n  ");
        Ok(format!("{prefix}{open}\n  {indented}\n{close}"))
    }

    /// The formatted entries, and how many more were left out. Once the line's budget is spent,
    /// one `…` stands for the rest.
    fn entries(
        &mut self,
        v: &Value<'js>,
        array: bool,
        depth: usize,
    ) -> rquickjs::Result<(Vec<String>, usize)> {
        let mut parts = Vec::new();
        // An array's index keys come first, in ascending order (as the spec orders own keys).
        // Walking them, not 0..length, keeps a sparse array (`a[4294967294] = 1`) from costing
        // billions of steps of host time, which no deadline would interrupt. An element is shown
        // even when it is not enumerable; the array's other keys only when they are.
        let Some(keys) = OwnKeys::read(self.ctx, v, !array) else { return Ok((parts, 0)) };
        let indices = if array { first_non_index(&keys) } else { 0 };
        if array {
            let len = match convert::own_property_str(self.ctx, v, "length") {
                Prop::Data(l) => l.as_number().map_or(0, |n| n.max(0.0) as u64),
                _ => 0,
            };
            // As Node's util.inspect: a run of holes is one entry, and what is left past the
            // limit is counted before the array's other keys.
            let mut next = 0u64;
            for i in 0..indices {
                if parts.len() >= MAX_ITEMS {
                    break;
                }
                if self.left == 0 {
                    parts.push(CUT.into());
                    return Ok((parts, 0));
                }
                let (key, atom) = keys.get(i);
                let index: u64 = key.parse().unwrap_or(next);
                if index > next {
                    parts.push(empty_items(index - next));
                    next = index;
                    if parts.len() >= MAX_ITEMS {
                        break;
                    }
                }
                if let Some(text) = self.property(v, atom, depth)? {
                    parts.push(text);
                }
                next += 1;
            }
            let remaining = len.saturating_sub(next);
            if remaining > 0 {
                parts.push(if parts.len() < MAX_ITEMS {
                    empty_items(remaining)
                } else {
                    more_items(remaining)
                });
            }
        }
        let (mut shown, mut more) = (0, 0);
        for i in indices..keys.len() {
            if !keys.is_enumerable(i) {
                continue;
            }
            if shown >= MAX_ITEMS {
                more += 1;
                continue;
            }
            if self.left == 0 {
                parts.push(CUT.into());
                return Ok((parts, 0));
            }
            let (key, atom) = keys.get(i);
            if let Some(text) = self.property(v, atom, depth)? {
                parts.push(format!("{}: {text}", key_text(&key)));
                shown += 1;
            }
        }
        Ok((parts, more))
    }

    /// An own property's value as text, without running a getter; `None` if it is gone.
    fn property(
        &mut self,
        v: &Value<'js>,
        atom: qjs::JSAtom,
        depth: usize,
    ) -> rquickjs::Result<Option<String>> {
        Ok(Some(match convert::own_property(self.ctx, v, atom) {
            Prop::Data(value) => self.inspect(&value, depth + 1)?,
            Prop::Accessor { get: true, set: true } => "[Getter/Setter]".into(),
            Prop::Accessor { get: true, set: false } => "[Getter]".into(),
            Prop::Accessor { .. } => "[Setter]".into(),
            Prop::Missing => return Ok(None),
        }))
    }

    /// `ClassName ` for instances of classes, `[Object: null prototype] ` without a prototype.
    fn prefix(&mut self, v: &Value<'js>) -> String {
        let Some(proto) = v.as_object().and_then(Object::get_prototype) else {
            return "[Object: null prototype] ".into();
        };
        let object_prototype = *self.object_prototype.get_or_insert_with(|| {
            Object::new(self.ctx.clone())
                .ok()
                .and_then(|o| o.get_prototype())
                .map_or(std::ptr::null_mut(), |p| unsafe { qjs::JS_VALUE_GET_PTR(p.as_raw()) })
        });
        if unsafe { qjs::JS_VALUE_GET_PTR(proto.as_raw()) } == object_prototype {
            return String::new();
        }
        let name = convert::own_data_property(self.ctx, proto.as_value(), "constructor")
            .filter(Value::is_function)
            .and_then(|c| convert::own_data_property(self.ctx, &c, "name"))
            .filter(Value::is_string)
            .map(|n| convert::js_string(&n))
            .unwrap_or_default();
        if name.is_empty() || name == "Object" {
            String::new()
        } else {
            format!("{name} ")
        }
    }

    /// `Name: message`, then the stack, as `Error.prototype.toString` and Node show it.
    fn error(&self, v: &Value<'js>) -> String {
        let getter = self.builtins.get("stackGetter");
        let (name, message, stack) =
            convert::error_parts(self.ctx, v, getter.as_ref(), &self.texts, self.left);
        let head = match (name.is_empty(), message.is_empty()) {
            (true, _) => message,
            (false, true) => name,
            (false, false) => format!("{name}: {message}"),
        };
        match stack.as_deref().map(|s| s.strip_suffix('\n').unwrap_or(s)) {
            // A stack set by the program may already start with the heading.
            Some(stack) if stack.starts_with(&head) && !head.is_empty() => stack.to_string(),
            Some(stack) if !stack.is_empty() => format!("{head}\n{stack}"),
            _ => head,
        }
    }

    /// Calls a captured built-in with `this = v`; its text when it returned a string. Its
    /// exception propagates (the engine still holds it), as a throw inside console.log would.
    fn call_builtin(&self, name: &str, v: &Value<'js>) -> rquickjs::Result<Option<String>> {
        let Some(f) = self.builtins.get(name) else { return Ok(None) };
        let out: Value = f.call((This(v.clone()),))?;
        Ok(out.is_string().then(|| convert::js_string(&out)))
    }

    /// The same for a built-in that may throw on bad input (an invalid Date): `None` then.
    fn try_builtin(&self, name: &str, v: &Value<'js>) -> Option<String> {
        convert::call_for_string(self.ctx, &self.builtins.get(name)?, v)
    }
}

/// Consecutive holes as one entry, as Node shows them.
fn empty_items(n: u64) -> String {
    format!("<{n} empty item{}>", if n > 1 { "s" } else { "" })
}

fn more_items(n: u64) -> String {
    format!("... {n} more item{}", if n > 1 { "s" } else { "" })
}

/// Where an array's own keys stop being indices. The engine lists index keys first, in
/// ascending order (as the spec orders own keys), so bisection finds the end of them: a
/// 200,000-item array turns 18 keys into text, not 200,000.
fn first_non_index(keys: &OwnKeys<'_>) -> usize {
    let (mut low, mut high) = (0, keys.len());
    while low < high {
        let mid = low + (high - low) / 2;
        if is_index(&keys.get(mid).0) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

fn is_index(key: &str) -> bool {
    key.parse::<u32>().is_ok_and(|n| n != u32::MAX && n.to_string() == key)
}

/// A string in quotes, as Node picks them: single, else double or backtick when that avoids
/// escaping, else single with escapes.
fn quote(s: &str) -> String {
    let q = if !s.contains('\'') {
        '\''
    } else if !s.contains('"') {
        '"'
    } else if !s.contains('`') && !s.contains("${") {
        '`'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

fn key_text(k: &str) -> String {
    if is_identifier(k) {
        k.to_string()
    } else {
        quote(k)
    }
}

fn function_text<'js>(ctx: &Ctx<'js>, f: &Value<'js>) -> String {
    let name =
        convert::own_data_property(ctx, f, "name").filter(Value::is_string).map(|n| convert::js_string(&n));
    // SAFETY: reads the function's kind; runs nothing.
    let kind = if unsafe { qjs::JS_IsAsyncFunction(f.as_raw()) } { "AsyncFunction" } else { "Function" };
    match name.filter(|n| !n.is_empty()) {
        Some(name) => format!("[{kind}: {name}]"),
        None => format!("[{kind} (anonymous)]"),
    }
}

/// A symbol's description, read from the engine (not through the patchable
/// `Symbol.prototype.description` getter).
fn symbol_description<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> String {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: a live symbol; the atom and the string are released here.
    unsafe {
        let atom = qjs::JS_ValueToAtom(raw, v.as_raw());
        if atom == qjs::JS_ATOM_NULL {
            let _ = ctx.catch();
            return String::new();
        }
        let text = qjs::JS_AtomToString(raw, atom);
        qjs::JS_FreeAtom(raw, atom);
        if qjs::JS_IsException(text) {
            let _ = ctx.catch();
            return String::new();
        }
        convert::js_string(&Value::from_raw(ctx.clone(), text))
    }
}
