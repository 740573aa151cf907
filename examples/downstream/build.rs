fn main() {
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut builder = codemode::build::Builder::new(out_dir).namespace(
        "weather",
        "Forecasts and alerts for cities.",
        "schemas/weather.json",
    );
    // The generator's test fixtures too, so that CI compiles the Rust it makes for every hard
    // case and every real MCP server (the broken fixture is rejected by design).
    for (namespace, file) in FIXTURES {
        builder = builder.namespace(namespace, "", format!("../../tests/fixtures/typegen/{file}"));
    }
    let generated = builder.compile().unwrap_or_else(|e| panic!("{e}"));
    for input in &generated.inputs {
        println!("cargo::rerun-if-changed={}", input.display());
    }
}

const FIXTURES: [(&str, &str); 9] = [
    ("objects", "hard/objects.json"),
    ("arrays", "hard/arrays.json"),
    ("literals", "hard/literals.json"),
    ("composition", "hard/composition.json"),
    ("refs", "hard/refs.json"),
    ("everything", "real/everything.json"),
    ("filesystem", "real/filesystem.json"),
    ("memory", "real/memory.json"),
    ("github", "real/github.json"),
];
