//! `codemode setup`: installs, pinned and with npm, the TypeScript compiler for the type check
//! or Node.js for the V8 engine.

use super::*;

/// Installs what `what` names with `npm ci` into a directory of its own.
pub(crate) fn setup(what: SetupTarget, dir: Option<PathBuf>) -> ExitCode {
    let (default_dir, env_name, name) = match what {
        SetupTarget::Typescript => (typescript_dir(), "CODEMODE_TYPESCRIPT_DIR", "TypeScript"),
        SetupTarget::V8 => (load::v8_dir(), "CODEMODE_V8_DIR", "Node.js"),
    };
    let Some(dir) = dir.or_else(|| default_dir.clone()) else {
        return usage_error("no cache directory: set XDG_CACHE_HOME or HOME, or pass --dir".into());
    };
    let written = match what {
        SetupTarget::Typescript => TypeChecker::write_install_files(&dir),
        SetupTarget::V8 => codemode::TypeChecker::write_package_files(
            &dir,
            "codemode-v8-engine",
            codemode::NODE_PACKAGE_JSON,
            codemode::NODE_PACKAGE_LOCK,
        ),
    };
    if let Err(why) = written {
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
    let (binary, version) = match what {
        SetupTarget::Typescript => (TypeChecker::installed_binary(&dir), codemode::TYPESCRIPT_VERSION),
        SetupTarget::V8 => (codemode::installed_node(&dir), codemode::NODE_VERSION),
    };
    if !binary.is_file() {
        eprintln!(
            "codemode: npm installed {name}, but {} is missing (no binary for this platform?)",
            binary.display()
        );
        return ExitCode::FAILURE;
    }
    outln!("{name} {version} installed: {}", binary.display());
    if std::env::var_os(env_name).is_none() && Some(&dir) != default_dir.as_ref() {
        outln!("set {env_name}={} for codemode to use it", dir.display());
    }
    ExitCode::SUCCESS
}
