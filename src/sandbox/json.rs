//! JSON text → JS values, for tool results.
//!
//! QuickJS's own `JSON.parse` makes a string, then an atom, for every key of every object,
//! and reads numbers through `strtod`; on a 10,000-row tool result it was the largest single
//! cost of the demo workflow. Here serde_json reads the text and the values are built through
//! the engine's C API: each distinct key becomes an atom once per result, numbers arrive
//! parsed, and arrays are created at their final length. Properties are *defined* (as
//! `JSON.parse` does), so a setter the program put on `Object.prototype` never runs. Short
//! strings that repeat under one key (a status, a region) are made once and shared, as V8's
//! JSON.parse shares them: strings are immutable, so a program cannot tell.
//!
//! Text serde_json refuses but JSON.parse accepts (lone surrogate escapes, nesting past
//! serde_json's 128 levels) is left to `JSON.parse`: [`parse`] says so with [`Failed::Json`].

use std::mem;

use rquickjs::{qjs, Ctx, Value};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Why [`parse`] built nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// serde_json refused the text; `JSON.parse` decides (and words the error).
    Json,
    /// The engine could not allocate; its exception is pending in the context.
    Engine,
}

/// Builds the JS value that `JSON.parse(text)` would.
pub(crate) fn parse<'js>(ctx: &Ctx<'js>, text: &str) -> Result<Value<'js>, Failed> {
    let mut builder = Builder {
        ctx: ctx.as_raw().as_ptr(),
        keys: Vec::new(),
        value_key: None,
        next_key: 0,
        shapes: Vec::new(),
        objects: 0,
        engine_failed: false,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let built = (&mut builder).deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match built {
        // SAFETY: the value was made in this context and its reference is handed over.
        Ok(v) => Ok(unsafe { Value::from_raw(ctx.clone(), v.into_raw()) }),
        Err(_) if builder.engine_failed => Err(Failed::Engine),
        Err(_) => Err(Failed::Json),
    }
}

/// One reference to a JS value, released on drop (so an error halfway leaks nothing).
struct Owned {
    ctx: *mut qjs::JSContext,
    value: qjs::JSValue,
}

impl Owned {
    fn into_raw(self) -> qjs::JSValue {
        let value = self.value;
        mem::forget(self);
        value
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: `value` holds one reference in `ctx`, which outlives the build.
        unsafe { qjs::JS_FreeValue(self.ctx, self.value) }
    }
}

/// Distinct keys seen so far, each with its atom (one reference held until the build ends).
/// Rows of one shape repeat their keys in order, so the key after a hit at `i` is tried at
/// `i + 1` first and a row costs one comparison per key.
struct Builder {
    ctx: *mut qjs::JSContext,
    keys: Vec<Key>,
    /// The cached key whose value is being read, while that value may be a string.
    value_key: Option<usize>,
    next_key: usize,
    /// A trie of key sequences; see [`Shape`].
    shapes: Vec<Shape>,
    /// Objects finished so far: the trie starts with the second, so a result holding one
    /// object (most tool results) costs no holder.
    objects: usize,
    engine_failed: bool,
}

/// A key seen in this result, and the short strings seen as its values.
struct Key {
    name: Box<str>,
    atom: qjs::JSAtom,
    /// Each holds one reference, released when the build ends.
    values: Vec<(Box<str>, qjs::JSValue)>,
    /// Values looked up and not found: a key whose values never repeat (a name, an id) stops
    /// being looked up.
    misses: u32,
    hits: u32,
}

/// Distinct values shared per key, and the longest shared value in bytes.
const VALUES_PER_KEY: usize = 8;
const SHARED_VALUE_BYTES: usize = 32;

/// One object per distinct key prefix (`{}`, `{id}`, `{id, name}`, ...), kept alive while the
/// build runs. The engine shares an object layout ("shape") between objects only while some
/// object holds each intermediate layout; without these, the first row's layout is grown in
/// place and every later row builds its own, one property at a time. With them, each row's
/// property finds its layout in the engine's shape table.
struct Shape {
    holder: qjs::JSValue,
    keys: Vec<qjs::JSAtom>,
    next: Vec<(qjs::JSAtom, usize)>,
}

/// Key prefixes held per result: rows have a few shapes; maps with ever new keys gain nothing.
const SHAPES: usize = 128;

/// Keys remembered per result; past this, a key is made into an atom each time (objects with
/// thousands of distinct keys are maps, not rows, and gain nothing from a cache).
const KEY_CACHE: usize = 256;

impl Drop for Builder {
    fn drop(&mut self) {
        for shape in self.shapes.drain(..) {
            // SAFETY: each holder is one reference taken in `shape_after`.
            unsafe { qjs::JS_FreeValue(self.ctx, shape.holder) }
        }
        for key in self.keys.drain(..) {
            // SAFETY: each cached atom and value holds one reference taken in `atom` and
            // `value_string`.
            unsafe {
                qjs::JS_FreeAtom(self.ctx, key.atom);
                for (_, value) in key.values {
                    qjs::JS_FreeValue(self.ctx, value);
                }
            }
        }
    }
}

