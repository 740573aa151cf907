//! A small TypeScript type tree and its printer. Building a tree first (rather than strings)
//! lets unions and intersections simplify (`unknown` absorbs a union, drops out of an
//! intersection) and puts parentheses exactly where precedence needs them.

/// A TypeScript type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Ty {
    Unknown,
    Never,
    /// `string`, `number`, `boolean`, `null`, `undefined`.
    Keyword(&'static str),
    /// A literal type, already written as TypeScript (`"a"`, `1`, `true`).
    Literal(String),
    /// A named type.
    Ref(String),
    Array(Box<Ty>),
    Tuple {
        items: Vec<Ty>,
        required: usize,
        rest: Option<Box<Ty>>,
    },
    Object(Object),
    Union(Vec<Ty>),
    Intersection(Vec<Ty>),
    /// A type followed by a `/* note */` saying why it is wider than the schema.
    Note(Box<Ty>, String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct Object {
    pub(crate) props: Vec<Prop>,
    /// The index signature's value type and a comment for it.
    pub(crate) index: Option<(Box<Ty>, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Prop {
    pub(crate) key: String,
    pub(crate) optional: bool,
    pub(crate) ty: Ty,
    pub(crate) doc: Vec<String>,
}

impl Ty {
    /// `unknown`, possibly with a note: absorbs a union, vanishes from an intersection.
    pub(crate) fn is_unknown(&self) -> bool {
        match self {
            Ty::Unknown => true,
            Ty::Note(t, _) => t.is_unknown(),
            _ => false,
        }
    }

    pub(crate) fn union(members: Vec<Ty>) -> Ty {
        let mut out = Unique::with_capacity(members.len());
        for m in members {
            match m {
                Ty::Union(inner) => {
                    for t in inner {
                        out.push(t);
                    }
                }
                Ty::Never => {}
                t if t.is_unknown() => return t,
                t => out.push(t),
            }
        }
        let mut out = out.items;
        match out.len() {
            0 => Ty::Never,
            1 => out.pop().expect("one member"),
            _ => Ty::Union(out),
        }
    }

    pub(crate) fn intersection(members: Vec<Ty>) -> Ty {
        let mut out = Unique::with_capacity(members.len());
        // An `unknown` adds nothing to an intersection, but if nothing else is left, its note
        // (why the type is `unknown`) is worth keeping.
        let mut noted = None;
        for m in members {
            match m {
                Ty::Intersection(inner) => {
                    for t in inner {
                        out.push(t);
                    }
                }
                Ty::Never => return Ty::Never,
                t @ Ty::Note(..) if t.is_unknown() => {
                    noted.get_or_insert(t);
                }
                t if t.is_unknown() => {}
                t => out.push(t),
            }
        }
        let mut out = out.items;
        match out.len() {
            0 => noted.unwrap_or(Ty::Unknown),
            1 => out.pop().expect("one member"),
            _ => Ty::Intersection(out),
        }
    }

    pub(crate) fn note(self, why: impl Into<String>) -> Ty {
        Ty::Note(Box::new(self), why.into())
    }

    /// Whether `undefined`-free arguments may be left out: no required property.
    pub(crate) fn all_optional(&self) -> bool {
        match self {
            Ty::Object(o) => o.props.iter().all(|p| p.optional),
            Ty::Unknown | Ty::Note(..) => self.is_unknown(),
            _ => false,
        }
    }
}

/// Members in order, each once. Hashing keeps a union of a million enum values linear; a
/// `Vec::contains` per member made it quadratic (50,000 values took 5.5 s).
struct Unique {
    items: Vec<Ty>,
    /// Hash of a member → the index of the first member with that hash. Members are hashed
    /// once and never cloned; a hash shared by unequal members falls back to a scan.
    seen: std::collections::HashMap<u64, usize>,
    hasher: std::collections::hash_map::RandomState,
}

impl Unique {
    fn with_capacity(n: usize) -> Self {
        Unique {
            items: Vec::with_capacity(n),
            seen: std::collections::HashMap::with_capacity(n),
            hasher: Default::default(),
        }
    }

    fn push(&mut self, t: Ty) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(&t);
        match self.seen.get(&hash) {
            Some(&i) if self.items[i] == t => {}
            Some(_) => {
                if !self.items.contains(&t) {
                    self.items.push(t);
                }
            }
            None => {
                self.seen.insert(hash, self.items.len());
                self.items.push(t);
            }
        }
    }
}

/// Writes `ty`; multi-line objects are indented by `indent` levels of two spaces.
pub(crate) fn print(ty: &Ty, indent: usize, out: &mut String) {
    match ty {
        Ty::Unknown => out.push_str("unknown"),
        Ty::Never => out.push_str("never"),
        Ty::Keyword(k) => out.push_str(k),
        Ty::Literal(s) | Ty::Ref(s) => out.push_str(s),
        Ty::Array(t) => {
            print_postfix_operand(t, indent, out);
            out.push_str("[]");
        }
        Ty::Tuple { items, required, rest } => {
            out.push('[');
            for (i, t) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if i >= *required {
                    print_postfix_operand(t, indent, out);
                    out.push('?');
                } else {
                    print(t, indent, out);
                }
            }
            if let Some(rest) = rest {
                if !items.is_empty() {
                    out.push_str(", ");
                }
                out.push_str("...");
                print_postfix_operand(rest, indent, out);
                out.push_str("[]");
            }
            out.push(']');
        }
        Ty::Union(members) => {
            for (i, t) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                print(t, indent, out);
            }
        }
        Ty::Intersection(members) => {
            for (i, t) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(" & ");
                }
                if matches!(t, Ty::Union(_) | Ty::Note(..)) {
                    out.push('(');
                    print(t, indent, out);
                    out.push(')');
                } else {
                    print(t, indent, out);
                }
            }
        }
        Ty::Note(t, why) => {
            print(t, indent, out);
            out.push_str(" /* ");
            out.push_str(&escape_comment(why));
            out.push_str(" */");
        }
        Ty::Object(o) => print_object(o, indent, out),
    }
}

