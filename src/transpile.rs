//! TypeScript → JavaScript, by erasing types in place.
//!
//! swc's fast type stripper replaces type-only syntax with whitespace, so every line and column
//! of the output is the same as in the agent's source: stack traces need no source map. Syntax
//! that would need a real transform (`enum`, `namespace`, parameter properties, `<T>x`
//! assertions) is rejected with a `syntax` error naming the construct and its position; that is a
//! deliberate choice: such code is rare in agent programs, and a clear error is better than a
//! transform whose output no longer lines up with the source.
//!
//! The program body is wrapped so that top-level `await` and `return` work; the wrapper sits on
//! the first line only, so only first-line columns shift, by [`Compiled::first_line_shift`].

use std::sync::{Arc, Mutex};

use swc_common::errors::{DiagnosticBuilder, Emitter, Handler};
use swc_common::{sync::Lrc, SourceMap};

use crate::error::{ErrorKind, ExecError};
use crate::nesting;

/// Name of the agent's program inside the sandbox, as seen in stack traces.
pub(crate) const SCRIPT_NAME: &str = "agent.ts";

/// A program body: `return` ends it, top-level `await` works.
const BODY_PREFIX: &str = "export default (async () => {";
const BODY_SUFFIX: &str = "\n})();\n";
/// A single function expression, as Cloudflare's Code Mode sends it: `async () => { ... }`.
const EXPR_PREFIX: &str = "export default (";
const EXPR_SUFFIX: &str = "\n);\n";

const DECORATORS: &str = "Decorators (`@decorator`) are not supported: programs run without a transform step";

/// The JavaScript to run and how to read its positions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Compiled {
    /// A module whose default export is the program's promise, or a function to call.
    pub(crate) js: String,
    /// True when the default export is the agent's function expression, to be called.
    pub(crate) call_default: bool,
    /// Characters the wrapper adds before the agent's first line.
    pub(crate) first_line_shift: u32,
    /// Lines of the agent's source; later lines belong to the wrapper.
    pub(crate) source_lines: u32,
}

impl Compiled {
    /// Maps a 1-based position in the generated module back to the agent's source.
    pub(crate) fn map_position(&self, line: u32, column: u32) -> (u32, u32) {
        unshift(line, column, self.first_line_shift)
    }
}

/// Only the first line carries the wrapper, so only its columns move.
fn unshift(line: u32, column: u32, shift: u32) -> (u32, u32) {
    if line == 1 {
        (1, column.saturating_sub(shift).max(1))
    } else {
        (line, column)
    }
}

/// The program without a leading byte-order mark, which JavaScript reads as white space but
/// which would hide the function-expression form (`\u{feff}async () => 42`).
pub(crate) fn without_bom(code: &str) -> &str {
    code.strip_prefix('\u{feff}').unwrap_or(code)
}

/// Strips the types of an agent's program and wraps it for the sandbox.
pub(crate) fn transpile(ts: &str) -> Result<Compiled, ExecError> {
    before_parsing(ts)?;
    if let Some(expr) = function_expression_candidate(ts) {
        if let Ok(js) = strip(EXPR_PREFIX, expr, EXPR_SUFFIX) {
            return Ok(Compiled {
                js,
                call_default: true,
                first_line_shift: EXPR_PREFIX.len() as u32,
                source_lines: line_count(ts),
            });
        }
    }
    let js = strip(BODY_PREFIX, ts, BODY_SUFFIX)?;
    Ok(Compiled {
        js,
        call_default: false,
        first_line_shift: BODY_PREFIX.len() as u32,
        source_lines: line_count(ts),
    })
}

/// A saved program's body as a function of `input`: a script whose value is that function.
pub(crate) const SKILL_PREFIX: &str = "(async (input) => {";
const SKILL_SUFFIX: &str = "\n})";

/// Strips the types of a saved program (a body reading `input`) and wraps it as a script whose
/// value is an async function of `input`; positions move as a program's do.
pub(crate) fn transpile_skill(ts: &str) -> Result<String, ExecError> {
    before_parsing(ts)?;
    strip(SKILL_PREFIX, ts, SKILL_SUFFIX)
}

