//! Saved programs ("skills"): a program that worked, kept under a name with a typed signature
//! and called from later programs as `await skills.name(input)`.
//!
//! A skill is a plain `.ts` file: a program body that reads its argument as `input` and
//! `return`s its result. Its types are the body's top-level `interface`/`type` declarations
//! (`interface Input`, `type Output` and whatever they use) or, failing those, a leading JSDoc
//! comment's `@param {T} input` and `@returns {T}`; the leading comment's text is its
//! description. Without either, the input is `void` and the output `unknown`.
//!
//! A [`Registry`](crate::Registry) holds skills ([`Registry::add_skill`](crate::Registry::add_skill))
//! in the namespace `skills`, listed, searched and described like tools, and declared for the
//! type checker as `function name(input: name.Input): Promise<name.Output>` with the file's
//! types in a namespace `name`. A skill runs inside the calling program's sandbox — its limits,
//! its bridge, its approvals and privacy — compiled the first time the program calls it: it is
//! a function of that program, not a nested execution. [`SkillStore`] keeps skills as files in
//! a directory (the CLI's and the daemon's `<state>/skills`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Diagnostic, ErrorKind, ExecError};
use crate::transpile;
use crate::typegen::{self, ToolDeclaration};

/// The namespace programs call skills in.
pub const NAMESPACE: &str = "skills";

/// The longest name a skill may have.
pub const MAX_NAME_CHARS: usize = 64;

/// The largest skill source, in bytes.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// One saved program, parsed and compiled. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Skill {
    name: String,
    source: Arc<str>,
    description: String,
    /// Its type declarations as `(name, text)`, `Input` and `Output` among them.
    types: Arc<[(String, String)]>,
    /// A script whose value is the skill as an async function of `input`.
    pub(crate) js: Arc<str>,
}

/// Why a skill could not be saved, read or used.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SkillError {
    /// Not a name a program can call: letters, digits and `_`, not starting with a digit, not a
    /// reserved word, at most [`MAX_NAME_CHARS`].
    #[error(
        "invalid skill name {0:?}: use letters, digits and `_` (not first), at most 64, not a reserved word"
    )]
    InvalidName(String),
    /// The source is larger than [`MAX_SOURCE_BYTES`].
    #[error("skill {name}: {bytes} bytes is more than the {MAX_SOURCE_BYTES}-byte limit")]
    TooLarge {
        /// The skill.
        name: String,
        /// Its size.
        bytes: u64,
    },
    /// The source does not parse (or uses syntax that needs a transform).
    #[error("skill {name}: {}", .error.headline())]
    Syntax {
        /// The skill.
        name: String,
        /// Where and what, at the skill's own line and column.
        error: ExecError,
    },
    /// The source does not type-check against today's tools (and other skills).
    #[error("skill {name} does not type-check: {}", first_diagnostic(.diagnostics))]
    TypeErrors {
        /// The skill.
        name: String,
        /// Every error the compiler found, at the skill's own positions.
        diagnostics: Vec<Diagnostic>,
    },
    /// The checker could not check it (it timed out or failed), so `strict` mode refuses it.
    #[error("skill {name} could not be type-checked: {message}")]
    Unchecked {
        /// The skill.
        name: String,
        /// What the checker said.
        message: String,
    },
    /// There is no skill of this name.
    #[error("no skill named {0:?}")]
    NotFound(String),
    /// The store's directory or file could not be read or written.
    #[error("{}: {message}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

fn first_diagnostic(diagnostics: &[Diagnostic]) -> String {
    let Some(d) = diagnostics.first() else { return "no diagnostics".into() };
    let more = match diagnostics.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    format!("line {}, column {}: TS{} {}{more}", d.line, d.column, d.code, d.message)
}

/// Checks that `name` can name a skill.
pub fn check_name(name: &str) -> Result<(), SkillError> {
    let plain = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && typegen::js_name(name).as_deref() == Some(name);
    if plain {
        Ok(())
    } else {
        Err(SkillError::InvalidName(name.to_string()))
    }
}

impl Skill {
    /// Parses and compiles a skill. Fails on an invalid name, a source over the size limit, or
    /// a syntax error (at the source's own line and column).
    pub fn parse(name: &str, source: &str) -> Result<Skill, SkillError> {
        check_name(name)?;
        if source.len() > MAX_SOURCE_BYTES {
            return Err(SkillError::TooLarge { name: name.into(), bytes: source.len() as u64 });
        }
        let source = transpile::without_bom(source);
        let syntax = |error| SkillError::Syntax { name: name.into(), error };
        let js = transpile::transpile_skill(source).map_err(syntax)?;
        let mut types = transpile::type_declarations(source).ok_or_else(|| {
            syntax(ExecError::new(ErrorKind::Syntax, "the skill's declarations do not parse"))
        })?;
        let header = Header::read(source);
        for (name, tag, default) in [("Input", &header.input, "void"), ("Output", &header.output, "unknown")]
        {
            if !types.iter().any(|(n, _)| n == name) {
                let ty = tag.as_deref().unwrap_or(default);
                types.push((name.to_string(), format!("type {name} = {ty};")));
            }
        }
        Ok(Skill {
            name: name.into(),
            source: source.into(),
            description: header.description,
            types: types.into(),
            js: js.into(),
        })
    }