fn print_postfix_operand(t: &Ty, indent: usize, out: &mut String) {
    if matches!(t, Ty::Union(_) | Ty::Intersection(_) | Ty::Note(..)) {
        out.push('(');
        print(t, indent, out);
        out.push(')');
    } else {
        print(t, indent, out);
    }
}

/// `{ ... }`: one member per line, or one line for an index signature alone.
pub(crate) fn print_object(o: &Object, indent: usize, out: &mut String) {
    if o.props.is_empty() {
        match &o.index {
            Some((t, doc)) if doc.is_empty() => {
                out.push_str("{ [key: string]: ");
                print(t, indent, out);
                out.push_str(" }");
                return;
            }
            None => {
                out.push_str("{}");
                return;
            }
            Some(_) => {}
        }
    }
    out.push_str("{\n");
    for p in &o.props {
        doc_comment(&p.doc, indent + 1, out);
        pad(indent + 1, out);
        out.push_str(&super::names::property_key(&p.key));
        if p.optional {
            out.push('?');
        }
        out.push_str(": ");
        print(&p.ty, indent + 1, out);
        out.push_str(";\n");
    }
    if let Some((t, doc)) = &o.index {
        doc_comment(doc, indent + 1, out);
        pad(indent + 1, out);
        out.push_str("[key: string]: ");
        print(t, indent + 1, out);
        out.push_str(";\n");
    }
    pad(indent, out);
    out.push('}');
}

pub(crate) fn pad(indent: usize, out: &mut String) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

/// A JSDoc block: `/** one line */`, or one ` * ` line per entry.
pub(crate) fn doc_comment(lines: &[String], indent: usize, out: &mut String) {
    match lines {
        [] => {}
        [line] if !line.is_empty() && line.len() <= 90 => {
            pad(indent, out);
            out.push_str("/** ");
            out.push_str(&escape_comment(line));
            out.push_str(" */\n");
        }
        _ => {
            pad(indent, out);
            out.push_str("/**\n");
            for line in lines {
                pad(indent, out);
                if line.is_empty() {
                    out.push_str(" *\n");
                } else {
                    out.push_str(" * ");
                    out.push_str(&escape_comment(line));
                    out.push('\n');
                }
            }
            pad(indent, out);
            out.push_str(" */\n");
        }
    }
}

/// Text that cannot end the comment it sits in, nor break its line structure.
pub(crate) fn escape_comment(text: &str) -> String {
    text.replace("*/", "*\\/").replace(['\r', '\n', '\u{2028}', '\u{2029}'], " ")
}

/// Splits free text (a description) into comment lines; trailing blanks are dropped.
pub(crate) fn text_lines(text: &str, lines: &mut Vec<String>) {
    let normalized = text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}'], "\n");
    let trimmed = normalized.trim_matches('\n');
    for line in trimmed.split('\n') {
        lines.push(line.trim_end().to_string());
    }
}
