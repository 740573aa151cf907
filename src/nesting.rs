//! A bounded pre-scan of program text for nesting depth.
//!
//! Every stage that reads a program recurses on its nesting: swc's parser and stripper, the
//! type checker, QuickJS's compiler. Twenty thousand `[` overflowed a 32 MiB sandbox thread in
//! swc's parser and aborted the process. Growing stacks only moves the cliff (and a 1 MB
//! program of `[` would touch most of a gigabyte of stack), so the text is scanned first, in one
//! linear pass with no recursion, and a program nested deeper than [`MAX_NESTING`] is refused
//! as a `syntax` error at the token where the limit was passed. Nothing recursive has seen it.
//!
//! The measure is conservative and lexical. A level is each open bracket (`(`, `[`, `{`, a
//! template's `${`) plus each token that makes the parser recurse without a bracket: prefix
//! operators (`!`, `~`, prefix `+`/`-`/`++`/`--`, `typeof`, `void`, `delete`, `await`, `new`,
//! `yield`, `...`, `keyof`), and the right-associative or nesting infix tokens (`=>`, the
//! ternary `?`, `=` and compound assignments, `**`, `<` which opens type arguments). Such
//! tokens count until the expression they belong to ends: at `,` or `;`, at the bracket that
//! closes their level, or at a line break between two statements. Left-associative operators
//! and member chains (`a + b + …`, `a.b.c…`) are parsed by loops everywhere and do not count.

use crate::error::{ErrorKind, ExecError};

/// Levels of nesting a program may use. Agent programs use tens; QuickJS's own compiler, at the
/// default 512 KiB engine stack, gives up on parentheses somewhere past 400.
pub(crate) const MAX_NESTING: usize = 256;

/// What the previous significant token was, to tell a regex from a division, a prefix `+` from
/// an infix one, and a line break that ends a statement from one inside an expression.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// Start of input, an operator or an opening bracket: an operand comes next.
    Operator,
    /// An identifier, literal or closing bracket: an operator or a new statement comes next.
    Operand,
    /// A keyword after which an expression starts (`return`, `typeof`, `case`…).
    Keyword,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Bracket,
    /// `${` inside a template literal: its `}` resumes the template's text.
    Template,
}

struct Level {
    open: Open,
    /// Counted tokens of the expression in progress at this level.
    chain: usize,
}

struct Scan<'a> {
    src: &'a [u8],
    at: usize,
    levels: Vec<Level>,
    depth: usize,
    prev: Prev,
    /// Where the token being read starts: where a limit error points.
    start: usize,
    /// The first closing bracket that closed nothing.
    stray: Option<usize>,
}

/// Refuses a program nested deeper than [`MAX_NESTING`], naming where. Otherwise returns the
/// offset of the first closing bracket that closes nothing, if any: such a program would close
/// the wrapper the runtime puts around it.
pub(crate) fn check(ts: &str) -> Result<Option<usize>, ExecError> {
    let mut scan = Scan {
        src: ts.as_bytes(),
        at: 0,
        levels: vec![Level { open: Open::Bracket, chain: 0 }],
        depth: 0,
        prev: Prev::Operator,
        start: 0,
        stray: None,
    };
    match scan.run() {
        Ok(()) => Ok(scan.stray),
        Err(at) => {
            let (line, column) = position(ts, at);
            let message = format!(
                "the program nests deeper than {MAX_NESTING} levels here (brackets, functions and operators \
                 together); split the expression into named parts"
            );
            Err(ExecError::new(ErrorKind::Syntax, message).at(line, column))
        }
    }
}

/// The 1-based line and column (in characters) of a byte offset, with every ECMAScript line
/// terminator (`\n`, `\r\n`, `\r`, U+2028, U+2029) ending a line, as the parsers count them.
pub(crate) fn position(src: &str, offset: usize) -> (u32, u32) {
    let mut line = 1u32;
    let mut column = 1u32;
    let end = (0..=offset.min(src.len())).rev().find(|&i| src.is_char_boundary(i)).unwrap_or(0);
    let mut chars = src[..end].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' | '\u{2028}' | '\u{2029}' => {
                line += 1;
                column = 1;
            }
            _ => column += 1,
        }
    }
    (line, column)
}