/// The top-level `interface` and `type` declarations of a program body, as
/// `(name, source text)`, in order. `None` when the body does not parse.
pub(crate) fn type_declarations(ts: &str) -> Option<Vec<(String, String)>> {
    use swc_common::Spanned;
    use swc_ecma_ast::{Decl, Stmt};
    let (module, _, start) = parse_body(ts)?;
    let body = wrapped_body(&module)?;
    let at = |pos: swc_common::BytePos| (pos - start).0 as usize - BODY_PREFIX.len();
    let mut out = Vec::new();
    for stmt in &body.stmts {
        let name = match stmt {
            Stmt::Decl(Decl::TsInterface(i)) => i.id.sym.to_string(),
            Stmt::Decl(Decl::TsTypeAlias(t)) => t.id.sym.to_string(),
            _ => continue,
        };
        let span = stmt.span();
        out.push((name, ts.get(at(span.lo)..at(span.hi))?.to_string()));
    }
    Some(out)
}

/// What is refused before anything parses the text: a raw NUL, nesting past the limit, a
/// closing bracket that closes the wrapper.
fn before_parsing(ts: &str) -> Result<(), ExecError> {
    // The engine reads source as a C string; a raw NUL is never what an agent meant anyway.
    if let Some(at) = ts.find('\0') {
        let (line, column) = nesting::position(ts, at);
        let message = "the program contains a raw NUL character; write \\0 in a string instead";
        return Err(ExecError::new(ErrorKind::Syntax, message).at(line, column));
    }
    // Before anything recursive reads it.
    if let Some(at) = nesting::check(ts)? {
        // It would close the wrapper and run the rest outside it (`async () => 1); x(); (0`).
        let (line, column) = nesting::position(ts, at);
        let closer = ts[at..].chars().next().unwrap_or(')');
        let message = format!("unexpected `{closer}`: it closes a bracket that was never opened");
        return Err(ExecError::new(ErrorKind::Syntax, message).at(line, column));
    }
    Ok(())
}

/// Globals that cannot be assigned: a top-level declaration of one of them stays local.
const FIXED_GLOBALS: [&str; 3] = ["undefined", "NaN", "Infinity"];

/// A program of a session, transpiled so that its top-level declarations outlive it, as in a
/// REPL: `const`, `let` and `var` become assignments to globals (declared, as `undefined`, before
/// the program starts), a `function` is copied to a global when the program starts (it is
/// hoisted), a `class` just after its declaration. Inside the program they read as before, save
/// that `const` no longer refuses reassignment and reading one before its line gives `undefined`
/// (or the session's earlier value) rather than a `ReferenceError`. Lines keep their numbers;
/// columns move only after what is inserted on a line: `=void 0` after a name declared without a
/// value, `)` after a declaration that starts with an object pattern, a class's copy. The arrow
/// form declares nothing: its top level is a function's. The result is a script whose value is
/// the program's promise, not a module: a module stays in its runtime's module list for good,
/// and a session's runtime runs many programs. Returns the names declared.
pub(crate) fn transpile_session(ts: &str) -> Result<(Compiled, Vec<String>), ExecError> {
    let (mut compiled, names) = hoist(ts)?;
    script_form(&mut compiled.js);
    Ok((compiled, names))
}