impl Builder {
    fn owned(&mut self, value: qjs::JSValue) -> Result<Owned, ()> {
        // SAFETY: a value just returned by the engine.
        if unsafe { qjs::JS_IsException(value) } {
            self.engine_failed = true;
            return Err(());
        }
        Ok(Owned { ctx: self.ctx, value })
    }

    fn string(&mut self, s: &str) -> Result<Owned, ()> {
        // SAFETY: a valid context and a UTF-8 buffer with its length.
        let value = unsafe { qjs::JS_NewStringLen(self.ctx, s.as_ptr().cast(), s.len() as _) };
        self.owned(value)
    }

    /// A string that is the value of the cached key `key`: shared with earlier equal values
    /// of that key while they repeat.
    fn value_string(&mut self, key: usize, s: &str) -> Result<Owned, ()> {
        if s.len() > SHARED_VALUE_BYTES {
            return self.string(s);
        }
        let entry = &mut self.keys[key];
        if entry.misses > entry.hits + 32 {
            return self.string(s);
        }
        if let Some((_, value)) = entry.values.iter().find(|(v, _)| **v == *s) {
            entry.hits += 1;
            // SAFETY: a live string held by the cache; the copy is a new reference.
            return Ok(Owned { ctx: self.ctx, value: unsafe { qjs::JS_DupValue(self.ctx, *value) } });
        }
        entry.misses += 1;
        let full = entry.values.len() >= VALUES_PER_KEY;
        let owned = self.string(s)?;
        if !full {
            // SAFETY: as above.
            let kept = unsafe { qjs::JS_DupValue(self.ctx, owned.value) };
            self.keys[key].values.push((s.into(), kept));
        }
        Ok(owned)
    }

    /// The atom for a key and its place in the cache; `(atom, None)` when the caller must free
    /// the atom.
    fn atom(&mut self, key: &str) -> Result<(qjs::JSAtom, Option<usize>), ()> {
        let guess = self.next_key;
        let found = match self.keys.get(guess) {
            Some(k) if *k.name == *key => Some(guess),
            _ => self.keys.iter().position(|k| *k.name == *key),
        };
        if let Some(i) = found {
            self.next_key = i + 1;
            return Ok((self.keys[i].atom, Some(i)));
        }
        let atom = if key.is_ascii() {
            // SAFETY: a valid context and buffer. Only for ASCII: the engine looks UTF-8 bytes
            // up as if they were Latin-1 and could return another string's atom.
            unsafe { qjs::JS_NewAtomLen(self.ctx, key.as_ptr().cast(), key.len() as _) }
        } else {
            let s = self.string(key)?;
            // SAFETY: `s` is a live string in this context; the atom takes its own reference.
            unsafe { qjs::JS_ValueToAtom(self.ctx, s.value) }
        };
        if atom == qjs::JS_ATOM_NULL {
            self.engine_failed = true;
            return Err(());
        }
        if self.keys.len() < KEY_CACHE {
            self.keys.push(Key { name: key.into(), atom, values: Vec::new(), misses: 0, hits: 0 });
            self.next_key = self.keys.len();
            return Ok((atom, Some(self.keys.len() - 1)));
        }
        Ok((atom, None))
    }

    /// The trie node for `{}`, made on first use.
    fn empty_shape(&mut self) -> Option<usize> {
        if self.objects == 0 {
            return None;
        }
        if self.shapes.is_empty() {
            let holder = self.holder(&[])?;
            self.shapes.push(Shape { holder, keys: Vec::new(), next: Vec::new() });
        }
        Some(0)
    }

    /// The node for `shape`'s keys plus `atom`, made (with its holder) when new. `None` once
    /// the trie is full or the engine cannot allocate: objects are then built without help.
    fn shape_after(&mut self, shape: usize, atom: qjs::JSAtom) -> Option<usize> {
        if let Some(&(_, next)) = self.shapes[shape].next.iter().find(|(a, _)| *a == atom) {
            return Some(next);
        }
        if self.shapes.len() >= SHAPES {
            return None;
        }
        let mut keys = self.shapes[shape].keys.clone();
        keys.push(atom);
        let holder = self.holder(&keys)?;
        self.shapes.push(Shape { holder, keys, next: Vec::new() });
        let next = self.shapes.len() - 1;
        self.shapes[shape].next.push((atom, next));
        Some(next)
    }

