//! `codemode setup`: installs the pinned TypeScript compiler for the type check.

use super::*;

/// Installs the pinned TypeScript with `npm ci` into a directory of its own.
pub(crate) fn setup(dir: Option<PathBuf>) -> ExitCode {
    let Some(dir) = dir.or_else(typescript_dir) else {
        return usage_error("no cache directory: set XDG_CACHE_HOME or HOME, or pass --dir".into());
    };
    if let Err(why) = TypeChecker::write_install_files(&dir) {
        return usage_error(format!("{why}; choose another --dir"));
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("codemode: npm ci in {} failed ({s})", dir.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "codemode: cannot run npm ({e}); install Node.js and npm, then run `codemode setup` again"
            );
            return ExitCode::FAILURE;
        }
    }
    let binary = TypeChecker::installed_binary(&dir);
    if !binary.is_file() {
        eprintln!(
            "codemode: npm installed TypeScript, but {} is missing (no native compiler for this platform?)",
            binary.display()
        );
        return ExitCode::FAILURE;
    }
    outln!("TypeScript {} installed: {}", codemode::TYPESCRIPT_VERSION, binary.display());
    if std::env::var_os("CODEMODE_TYPESCRIPT_DIR").is_none() && Some(&dir) != typescript_dir().as_ref() {
        outln!("set CODEMODE_TYPESCRIPT_DIR={} for codemode to use it", dir.display());
    }
    ExitCode::SUCCESS
}