fn hoist(ts: &str) -> Result<(Compiled, Vec<String>), ExecError> {
    use swc_common::Spanned;
    use swc_ecma_ast::{Decl, Stmt, VarDeclKind};
    let mut compiled = transpile(ts)?;
    if compiled.call_default {
        return Ok((compiled, Vec::new()));
    }
    let cm: Lrc<SourceMap> = Default::default();
    let file = cm.new_source_file(Lrc::new(swc_common::FileName::Anon), compiled.js.clone());
    let syntax = swc_ecma_parser::Syntax::Es(Default::default());
    let Ok(module) =
        swc_ecma_parser::parse_file_as_module(&file, syntax, Default::default(), None, &mut Vec::new())
    else {
        // The engine reports the error with its position when it compiles the program.
        return Ok((compiled, Vec::new()));
    };
    let Some(body) = wrapped_body(&module) else { return Ok((compiled, Vec::new())) };
    let at = |pos: swc_common::BytePos| (pos - file.start_pos).0 as usize;
    // (offset, bytes replaced, text), applied from the end.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let (mut assigned, mut functions) = (Vec::new(), Vec::new());
    let mut names = Vec::new();
    let fixed = |name: &str| FIXED_GLOBALS.contains(&name);
    for stmt in &body.stmts {
        let Stmt::Decl(decl) = stmt else { continue };
        match decl {
            Decl::Var(var) => {
                let mut declared = Vec::new();
                for d in &var.decls {
                    binding_names(&d.name, &mut declared);
                }
                if declared.iter().any(|n| fixed(n)) || var.decls.is_empty() {
                    continue;
                }
                let keyword = match var.kind {
                    VarDeclKind::Const => "const",
                    VarDeclKind::Let => "let",
                    VarDeclKind::Var => "var",
                };
                // The `;` keeps a line without a semicolon before it from running on into this
                // one; an object pattern first needs parentheses, or it would read as a block.
                let object = matches!(var.decls[0].name, swc_ecma_ast::Pat::Object(_));
                let lead = if object { ";(" } else { ";" };
                edits.push((
                    at(var.span.lo),
                    keyword.len(),
                    format!("{lead:>width$}", width = keyword.len()),
                ));
                for d in &var.decls {
                    if d.init.is_none() {
                        edits.push((at(d.name.span().hi), 0, "=void 0".into()));
                    }
                }
                if object {
                    let last = var.decls.last().expect("a declaration declares");
                    edits.push((at(last.span.hi), 0, ")".into()));
                }
                assigned.extend(declared.iter().cloned());
                names.extend(declared);
            }
            Decl::Fn(f) if !fixed(&f.ident.sym) => {
                functions.push(f.ident.sym.to_string());
                names.push(f.ident.sym.to_string());
            }
            Decl::Class(c) if !fixed(&c.ident.sym) => {
                let name = c.ident.sym.to_string();
                edits.push((at(c.class.span.hi), 0, format!(";globalThis.{name}={name};")));
                names.push(name);
            }
            _ => {}
        }
    }
    if names.is_empty() {
        return Ok((compiled, names));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut js = compiled.js.clone();
    for (offset, len, text) in edits {
        js.replace_range(offset..offset + len, &text);
    }
    // Declared before the program runs, so that assigning them is never to an undeclared name.
    let declare = format!(
        "for(const n of {})if(!(n in globalThis))globalThis[n]=void 0;",
        serde_json::to_string(&assigned).expect("names serialize")
    );
    let copy: String = functions.iter().map(|f| format!("globalThis.{f}={f};")).collect();
    js.insert_str(BODY_PREFIX.len(), &copy);
    js.insert_str(0, &declare);
    compiled.first_line_shift += (declare.len() + copy.len()) as u32;
    compiled.js = js;
    // `var a` twice declares one name.
    names.sort();
    names.dedup();
    Ok((compiled, names))
}

/// The wrapped program as a script whose value is the program's promise (or function):
/// `export default` blanked out, so every position stays.
fn script_form(js: &mut String) {
    const EXPORT: &str = "export default ";
    if let Some(at) = js.find(EXPORT) {
        js.replace_range(at..at + EXPORT.len(), &" ".repeat(EXPORT.len()));
    }
}

/// The statements of a wrapped program body: `export default (async () => { BODY })();`.
fn wrapped_body(module: &swc_ecma_ast::Module) -> Option<&swc_ecma_ast::FunctionBody> {
    use swc_ecma_ast::{ArrowFunctionBody, Callee, Expr, ModuleDecl, ModuleItem};
    let Some(ModuleItem::ModuleDecl(ModuleDecl::ExportDefaultExpr(export))) = module.body.first() else {
        return None;
    };
    let Expr::Call(call) = &*export.expr else { return None };
    let Callee::Expr(callee) = &call.callee else { return None };
    let Expr::Paren(arrow) = &**callee else { return None };
    let Expr::Arrow(arrow) = &*arrow.expr else { return None };
    match &*arrow.body {
        ArrowFunctionBody::FunctionBody(body) => Some(body),
        ArrowFunctionBody::Expr(_) => None,
    }
}

/// A TypeScript program body parsed in its wrapper (for [`wrapped_body`]), with its source map
/// and the position where the wrapped text starts; `None` when it does not parse.
fn parse_body(ts: &str) -> Option<(swc_ecma_ast::Module, Lrc<SourceMap>, swc_common::BytePos)> {
    let cm: Lrc<SourceMap> = Default::default();
    let file =
        cm.new_source_file(Lrc::new(swc_common::FileName::Anon), format!("{BODY_PREFIX}{ts}{BODY_SUFFIX}"));
    let syntax = swc_ecma_parser::Syntax::Typescript(Default::default());
    let module =
        swc_ecma_parser::parse_file_as_module(&file, syntax, Default::default(), None, &mut Vec::new())
            .ok()?;
    let start = file.start_pos;
    Some((module, cm, start))
}

/// The names a binding pattern declares.
fn binding_names(pat: &swc_ecma_ast::Pat, out: &mut Vec<String>) {
    use swc_ecma_ast::{ObjectPatProp, Pat};
    match pat {
        Pat::Ident(id) => out.push(id.id.sym.to_string()),
        Pat::Array(a) => a.elems.iter().flatten().for_each(|p| binding_names(p, out)),
        Pat::Rest(r) => binding_names(&r.arg, out),
        Pat::Assign(a) => binding_names(&a.left, out),
        Pat::Object(o) => {
            for prop in &o.props {
                match prop {
                    ObjectPatProp::KeyValue(kv) => binding_names(&kv.value, out),
                    ObjectPatProp::Assign(a) => out.push(a.key.id.sym.to_string()),
                    ObjectPatProp::Rest(r) => binding_names(&r.arg, out),
                }
            }
        }
        Pat::Invalid(_) | Pat::Expr(_) => {}
    }
}

/// Lines as the engine counts them: `\r`, `\r\n`, U+2028 and U+2029 end lines too.
fn line_count(ts: &str) -> u32 {
    nesting::lines(ts).len().max(1) as u32
}

/// A source that may be a single function expression: it starts with `async`, `(async`,
/// `function` or `(function`; trailing semicolons are dropped so it can sit in parentheses.
fn function_expression_candidate(ts: &str) -> Option<&str> {
    let head = ts.trim_start();
    let starts = ["async", "(async", "function", "(function"];
    if !starts.iter().any(|s| head.starts_with(s)) {
        return None;
    }
    Some(ts.trim_end().trim_end_matches(';'))
}

/// For a program body that returned nothing: a hint when its last statement is an expression
/// whose value was probably meant as the result (`rows.length` with no `return`). Calls of
/// `console`, assignments and updates are statements for their effect and get none. Parses the
/// program again, so it runs only after such a run, never on the way to a result.
pub(crate) fn dropped_value_hint(ts: &str) -> Option<String> {
    use swc_ecma_ast::{Callee, Expr, Stmt, UnaryOp};
    if function_expression_candidate(ts).is_some() {
        return None;
    }
    let (module, cm, _) = parse_body(ts)?;
    let body = wrapped_body(&module)?;
    let Some(Stmt::Expr(last)) = body.stmts.last() else { return None };
    let for_effect = match &*last.expr {
        Expr::Assign(_) | Expr::Update(_) => true,
        Expr::Unary(u) => matches!(u.op, UnaryOp::Delete | UnaryOp::Void),
        Expr::Call(c) => matches!(&c.callee, Callee::Expr(f) if matches!(&**f,
            Expr::Member(m) if matches!(&*m.obj, Expr::Ident(i) if &*i.sym == "console"))),
        _ => false,
    };
    if for_effect {
        return None;
    }
    let line = cm.lookup_char_pos(last.span.lo).line;
    Some(format!(
        "the program returned nothing, and its last statement (line {line}) is an expression whose value is \
         dropped: write `return` before it to get its value back"
    ))
}

/// Diagnostics swc emitted: message and primary span.
type Diagnostics = Vec<(String, Option<swc_common::Span>)>;

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Diagnostics>>);

