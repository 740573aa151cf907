//! The Python package (python/): its wheel built with maturin, installed with its extras into
//! a fresh virtual environment, and its pytest suite run against the binary the wheel carries.
//!
//! A test binary of its own, not part of `all`: building the wheel is a release build of
//! codemode with the wheel's (default) features, in the same target directory (only codemode
//! and the few crates whose features differ from the test build's are compiled again), and it
//! puts that binary at target/release/codemode. Cargo runs test binaries one after another,
//! `all` before `python`, so no other test is running the binary then, and the build has both
//! cores to itself instead of slowing the timing-sensitive tests beside it; the next `cargo
//! test` puts its own binary back.

#[path = "all/harness.rs"]
#[allow(dead_code)]
mod harness;

/// The harness's engines (this binary builds none through it).
pub const ISOLATION: codemode::Isolation = codemode::Isolation::Thread;
/// The engine this binary's engines run programs in.
pub const ENGINE: codemode::EngineKind = codemode::EngineKind::QuickJs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with what ran and everything it printed.
fn check(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A new virtual environment at `dir` (whatever was there is replaced), with pip's own
/// output kept out of the test's.
fn venv(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    let made = Command::new("python3").args(["-m", "venv"]).arg(dir).output().unwrap_or_else(|e| {
        panic!("this test needs python3 (with its venv module) on PATH, to build and test python/; {e}")
    });
    check("python3 -m venv", made);
    dir.join("bin/python")
}

fn pip_install(python: &Path, args: &[&str]) {
    let out = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(args)
        .output()
        .unwrap();
    check(&format!("pip install {}", args.join(" ")), out);
}

/// The build environment with maturin, kept while python/build-requirements.txt is unchanged.
fn maturin(work: &Path) -> PathBuf {
    let requirements = root().join("python/build-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    let dir = work.join("build-venv");
    let stamp = dir.join(".requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let python = venv(&dir);
        pip_install(&python, &["-r", requirements.to_str().unwrap()]);
        std::fs::write(&stamp, wanted).unwrap();
    }
    dir.join("bin/maturin")
}

#[test]
fn the_python_package_builds_installs_and_passes_its_tests() {
    let work = root().join("target/python-package");
    std::fs::create_dir_all(&work).unwrap();

    let wheels = work.join("wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    let built = Command::new(maturin(&work))
        .args(["build", "--release", "--out"])
        .arg(&wheels)
        .current_dir(root().join("python"))
        .output()
        .unwrap();
    check("maturin build --release", built);
    let wheel: Vec<PathBuf> = std::fs::read_dir(&wheels).unwrap().map(|e| e.unwrap().path()).collect();
    let [wheel] = wheel.as_slice() else { panic!("maturin built {wheel:?}, not one wheel") };
    let name = wheel.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(&format!("codemode-{}-py3-none-", env!("CARGO_PKG_VERSION"))), "{name}");

    let python = venv(&work.join("venv"));
    let with_extras = format!("{}[openai-agents,pydantic-ai]", wheel.display());
    let tests = root().join("python/tests");
    pip_install(&python, &[&with_extras, "-r", tests.join("requirements.txt").to_str().unwrap()]);

    // tests/npm is laid out as `codemode setup` lays out its directory.
    let typescript = harness::typescript7().ancestors().nth(5).unwrap().to_path_buf();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // The `pytest` script, not `python -m pytest`, which would put python/ (the source) on
    // sys.path ahead of the installed package.
    let ran = Command::new(python.with_file_name("pytest"))
        .args(["-p", "no:cacheprovider", "-q", "-rfEs"])
        .current_dir(root().join("python"))
        .env("CODEMODE_TYPESCRIPT_DIR", typescript)
        .env("XDG_CACHE_HOME", tmp.join("python-cache"))
        .env("XDG_DATA_HOME", tmp.join("python-data"))
        .env_remove("PYTHONPATH")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let report = check("pytest in python/", ran);
    // Every test function ran and passed: none skipped, none missed.
    let defined: usize = std::fs::read_dir(&tests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.matches("\ndef test_").count() + text.matches("\nasync def test_").count()
        })
        .sum();
    let summary = report.lines().rev().find(|l| l.contains(" passed")).unwrap_or_default();
    assert!(
        summary.starts_with(&format!("{defined} passed in ")),
        "{defined} tests defined; pytest said:\n{report}"
    );
}
