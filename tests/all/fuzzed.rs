//! The fuzz targets' checks (`codemode::__fuzz`) on stable, inside the test run: every file in
//! `fuzz/regressions/<target>/` (seeds, and each crash a fuzz run found, kept there once fixed),
//! then a bounded number of inputs mutated from them with a fixed seed.

use std::path::Path;

use codemode::__fuzz;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let kept: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!kept.is_empty(), "{} has no inputs", dir.display());
    // Mutations as libFuzzer makes them: flip, insert, delete, splice bytes.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let mut out = kept.clone();
    for _ in 0..150 {
        let mut m = kept[next(kept.len())].clone();
        for _ in 0..1 + next(4) {
            let at = next(m.len() + 1);
            match next(4) {
                0 if at < m.len() => m[at] ^= 1 << next(8),
                1 => {
                    let bytes = b"{}[]\",:\n0-e.\\u'`;()=>awit";
                    m.insert(at, bytes[next(bytes.len())]);
                }
                2 if at < m.len() => drop(m.remove(at)),
                _ => {
                    let other = &kept[next(kept.len())];
                    let from = next(other.len());
                    let len = next(other.len() - from + 1);
                    m.splice(at..at, other[from..from + len].iter().copied());
                }
            }
        }
        out.push(m);
    }
    out
}

#[test]
fn programs_never_fail_internally() {
    for input in inputs("program") {
        if let Ok(text) = std::str::from_utf8(&input) {
            __fuzz::program(text);
        }
    }
}

#[test]
fn json_values_survive_the_sandbox_and_a_tool() {
    for input in inputs("value") {
        if let Ok(text) = std::str::from_utf8(&input) {
            __fuzz::value(text);
        }
    }
}

#[test]
fn the_daemon_answers_any_bytes_with_json_rpc() {
    for input in inputs("rpc") {
        __fuzz::rpc(&input);
    }
}