/// The lines of a source, split at every ECMAScript line terminator as [`position`] counts them.
pub(crate) fn lines(src: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\r' if chars.peek().is_some_and(|&(_, n)| n == '\n') => {
                out.push(&src[start..i]);
                chars.next();
                start = i + 2;
            }
            '\n' | '\r' | '\u{2028}' | '\u{2029}' => {
                out.push(&src[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&src[start..]);
    out
}

/// Keywords after which an operand starts (so `/` opens a regex and `+` is a prefix).
const EXPRESSION_KEYWORDS: &[&[u8]] = &[
    b"return",
    b"typeof",
    b"void",
    b"delete",
    b"await",
    b"new",
    b"yield",
    b"case",
    b"throw",
    b"in",
    b"of",
    b"instanceof",
    b"else",
    b"do",
    b"keyof",
    b"extends",
    b"as",
    b"satisfies",
];
/// Keywords that open a nesting like a prefix operator.
const NESTING_KEYWORDS: &[&[u8]] = &[b"typeof", b"void", b"delete", b"await", b"new", b"yield", b"keyof"];
/// Keywords that continue an expression across a line break (binary operators spelled as words).
const INFIX_KEYWORDS: &[&[u8]] = &[b"in", b"instanceof", b"as", b"satisfies", b"extends", b"of"];

impl Scan<'_> {
    fn peek(&self, n: usize) -> u8 {
        self.src.get(self.at + n).copied().unwrap_or(0)
    }

    fn run(&mut self) -> Result<(), usize> {
        while self.at < self.src.len() {
            self.start = self.at;
            let c = self.peek(0);
            match c {
                b'\n' | b'\r' => {
                    self.at += 1;
                    self.line_break();
                }
                // U+2028 and U+2029 (E2 80 A8/A9) end lines too.
                0xE2 if self.peek(1) == 0x80 && matches!(self.peek(2), 0xA8 | 0xA9) => {
                    self.at += 3;
                    self.line_break();
                }
                b' ' | b'\t' | 0x0B | 0x0C => self.at += 1,
                b'/' if self.peek(1) == b'/' => self.skip_line_comment(),
                b'/' if self.peek(1) == b'*' => self.skip_block_comment(),
                b'/' if self.prev != Prev::Operand => {
                    self.skip_regex();
                    self.prev = Prev::Operand;
                }
                b'\'' | b'"' => {
                    self.skip_string(c);
                    self.prev = Prev::Operand;
                }
                b'`' => {
                    self.at += 1;
                    self.template_text()?;
                }
                b'(' | b'[' | b'{' => {
                    self.at += 1;
                    self.push(Open::Bracket)?;
                }
                b')' | b']' => {
                    self.at += 1;
                    self.pop();
                    self.prev = Prev::Operand;
                }
                b'}' => {
                    self.at += 1;
                    let open = self.pop();
                    if open == Some(Open::Template) {
                        self.template_text()?;
                    } else {
                        self.prev = Prev::Operand;
                    }
                }
                b',' | b';' => {
                    self.at += 1;
                    self.reset();
                    self.prev = Prev::Operator;
                }
                c if c == b'_' || c == b'$' || c == b'\\' || c.is_ascii_alphanumeric() || c >= 0x80 => {
                    self.word()?;
                }
                _ => self.punctuator()?,
            }
        }
        Ok(())
    }

    fn push(&mut self, open: Open) -> Result<(), usize> {
        self.levels.push(Level { open, chain: 0 });
        self.prev = Prev::Operator;
        self.deeper(1)
    }

    fn pop(&mut self) -> Option<Open> {
        // An unbalanced closer: the caller decides; the outermost level stays.
        if self.levels.len() == 1 {
            self.stray.get_or_insert(self.start);
            self.reset();
            return None;
        }
        let level = self.levels.pop()?;
        self.depth -= 1 + level.chain;
        Some(level.open)
    }

    fn reset(&mut self) {
        let level = self.levels.last_mut().expect("the outermost level is never popped");
        self.depth -= level.chain;
        level.chain = 0;
    }

    fn deeper(&mut self, by: usize) -> Result<(), usize> {
        self.depth += by;
        if self.depth > MAX_NESTING {
            return Err(self.start);
        }
        Ok(())
    }

    fn chain(&mut self) -> Result<(), usize> {
        self.levels.last_mut().expect("the outermost level is never popped").chain += 1;
        self.deeper(1)
    }

    /// A line break ends the expression in progress when the token before it ends an operand
    /// and the next one can only start a new statement (a name, a literal, a keyword that is
    /// not an infix operator), as automatic semicolon insertion reads it.
    fn line_break(&mut self) {
        if self.prev != Prev::Operand {
            return;
        }
        let mut at = self.at;
        while at < self.src.len() && matches!(self.src[at], b' ' | b'\t' | b'\n' | b'\r') {
            at += 1;
        }
        let next = self.src.get(at).copied().unwrap_or(0);
        let starts_statement = if next.is_ascii_alphabetic() || next == b'_' || next == b'$' {
            let end = self.src[at..]
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$'))
                .map_or(self.src.len(), |n| at + n);
            !INFIX_KEYWORDS.contains(&&self.src[at..end])
        } else {
            next.is_ascii_digit() || matches!(next, b'"' | b'\'' | b'`' | b'!' | b'~' | b'@' | b'#')
        };
        if starts_statement {
            self.reset();
            self.prev = Prev::Operator;
        }
    }

    fn word(&mut self) -> Result<(), usize> {
        let start = self.at;
        while self.at < self.src.len() {
            let b = self.src[self.at];
            if b == b'_' || b == b'$' || b.is_ascii_alphanumeric() || b >= 0x80 {
                // A non-ASCII line terminator is not part of a name.
                if b == 0xE2 && self.peek(1) == 0x80 && matches!(self.peek(2), 0xA8 | 0xA9) {
                    break;
                }
                self.at += 1;
            } else if b == b'\\' {
                self.at += 2;
            } else {
                break;
            }
        }
        let word = &self.src[start..self.at.min(self.src.len())];
        // A name after `.` is a property, never a keyword.
        let after_dot =
            start > 0 && self.src[..start].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'.');
        if !after_dot && NESTING_KEYWORDS.contains(&word) {
            self.prev = Prev::Keyword;
            return self.chain();
        }
        self.prev =
            if !after_dot && EXPRESSION_KEYWORDS.contains(&word) { Prev::Keyword } else { Prev::Operand };
        Ok(())
    }

    fn punctuator(&mut self) -> Result<(), usize> {
        let rest = &self.src[self.at..];
        let operand_before = self.prev == Prev::Operand;
        // Longest first, so `=>` is not `=` and `>`, and `**=` is not `**`.
        const TOKENS: &[&[u8]] = &[
            b">>>=", b"...", b"===", b"!==", b"**=", b"<<=", b">>=", b">>>", b"&&=", b"||=", b"??=", b"=>",
            b"==", b"!=", b"<=", b">=", b"&&", b"||", b"??", b"?.", b"++", b"--", b"+=", b"-=", b"*=", b"/=",
            b"%=", b"&=", b"|=", b"^=", b"**", b"<<", b">>",
        ];
        let token = TOKENS.iter().find(|t| rest.starts_with(t)).map_or(&rest[..1], |t| &rest[..t.len()]);
        self.at += token.len();
        // `?.` followed by a digit is a ternary `?` and a number (`a?.5:1`).
        let token = if token == b"?." && self.peek(0).is_ascii_digit() {
            self.at -= 1;
            &b"?"[..]
        } else {
            token
        };
        let counts = match token {
            b"++" | b"--" | b"+" | b"-" => !operand_before,
            b"!" => {
                // A postfix non-null assertion (`a!`) leaves an operand behind.
                if operand_before {
                    return Ok(());
                }
                true
            }
            b"~" | b"..." | b"=>" | b"?" | b"<" | b"**" => true,
            t if t.ends_with(b"=") && !matches!(t, b"==" | b"===" | b"!=" | b"!==" | b"<=" | b">=") => true,
            _ => false,
        };
        self.prev = match token {
            b"++" | b"--" if operand_before => Prev::Operand,
            _ => Prev::Operator,
        };
        if counts {
            self.chain()?;
        }
        Ok(())
    }

    fn skip_line_comment(&mut self) {
        while self.at < self.src.len() && !matches!(self.src[self.at], b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn skip_block_comment(&mut self) {
        self.at += 2;
        while self.at < self.src.len() && !(self.src[self.at] == b'*' && self.peek(1) == b'/') {
            self.at += 1;
        }
        self.at = (self.at + 2).min(self.src.len());
    }

    fn skip_string(&mut self, quote: u8) {
        self.at += 1;
        while self.at < self.src.len() {
            match self.src[self.at] {
                b'\\' => self.at += 2,
                b'\n' | b'\r' => return,
                c => {
                    self.at += 1;
                    if c == quote {
                        return;
                    }
                }
            }
        }
    }

    fn skip_regex(&mut self) {
        self.at += 1;
        let mut class = false;
        while self.at < self.src.len() {
            match self.src[self.at] {
                b'\\' => self.at += 2,
                b'\n' | b'\r' => return,
                b'[' => {
                    class = true;
                    self.at += 1;
                }
                b']' => {
                    class = false;
                    self.at += 1;
                }
                b'/' if !class => {
                    self.at += 1;
                    while self.at < self.src.len() && self.src[self.at].is_ascii_alphabetic() {
                        self.at += 1;
                    }
                    return;
                }
                _ => self.at += 1,
            }
        }
    }

    /// The text of a template literal, up to its closing backtick or its next `${`.
    fn template_text(&mut self) -> Result<(), usize> {
        while self.at < self.src.len() {
            match self.src[self.at] {
                b'\\' => self.at += 2,
                b'`' => {
                    self.at += 1;
                    self.prev = Prev::Operand;
                    return Ok(());
                }
                b'$' if self.peek(1) == b'{' => {
                    self.start = self.at;
                    self.at += 2;
                    return self.push(Open::Template);
                }
                _ => self.at += 1,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(src: &str) -> Option<(u32, u32)> {
        check(src).err().map(|e| (e.line.unwrap(), e.column.unwrap()))
    }

    #[test]
    fn a_closer_of_nothing_is_found() {
        assert_eq!(check("async () => 1); globalThis.x = 1; (0").unwrap(), Some(13));
        assert_eq!(check("}); x(); ({").unwrap(), Some(0));
        assert_eq!(check("const s = ')'; return [1, (2)];").unwrap(), None);
    }

    #[test]
    fn ordinary_programs_pass() {
        let programs = [
            "const rows = await sheets.getRows({ sheetId: 'a' });\nreturn rows.filter(r => r.amount > 10).map(r => r.id);",
            "let a = 1\nlet b = 2\na = b = 3\nreturn a ? b : -a",
            "const re = /[(]{3}/g; return 'x'.replace(re, '');",
            "return `a ${`b ${1 + 2}`} c`;",
            "function f<T>(x: Array<Promise<T>>): T[] { return [] }\nreturn typeof f;",
        ];
        for p in programs {
            assert_eq!(depth_error(p), None, "{p}");
        }
    }

    #[test]
    fn many_statements_without_semicolons_do_not_add_up() {
        let program = "x = 1\n".repeat(10_000);
        assert_eq!(depth_error(&program), None);
        let program = "x = -y\n".repeat(10_000);
        assert_eq!(depth_error(&program), None);
    }

    #[test]
    fn long_flat_data_and_left_chains_pass() {
        let data = format!(
            "return [{}];",
            (0..50_000).map(|i| format!("[{i}, -{i}]")).collect::<Vec<_>>().join(",")
        );
        assert_eq!(depth_error(&data), None);
        let sum = format!("return 1{};", " + 1".repeat(50_000));
        assert_eq!(depth_error(&sum), None);
    }

    #[test]
    fn each_nesting_kind_is_stopped_where_it_passes_the_limit() {
        let n = 100_000;
        let cases = [
            format!("return {};", "[".repeat(n)),
            format!("return {};", "(".repeat(n)),
            format!("return {}1;", "!".repeat(n)),
            format!("return {}1;", "x => ".repeat(n)),
            format!("return {}1;", "1 ? 1 : ".repeat(n)),
            format!("let x: {}number;", "A<".repeat(n)),
            format!("return {};", "`${".repeat(n)),
            format!("return {}", "{a:".repeat(n)),
            format!("return {}", "- ".repeat(n)),
        ];
        for case in &cases {
            let (line, column) = depth_error(case).unwrap_or_else(|| panic!("{}", &case[..20]));
            assert_eq!(line, 1);
            let offset = case.char_indices().nth(column as usize - 1).unwrap().0;
            assert!(offset < 8 * MAX_NESTING + 16, "{}: stopped at {column}", &case[..20]);
        }
        // A line break between the levels is no way around it.
        let case = format!("return 1{}", "\n? 1\n: 1".repeat(n));
        assert_eq!(depth_error(&case), Some((2 * (MAX_NESTING as u32 + 1), 1)));
    }

    #[test]
    fn strings_comments_and_regexes_hide_their_brackets() {
        let deep = "(".repeat(1000);
        for p in [
            format!("return '{deep}';"),
            format!("// {deep}\nreturn 1;"),
            format!("/* {deep} */ return 1;"),
            format!("return /{deep}/.source;"),
            format!("return `{deep}`;"),
        ] {
            assert_eq!(depth_error(&p), None, "{}", &p[..12]);
        }
    }

    #[test]
    fn positions_count_every_line_terminator() {
        let src = "a\rb\r\nc\u{2028}d\u{2029}e\nf";
        assert_eq!(position(src, src.find('f').unwrap()), (6, 1));
        assert_eq!(position(src, src.find('c').unwrap()), (3, 1));
        assert_eq!(lines(src), vec!["a", "b", "c", "d", "e", "f"]);
    }
}
