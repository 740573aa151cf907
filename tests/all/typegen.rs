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
    for (_, expected) in cases() {
        let text = std::fs::read_to_string(&expected).unwrap();
        assert!(parses_as_dts(&text), "{}", expected.display());
    }
}

/// Whether swc's TypeScript parser reads `text` as a declaration file without an error.
fn parses_as_dts(text: &str) -> bool {
    use swc_common::{input::StringInput, BytePos};
    use swc_ecma_parser::{Parser, Syntax, TsSyntax};
    let syntax = Syntax::Typescript(TsSyntax { dts: true, ..Default::default() });
    let mut parser =
        Parser::new(syntax, StringInput::new(text, BytePos(1), BytePos(1 + text.len() as u32)), None);
    parser.parse_module().is_ok() && parser.take_errors().is_empty()
}

/// The generated declarations, checked by the real TypeScript compiler in strict mode, together
/// with a program that uses them (and `@ts-expect-error` lines proving the types are not `any`).
#[test]
fn tsc_strict_compiles_every_golden() {
    let mut tsc = node_tool("tsc");
    let mut files: Vec<PathBuf> = cases().into_iter().map(|(_, d)| d).collect();
    // And 300 namespaces made from random schemas (see `Rng`), which must compile as well.
    let random = std::env::temp_dir().join(format!("codemode-random-{}.d.ts", std::process::id()));
    std::fs::write(&random, random_namespaces(300)).unwrap();
    files.push(random.clone());
    files.push(fixtures().join("demo.d.ts"));
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("js/codemode.d.ts"));
    files.push(fixtures().join("usage.ts"));
    let output = tsc
        .args(["--strict", "--noEmit", "--target", "es2022", "--lib", "es2022"])
        .args(&files)
        .output()
        .expect("tsc runs");
    let _ = std::fs::remove_file(&random);
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
    ToolSchema {
        name,
        js_name: name,
        title: None,
        description: "",
        input,
        output: None,
        untyped: None,
        approval: false,
    }
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

/// A small deterministic generator of schema-shaped JSON: real keywords with values of the
/// right and the wrong shape, `$ref`s that resolve, dangle and loop. Not a fuzzer (cargo-fuzz
/// has `fuzz/`), but it runs on every `cargo test`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn schema(&mut self, depth: u32) -> Value {
        if depth > 5 || self.below(5) == 0 {
            return match self.below(6) {
                0 => json!(true),
                1 => json!(false),
                2 => json!(self.below(100)),
                3 => {
                    json!({"type": self.pick(&["string", "integer", "number", "boolean", "null", "object", "array", "nope"])})
                }
                4 => {
                    json!({"$ref": self.pick(&["#", "#/$defs/a", "#/$defs/b", "#/properties/p0", "#/nowhere", "http://x/y", "#anchor", "#/$defs/a%20b"])})
                }
                _ => json!({}),
            };
        }
        let mut m = serde_json::Map::new();
        for _ in 0..self.below(5) + 1 {
            let key = self.pick(&[
                "type",
                "properties",
                "required",
                "additionalProperties",
                "patternProperties",
                "items",
                "prefixItems",
                "enum",
                "const",
                "anyOf",
                "oneOf",
                "allOf",
                "not",
                "if",
                "then",
                "else",
                "$ref",
                "$defs",
                "nullable",
                "description",
                "minimum",
                "default",
                "$anchor",
            ]);
            let value = match key {
                "type" => {
                    if self.below(3) == 0 {
                        json!(["string", "null"])
                    } else {
                        json!(self.pick(&["string", "object", "array", "integer"]))
                    }
                }
                "properties" | "patternProperties" | "$defs" => {
                    let mut p = serde_json::Map::new();
                    for i in 0..self.below(4) {
                        let name = self.pick(&["p0", "a", "b", "x-y", "class", "*/", "a b", ""]);
                        p.insert(
                            format!("{name}{}", if i > 0 { i.to_string() } else { String::new() }),
                            self.schema(depth + 1),
                        );
                    }
                    if self.below(8) == 0 {
                        json!([1])
                    } else {
                        Value::Object(p)
                    }
                }
                "required" => json!(["p0", "a", "zz"]),
                "enum" => json!(["a", 1, null, true, {"k": [1]}]),
                "const" => json!("c\"*/\n"),
                "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                    let n = self.below(4);
                    Value::Array((0..n).map(|_| self.schema(depth + 1)).collect())
                }
                "$ref" => {
                    json!(self.pick(&["#", "#/$defs/a", "#/$defs/b", "#/properties/p0", "#/x", "other.json"]))
                }
                "nullable" => json!(true),
                "description" => json!("text with */ and\nnewlines"),
                "minimum" => json!(0),
                "default" => json!({"d": 1}),
                "$anchor" => json!("anchor"),
                _ => self.schema(depth + 1),
            };
            m.insert(key.into(), value);
        }
        Value::Object(m)
    }
}

