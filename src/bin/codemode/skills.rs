//! `codemode skills …`: save a program that worked under a name, list, show and remove saved
//! programs. They live in `<state dir>/skills/NAME.ts`.

use codemode::{Skill, SkillError};

use super::run::print_diagnostics;
use super::tools::print_json;
use super::*;

pub(crate) fn skills(command: SkillsCommand) -> ExitCode {
    let (SkillsCommand::Save { sources, .. }
    | SkillsCommand::List { sources, .. }
    | SkillsCommand::Show { sources, .. }
    | SkillsCommand::Remove { sources, .. }) = &command;
    let loaded = match load(sources, false) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some(store) = load::skill_store(&loaded.config) else {
        eprintln!("codemode: no state directory for skills: set [state] dir in codemode.toml, or HOME");
        return ExitCode::FAILURE;
    };
    match command {
        SkillsCommand::Save { name, file, .. } => {
            let source = match read_source(&file) {
                Ok(source) => source,
                Err(exit) => return exit,
            };
            let skill = match Skill::parse(&name, &source) {
                Ok(skill) => skill,
                Err(e) => return failed(&e),
            };
            // The saved skills first: the new one may call them.
            let engine = match load::start_with_skills(&loaded, |b| b.workers(1).warm_sandboxes(0)) {
                Ok((engine, _)) => engine,
                Err(code) => return code,
            };
            let warnings = match loaded.runtime.block_on(engine.add_skill(skill.clone())) {
                Ok(diagnostics) => diagnostics,
                Err(e) => return failed(&e),
            };
            let replaced = match store.save(&skill) {
                Ok(replaced) => replaced,
                Err(e) => return failed(&e),
            };
            let verb = if replaced { "updated" } else { "saved" };
            outln!("{verb} skills.{} in {}", skill.signature(), store.dir().display());
            if !warnings.is_empty() {
                outln!("[warn] it has type errors:");
                print_diagnostics(&warnings);
            }
            if loaded.typecheck.unwrap_or(loaded.config.limits().typecheck) != TypeCheck::Off
                && !load::typescript_installed()
            {
                outln!("[warn] not type-checked: TypeScript is not installed (`codemode setup` installs it)");
            }
            ExitCode::SUCCESS
        }
        SkillsCommand::List { json, .. } => {
            let stored = match store.load() {
                Ok(stored) => stored,
                Err(e) => return failed(&e),
            };
            let problems = match load::start_with_skills(&loaded, |b| b.workers(1).warm_sandboxes(0)) {
                Ok((_, problems)) => problems,
                Err(code) => return code,
            };
            let checked = loaded.typecheck.unwrap_or(loaded.config.limits().typecheck) != TypeCheck::Off
                && load::typescript_installed();
            let rows: Vec<serde_json::Value> = stored
                .iter()
                .map(|s| {
                    let problem = problems.iter().find(|(name, _)| *name == s.name).map(|(_, e)| e);
                    let status = match problem {
                        None if checked => "ok",
                        None => "unchecked",
                        Some(SkillError::TypeErrors { .. } | SkillError::Unchecked { .. }) => "stale",
                        Some(_) => "invalid",
                    };
                    serde_json::json!({
                        "name": s.name,
                        "status": status,
                        "signature": s.skill.as_ref().ok().map(Skill::signature),
                        "summary": s.skill.as_ref().ok().map(|k| codemode::typegen::first_sentence(k.description())),
                        "problem": problem.map(ToString::to_string),
                        "path": s.path,
                    })
                })
                .collect();
            if json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                outln!("no skills in {} (`codemode skills save NAME FILE` saves one)", store.dir().display());
            }
            for row in &rows {
                let text = |key: &str| row[key].as_str().unwrap_or("").to_string();
                match text("status").as_str() {
                    "ok" => outln!("skills.{} — {}", text("signature"), text("summary")),
                    "unchecked" => outln!("skills.{} [unchecked] — {}", text("signature"), text("summary")),
                    status => outln!("skills.{} [{status}] {}", text("name"), text("problem")),
                }
            }
            ExitCode::SUCCESS
        }
        SkillsCommand::Show { name, json, .. } => {
            let skill = match store.get(&name) {
                Ok(skill) => skill,
                Err(e) => return failed(&e),
            };
            let mut registry = Registry::new();
            registry.add_skill(skill.clone());
            let declarations = registry.describe(&[format!("skills.{name}")]).unwrap_or_default();
            if json {
                return print_json(&serde_json::json!({
                    "name": skill.name(),
                    "signature": skill.signature(),
                    "description": skill.description(),
                    "declarations": declarations,
                    "source": skill.source(),
                }));
            }
            out!(
                "{declarations}\n// {}\n{}",
                store.path(&name).unwrap_or_default().display(),
                skill.source()
            );
            ExitCode::SUCCESS
        }
        SkillsCommand::Remove { name, .. } => match store.remove(&name) {
            Ok(true) => {
                outln!("removed skills.{name}");
                ExitCode::SUCCESS
            }
            Ok(false) => failed(&SkillError::NotFound(name)),
            Err(e) => failed(&e),
        },
    }
}

/// Says why, with the diagnostics of a skill that does not type-check, and fails.
fn failed(e: &SkillError) -> ExitCode {
    eprintln!("codemode: {e}");
    if let SkillError::TypeErrors { diagnostics, .. } = e {
        outln!("error[type_error]: the skill was not saved");
        print_diagnostics(diagnostics);
    }
    ExitCode::FAILURE
}