impl Emitter for Collected {
    fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
        let span = db.span.primary_span();
        self.0.lock().expect("diagnostics lock").push((db.message(), span));
    }
}

fn strip(prefix: &str, ts: &str, suffix: &str) -> Result<String, ExecError> {
    let source = format!("{prefix}{ts}{suffix}");
    let cm: Lrc<SourceMap> = Default::default();
    let collected = Collected::default();
    let handler = Handler::with_emitter(false, false, Box::new(collected.clone()));
    let options = swc_ts_fast_strip::Options {
        module: Some(true),
        filename: Some(SCRIPT_NAME.into()),
        ..Default::default()
    };
    match swc_ts_fast_strip::operate(&cm, &handler, source, options) {
        Ok(out) => Ok(out.code),
        Err(err) => {
            let diagnostics = collected.0.lock().expect("diagnostics lock");
            let (message, span) = diagnostics.first().cloned().unwrap_or_else(|| (err.message.clone(), None));
            let mut error = ExecError::new(ErrorKind::Syntax, message);
            if let Some(span) = span {
                let loc = cm.lookup_char_pos(span.lo);
                // The parser only says "Expression expected" at an `@`; name the construct.
                let at = (span.lo - loc.file.start_pos).0 as usize;
                if loc.file.src.get(at..).is_some_and(|rest| rest.starts_with('@')) {
                    error.message = DECORATORS.to_string();
                }
                // Counted here, not by swc, which ends lines only at `\n` and `\r`.
                let (line, column) = nesting::position(&loc.file.src, at);
                let (line, column) = unshift(line, column, prefix.len() as u32);
                error = error.at(line, column);
                // An error inside the wrapper's closing lines points past the agent's source.
                let last = line_count(ts);
                if error.line > Some(last) {
                    error.line = Some(last);
                    error.column =
                        Some(nesting::lines(ts).last().map_or(1, |l| l.chars().count() as u32 + 1));
                }
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_erased_in_place() {
        let c = transpile("const x: number = 1;\ninterface A { a: string }\nreturn x as number;").unwrap();
        assert!(!c.call_default);
        let lines: Vec<&str> = c.js.lines().collect();
        assert_eq!(lines[0], "export default (async () => {const x         = 1;");
        assert_eq!(lines[1].trim(), "");
        assert_eq!(lines[2], "return x          ;");
    }

    #[test]
    fn function_expression_form_is_detected() {
        let c = transpile("async () => {\n  return 1;\n};").unwrap();
        assert!(c.call_default);
        let c = transpile("async function f() {}\nreturn f();").unwrap();
        assert!(!c.call_default);
    }

    #[test]
    fn syntax_errors_point_at_the_agent_source() {
        let e = transpile("const a = 1;\nconst = 2;").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert_eq!((e.line, e.column), (Some(2), Some(7)));
        let e = transpile("let x = ;").unwrap_err();
        assert_eq!((e.line, e.column), (Some(1), Some(9)));
    }

    #[test]
    fn decorators_are_rejected_by_name() {
        let e = transpile("function d(x: any) { return x }\n@d class A {}").unwrap_err();
        assert_eq!((e.message.as_str(), e.line, e.column), (DECORATORS, Some(2), Some(1)));
    }

    #[test]
    fn enum_is_rejected_by_name() {
        let e = transpile("const a = 1;\nenum Color { Red }\nreturn a;").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert!(e.message.contains("enum"), "{}", e.message);
        assert_eq!(e.line, Some(2));
    }
}