#[test]
fn random_schemas_never_panic_and_always_parse() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..1_500 {
        let (input, output) = (rng.schema(0), rng.schema(0));
        let tools = random_tools(&input, &output);
        let a = typegen::declarations("ns", "random", &tools).render();
        let b = typegen::declarations("ns", "random", &tools).render();
        assert_eq!(a, b, "case {case}: not deterministic");
        assert!(parses_as_dts(&a), "case {case} does not parse:\n{a}\ninput: {input}\noutput: {output}");
    }
}

/// Two tools over a pair of random schemas: one with both, with a name that needs mapping and a
/// title that would end a comment; one that takes the output schema as its input.
fn random_tools<'a>(input: &'a Value, output: &'a Value) -> [ToolSchema<'a>; 2] {
    [
        ToolSchema {
            name: "t-1",
            js_name: "t1",
            title: Some("T */"),
            description: "d",
            input,
            output: Some(output),
            untyped: None,
            approval: false,
        },
        schema("t2", output),
    ]
}

fn random_namespaces(n: usize) -> String {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = String::new();
    for i in 0..n {
        let input = rng.schema(0);
        let output = rng.schema(0);
        let tools = random_tools(&input, &output);
        out.push_str(&typegen::declarations(&format!("random{i}"), "", &tools).render());
    }
    out
}

fn one_tool(schema: Value) -> Vec<definitions::ToolDefinition> {
    definitions::parse(&json!({"name": "t", "inputSchema": schema}).to_string()).unwrap()
}

fn ref_chain(n: usize) -> Value {
    let mut defs = serde_json::Map::new();
    for i in 0..n {
        defs.insert(format!("d{i}"), json!({"$ref": format!("#/$defs/d{}", i + 1)}));
    }
    defs.insert(format!("d{n}"), json!({"type": "string"}));
    json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs})
}

#[test]
fn huge_enums_ref_chains_and_all_ofs_generate_in_linear_time() {
    // Each of these took from 16 s to over 120 s before (timings in BENCHMARKS.md).
    let text = definitions::declarations(
        "ns",
        "",
        &one_tool(json!({"type": "object", "properties": {
        "x": {"enum": (0..1_000_000).map(|i| format!("v{i}")).collect::<Vec<_>>()}}})),
    )
    .render();
    assert!(text.contains("x?: \"v0\" | \"v1\" |") && text.contains("| \"v999999\";"), "{}", &text[..200]);
    let text = definitions::declarations("ns", "", &one_tool(ref_chain(100_000))).render();
    assert!(
        text.contains("type D99999 = D100000;") || text.contains("D100000"),
        "{}",
        &text[text.len() - 300..]
    );
    let all_of = json!({"type": "object", "properties": {"x": {"allOf": (0..100_000)
        .map(|i| json!({"type": "object", "properties": {format!("p{i}"): {"type": "string"}}}))
        .collect::<Vec<_>>()}}});
    let text = definitions::declarations("ns", "", &one_tool(all_of)).render();
    assert!(text.contains("p99999?: string"), "{}", &text[text.len() - 300..]);
}

#[test]
fn a_schema_past_the_caps_is_refused_at_registration_naming_where() {
    let mut registry = codemode::Registry::new();
    let tool = |schema| {
        codemode::Tool::from_definition(one_tool(schema).remove(0), |_: Value| async {
            Ok::<_, codemode::ToolError>(Value::Null)
        })
    };
    let e = registry.register("ns", tool(ref_chain(20_000))).unwrap_err();
    let message = e.to_string();
    assert!(
        message.starts_with(
            "invalid input schema for tool ns.t: the schema holds more than 10000 `$ref`s (passed at /"
        ),
        "{message}"
    );
    // A 1,000,000-value enum is within the caps and registers.
    let big = json!({"type": "object", "properties": {"x": {"enum": (0..1_000_000).collect::<Vec<_>>()}}});
    registry.register("ns", tool(big)).unwrap();
    let huge = json!({"type": "object", "properties": {"x": {"enum": (0..2_000_001).collect::<Vec<_>>()}}});
    let e = registry.register("other", tool(huge)).unwrap_err().to_string();
    assert!(e.contains("the schema holds more than 2000000 values (passed at /properties/x/enum)"), "{e}");
    assert_eq!((codemode::MAX_SCHEMA_REFS, codemode::MAX_SCHEMA_VALUES), (10_000, 2_000_000));
}