    /// An object with `keys` (values undefined), defined as rows define them.
    fn holder(&self, keys: &[qjs::JSAtom]) -> Option<qjs::JSValue> {
        // The holders only speed the build up: a failure is cleared and the build goes on
        // without them.
        // SAFETY: a valid context; the atoms are alive (cached, or owned by the caller).
        unsafe {
            let clear = || qjs::JS_FreeValue(self.ctx, qjs::JS_GetException(self.ctx));
            let holder = qjs::JS_NewObject(self.ctx);
            if qjs::JS_IsException(holder) {
                clear();
                return None;
            }
            for &key in keys {
                if qjs::JS_DefinePropertyValue(
                    self.ctx,
                    holder,
                    key,
                    qjs::JS_UNDEFINED,
                    qjs::JS_PROP_C_W_E as _,
                ) < 0
                {
                    clear();
                    qjs::JS_FreeValue(self.ctx, holder);
                    return None;
                }
            }
            Some(holder)
        }
    }

    fn fail<E: de::Error>(&self) -> E {
        E::custom("the engine could not allocate")
    }
}

impl<'de> DeserializeSeed<'de> for &mut Builder {
    type Value = Owned;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Owned, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Builder {
    type Value = Owned;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Owned, E> {
        Ok(Owned { ctx: self.ctx, value: qjs::JS_MKVAL(qjs::JS_TAG_NULL, 0) })
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Owned, E> {
        Ok(Owned { ctx: self.ctx, value: qjs::JS_MKVAL(qjs::JS_TAG_BOOL, i32::from(v)) })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Owned, E> {
        let value = match i32::try_from(v) {
            Ok(i) => qjs::JS_MKVAL(qjs::JS_TAG_INT, i),
            // As JSON.parse: the nearest double.
            Err(_) => qjs::JS_NewFloat64(v as f64),
        };
        Ok(Owned { ctx: self.ctx, value })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Owned, E> {
        let value = match i32::try_from(v) {
            Ok(i) => qjs::JS_MKVAL(qjs::JS_TAG_INT, i),
            Err(_) => qjs::JS_NewFloat64(v as f64),
        };
        Ok(Owned { ctx: self.ctx, value })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Owned, E> {
        // JS_NewFloat64 keeps -0 a double and makes small integral values ints, as the
        // engine's own parser does.
        Ok(Owned { ctx: self.ctx, value: qjs::JS_NewFloat64(v) })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Owned, E> {
        let built = match self.value_key.take() {
            Some(key) => self.value_string(key, v),
            None => self.string(v),
        };
        built.map_err(|()| self.fail())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Owned, A::Error> {
        // The items of an array under a key are not that key's values. (A map needs no such
        // line: it sets the key before each of its values.)
        self.value_key = None;
        let mut items: Vec<Owned> = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(&mut *self)? {
            items.push(item);
        }
        let Ok(count) = i32::try_from(items.len()) else { return Err(self.fail()) };
        let raw: Vec<qjs::JSValue> = items.into_iter().map(Owned::into_raw).collect();
        // SAFETY: `raw` holds `count` owned values; the engine takes them, also on failure.
        let array = unsafe { qjs::JS_NewArrayFrom(self.ctx, count, raw.as_ptr()) };
        self.owned(array).map_err(|()| self.fail())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Owned, A::Error> {
        // SAFETY: a valid context.
        let object = unsafe { qjs::JS_NewObject(self.ctx) };
        let object = self.owned(object).map_err(|()| self.fail())?;
        let mut shape = self.empty_shape();
        while let Some((atom, cached)) = map.next_key_seed(KeySeed(&mut *self))? {
            let free_atom = cached.is_none();
            // Before the property is defined, so the object finds the layout already made.
            shape = shape.filter(|_| !free_atom).and_then(|s| self.shape_after(s, atom));
            self.value_key = cached;
            let value = map.next_value_seed(&mut *self);
            // Not left behind for a string that is not this key's value (after a number).
            self.value_key = None;
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    if free_atom {
                        // SAFETY: an atom reference `atom` handed to us.
                        unsafe { qjs::JS_FreeAtom(self.ctx, atom) }
                    }
                    return Err(e);
                }
            };
            // SAFETY: live object and atom; the engine takes the value's reference. Defined,
            // not set: duplicate keys keep the last value, as in JSON.parse.
            let done = unsafe {
                qjs::JS_DefinePropertyValue(
                    self.ctx,
                    object.value,
                    atom,
                    value.into_raw(),
                    qjs::JS_PROP_C_W_E as _,
                )
            };
            if free_atom {
                // SAFETY: as above.
                unsafe { qjs::JS_FreeAtom(self.ctx, atom) }
            }
            if done < 0 {
                self.engine_failed = true;
                return Err(self.fail());
            }
        }
        self.objects += 1;
        Ok(object)
    }
}

/// A key, read straight into its atom: serde_json lends the text when it has no escapes, so
/// a key already in the cache allocates nothing.
struct KeySeed<'a>(&'a mut Builder);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = (qjs::JSAtom, Option<usize>);

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = (qjs::JSAtom, Option<usize>);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.atom(v).map_err(|()| self.0.fail())
    }
}