    /// The name programs call it by (`skills.<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source as saved.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The leading comment's text, without its tags.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// `name(input: name.Input): Promise<name.Output>`.
    pub fn signature(&self) -> String {
        let n = &self.name;
        format!("{n}(input: {n}.Input): Promise<{n}.Output>")
    }

    /// Its declaration in the `skills` namespace block.
    pub(crate) fn declaration(&self) -> ToolDeclaration {
        let n = &self.name;
        let mut doc = self.description.clone();
        if !doc.is_empty() {
            doc.push_str("\n\n");
        }
        doc.push_str(&format!(
            "A saved program (skills/{n}.ts); it runs inside the calling program, with its limits."
        ));
        let mut text = typegen::jsdoc(&doc, 1);
        text.push_str(&format!("  function {};\n  namespace {n} {{\n", self.signature()));
        for (_, declaration) in self.types.iter() {
            for line in declaration.lines() {
                text.push_str("    ");
                text.push_str(line.trim_end());
                text.push('\n');
            }
        }
        text.push_str("  }\n");
        ToolDeclaration {
            name: n.clone(),
            js_name: n.clone(),
            input_type: format!("{n}.Input"),
            output_type: format!("{n}.Output"),
            signature: self.signature(),
            summary: typegen::first_sentence(&self.description),
            text,
        }
    }

    /// The skill as a function expression the type checker reads against declarations that
    /// include it, and how many characters precede its source on the first line.
    pub(crate) fn check_source(&self) -> (String, usize) {
        let n = &self.name;
        let prefix = format!("async (input: skills.{n}.Input): Promise<skills.{n}.Output> => {{");
        (format!("{prefix}{}\n}}", self.source), prefix.chars().count())
    }
}

/// What a skill's leading comment says.
#[derive(Default)]
struct Header {
    description: String,
    input: Option<String>,
    output: Option<String>,
}

impl Header {
    /// Reads the comment the source starts with: a `/** … */` block or a run of `//` lines.
    fn read(source: &str) -> Header {
        let text = source.trim_start();
        let lines: Vec<String> = if let Some(rest) = text.strip_prefix("/*") {
            let body = rest.split_once("*/").map_or(rest, |(body, _)| body);
            body.lines()
                .map(|l| {
                    let l = l.trim();
                    let l = l.strip_prefix('*').unwrap_or(l);
                    l.strip_prefix(' ').unwrap_or(l).trim_end().to_string()
                })
                .collect()
        } else {
            text.lines()
                .map_while(|l| l.trim().strip_prefix("//"))
                .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string())
                .collect()
        };
        let mut header = Header::default();
        let mut description = Vec::new();
        for line in lines {
            if let Some(tag) = line.strip_prefix('@') {
                let (name, rest) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
                let ty = braced(rest.trim_start());
                match name {
                    "param"
                        if ty.as_ref().is_some_and(|(_, after)| after.trim_start().starts_with("input")) =>
                    {
                        header.input = ty.map(|(t, _)| t);
                    }
                    "returns" | "return" => header.output = ty.map(|(t, _)| t),
                    _ => {}
                }
                continue;
            }
            description.push(line);
        }
        header.description = description.join("\n").trim().to_string();
        header
    }
}

