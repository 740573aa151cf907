//! Schema → TypeScript: golden files (rewrite with `UPDATE_EXPECTED=1`), swc parses every one,
//! `tsc --strict` compiles them all, and broken input never panics.

use std::path::{Path, PathBuf};

use codemode::definitions;
use codemode::typegen::{self, ToolSchema};
use serde_json::{json, Value};

use crate::harness::{expect_file, node_tool};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/typegen")
}

/// Every fixture: (definitions file, expected declarations file).
fn cases() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in ["hard", "real"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|p| {
            let expected = p.with_extension("d.ts");
            (p, expected)
        }));
    }
    out
}

/// The declarations of one fixture, with its problems as trailing comments.
fn generate(path: &Path) -> String {
    let defs = definitions::parse(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let decls = definitions::declarations(stem, &format!("Tools of the {stem} fixture."), &defs);
    let mut text = decls.render();
    for p in &decls.problems {
        text.push_str(&format!("// problem: {p}\n"));
    }
    text
}

#[test]
fn golden_declarations() {
    let cases = cases();
    assert_eq!(cases.len(), 10, "6 hard fixtures and 4 real servers");
    for (input, expected) in cases {
        expect_file(&expected, &generate(&input));
    }
}

#[test]
fn generation_is_deterministic() {
    for (input, _) in cases() {
        assert_eq!(generate(&input), generate(&input), "{}", input.display());
    }
}

#[test]
fn every_golden_parses_with_swc() {
    use swc_common::{input::StringInput, BytePos};
    use swc_ecma_parser::{Parser, Syntax, TsSyntax};
    for (_, expected) in cases() {
        let text = std::fs::read_to_string(&expected).unwrap();
        let syntax = Syntax::Typescript(TsSyntax { dts: true, ..Default::default() });
        let input = StringInput::new(&text, BytePos(1), BytePos(1 + text.len() as u32));
        let mut parser = Parser::new(syntax, input, None);
        let module = parser.parse_module();
        assert!(module.is_ok(), "{}: {:?}", expected.display(), module.err());
        assert!(parser.take_errors().is_empty(), "{}", expected.display());
    }
}

/// The generated declarations, checked by the real TypeScript compiler in strict mode, together
/// with a program that uses them (and `@ts-expect-error` lines proving the types are not `any`).
#[test]
fn tsc_strict_compiles_every_golden() {
    let Some(mut tsc) = node_tool("tsc") else {
        eprintln!("SKIPPED tsc_strict_compiles_every_golden: node/npm not found, so tsc cannot run");
        return;
    };
    let mut files: Vec<PathBuf> = cases().into_iter().map(|(_, d)| d).collect();
    files.push(fixtures().join("demo.d.ts"));
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("js/codemode.d.ts"));
    files.push(fixtures().join("usage.ts"));
    let output = tsc
        .args(["--strict", "--noEmit", "--target", "es2022", "--lib", "es2022"])
        .args(&files)
        .output()
        .expect("tsc runs");
    assert!(
        output.status.success(),
        "tsc --strict failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn broken_schemas_are_reported_with_their_paths() {
    let decls = generate_problems("broken.json");
    let at: Vec<(&str, &str)> = decls.iter().map(|p| (p.tool.as_str(), p.path.as_str())).collect();
    assert_eq!(
        at,
        [
            ("broken", "/properties/dangling"),
            ("broken", "/properties/external"),
            ("broken", "/properties/relative"),
            ("broken", "/properties/noAnchor"),
            ("broken", "/properties/refNotString"),
            ("broken", "/properties/badType"),
            ("broken", "/properties/unknownType"),
            ("broken", "/properties/badProps"),
            ("broken", "/properties/badEnum"),
            ("broken", "/properties/badAnyOf"),
            ("broken", "/properties/notASchema"),
        ]
    );
    assert_eq!(decls[0].message, "$ref \"#/$defs/missing\" points to nothing in this schema");
}

fn generate_problems(file: &str) -> Vec<typegen::Problem> {
    let path = fixtures().join("hard").join(file);
    let defs = definitions::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    definitions::declarations("x", "", &defs).problems
}

#[test]
fn hostile_depth_and_width_never_overflow() {
    // 1,000 levels of nesting, built in code (serde_json's parser stops at 128).
    let mut deep = json!({"type": "string"});
    for _ in 0..1_000 {
        deep = json!({"type": "array", "items": deep});
    }
    let decls = typegen::declarations("x", "", &[schema("deep", &deep)]);
    assert_eq!(decls.problems.len(), 1);
    assert_eq!(decls.problems[0].message, "nested deeper than 64 levels");
    assert!(decls.render().contains("unknown /* nested deeper than 64 levels */"));
    // A chain of 2,000 `$ref`s, each to the next: every link is a named type, none recursive.
    let mut defs = serde_json::Map::new();
    for i in 0..2_000 {
        defs.insert(
            format!("d{i}"),
            json!({"type": "array", "items": {"$ref": format!("#/$defs/d{}", i + 1)}}),
        );
    }
    defs.insert("d2000".into(), json!({"type": "string"}));
    let chain = json!({"$ref": "#/$defs/d0", "$defs": defs});
    let decls = typegen::declarations("x", "", &[schema("chain", &chain)]);
    assert!(decls.problems.is_empty());
    let text = decls.render();
    assert!(text.contains("  type D0 = D1[];\n") && text.contains("  type D2000 = string;\n"));
    drop(deep);
}

fn schema<'a>(name: &'a str, input: &'a Value) -> ToolSchema<'a> {
    ToolSchema { name, js_name: name, title: None, description: "", input, output: None }
}

#[test]
fn definitions_files_fail_with_where_and_what() {
    let e = definitions::parse("{\"tools\": [}").unwrap_err();
    assert_eq!(e.at, "line 1, column 12");
    let e =
        definitions::parse(r#"{"tools": [{"name": "a", "inputSchema": {}}, {"name": "b"}]}"#).unwrap_err();
    assert_eq!(e.to_string(), "at /tools/1: tool \"b\" has no `inputSchema`");
    let e = definitions::parse(r#"[{"name": "a", "inputSchema": 3}]"#).unwrap_err();
    assert_eq!(e.to_string(), "at /0/inputSchema: a schema must be an object or a boolean");
    let e = definitions::parse(r#"{"name": 7, "inputSchema": {}}"#).unwrap_err();
    assert_eq!(e.to_string(), "at /name: must be a non-empty string");
    let e = definitions::parse("3").unwrap_err();
    assert_eq!(e.to_string(), "at /: expected a tool, an array of tools, or an object with `tools`");
    let one = definitions::parse(r#"{"name": "a", "description": "d", "inputSchema": true}"#).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].input_schema, Value::Bool(true));
}