/// `{T} rest` → `(T, rest)`, braces balanced.
fn braced(text: &str) -> Option<(String, &str)> {
    let rest = text.strip_prefix('{')?;
    let mut depth = 1;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let ty = rest[..i].trim();
                    return (!ty.is_empty()).then(|| (ty.to_string(), &rest[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Skills kept as `<dir>/<name>.ts`, one plain file each. Writes are atomic (a temporary file
/// renamed over the old one), and only `.ts` files with a skill's name are ever written or
/// removed.
#[derive(Debug, Clone)]
pub struct SkillStore {
    dir: PathBuf,
}

/// One file of a [`SkillStore`], parsed or not.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The name the file gives (its stem).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The skill, or why it could not be read.
    pub skill: Result<Skill, SkillError>,
}

impl SkillStore {
    /// A store in `dir`, which is created on the first save.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SkillStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the skill `name`.
    pub fn path(&self, name: &str) -> Result<PathBuf, SkillError> {
        check_name(name)?;
        Ok(self.dir.join(format!("{name}.ts")))
    }

    /// Every `.ts` file of the directory, by name; none when it does not exist. A file that is
    /// not a valid skill is listed with its error, never skipped.
    pub fn load(&self) -> Result<Vec<Stored>, SkillError> {
        let mut out: Vec<Stored> = self
            .files()?
            .into_iter()
            .map(|(name, path)| {
                let skill = check_name(&name).and_then(|()| read_skill(&name, &path));
                Stored { name, path, skill }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// True when the directory holds no `.ts` file (or does not exist): nothing to load.
    pub fn is_empty(&self) -> bool {
        self.files().map_or(true, |files| files.is_empty())
    }

    /// The `.ts` files of the directory as `(stem, path)`, leaving out hidden (temporary) ones.
    fn files(&self) -> Result<Vec<(String, PathBuf)>, SkillError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.dir, &e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.dir, &e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".ts")) else { continue };
            if !name.starts_with('.') {
                out.push((name.to_string(), entry.path()));
            }
        }
        Ok(out)
    }

    /// The skill `name`.
    pub fn get(&self, name: &str) -> Result<Skill, SkillError> {
        read_skill(name, &self.path(name)?)
    }

    /// Writes `skill`, replacing its earlier version; true when there was one.
    pub fn save(&self, skill: &Skill) -> Result<bool, SkillError> {
        let path = self.path(skill.name())?;
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error(&self.dir, &e))?;
        let replaced = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => true,
            Ok(_) => {
                return Err(SkillError::Io { path, message: "exists and is not a regular file".into() });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error(&path, &e)),
        };
        // Unique per save, so two saves of one name at once never write the same temporary file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = self.dir.join(format!(".{}.ts.{}.{n}.tmp", skill.name(), std::process::id()));
        let written =
            std::fs::write(&temp, skill.source().as_bytes()).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(&path, &e));
        }
        Ok(replaced)
    }

    /// Removes the skill `name`; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, SkillError> {
        let path = self.path(name)?;
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                std::fs::remove_file(&path).map_err(|e| io_error(&path, &e))?;
                Ok(true)
            }
            Ok(_) => Err(SkillError::Io { path, message: "exists and is not a regular file".into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path, &e)),
        }
    }
}

fn read_skill(name: &str, path: &Path) -> Result<Skill, SkillError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SkillError::NotFound(name.into())),
        Err(e) => return Err(io_error(path, &e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| io_error(path, &e))?;
    if bytes.len() > MAX_SOURCE_BYTES {
        let bytes = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(SkillError::TooLarge { name: name.into(), bytes });
    }
    let source = String::from_utf8(bytes)
        .map_err(|e| SkillError::Io { path: path.into(), message: format!("not UTF-8: {e}") })?;
    Skill::parse(name, &source)
}

fn io_error(path: &Path, e: &std::io::Error) -> SkillError {
    SkillError::Io { path: path.into(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_body_or_the_leading_comment() {
        let skill = Skill::parse(
            "rowCount",
            "/**\n * Counts a sheet's rows.\n * @param {{ sheet: string }} input\n */\ninterface Row { id: number }\ntype Output = { count: number; first?: Row };\nreturn { count: 1 };\n",
        )
        .unwrap();
        assert_eq!(skill.description(), "Counts a sheet's rows.");
        let names: Vec<&str> = skill.types.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Row", "Output", "Input"]);
        assert_eq!(skill.types[2].1, "type Input = { sheet: string };");
        assert_eq!(
            skill.declaration().text,
            "  /**\n   * Counts a sheet's rows.\n   *\n   * A saved program (skills/rowCount.ts); it runs inside the calling program, with its limits.\n   */\n  function rowCount(input: rowCount.Input): Promise<rowCount.Output>;\n  namespace rowCount {\n    interface Row { id: number }\n    type Output = { count: number; first?: Row };\n    type Input = { sheet: string };\n  }\n"
        );
        let plain = Skill::parse("noTypes", "// Says hello.\nreturn 'hello';").unwrap();
        assert_eq!(plain.description(), "Says hello.");
        assert_eq!(
            plain.types.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
            ["type Input = void;", "type Output = unknown;"]
        );
    }

    #[test]
    fn names_and_syntax_are_checked() {
        for bad in ["", "9lives", "has-dash", "delete", "naïve", &"x".repeat(65)] {
            assert_eq!(
                Skill::parse(bad, "return 1").unwrap_err(),
                SkillError::InvalidName(bad.into()),
                "{bad}"
            );
        }
        let SkillError::Syntax { error, .. } =
            Skill::parse("broken", "const a = 1;\nreturn (a;").unwrap_err()
        else {
            panic!("a syntax error")
        };
        assert_eq!((error.kind, error.line), (ErrorKind::Syntax, Some(2)));
    }
}
