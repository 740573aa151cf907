//! Private data stays out of what reaches the model: values of the chosen kinds are tokens in
//! results, logs and errors, consistent within a session, and a token a later program of the
//! session passes to a tool reaches the tool as the real value.

use codemode::{Engine, ExecuteOptions, Privacy};
use serde_json::json;

fn engine() -> Engine {
    let privacy = Privacy::new(["email", "phone"], []).unwrap();
    let mut registry = codemode::demo::registry();
    codemode::demo::register_crm(&mut registry).unwrap();
    crate::harness::builder().registry(registry).privacy(privacy).workers(2).build().unwrap()
}

#[tokio::test]
async fn tokens_out_real_values_in_within_one_session() {
    let engine = engine();
    let s = engine.session("crm");
    let listed = s
        .execute(
            "const contacts = await crm.listContacts();\n\
             console.log('first', contacts[0].email, contacts[0].phone);\n\
             return contacts.slice(0, 2);",
            ExecuteOptions::default(),
        )
        .await;
    assert!(listed.is_ok(), "{:?}", listed.error);
    assert_eq!(
        listed.value,
        json!([
            {"id": 1, "name": "Contact 1", "email": "[EMAIL_1]", "phone": "[PHONE_1]"},
            {"id": 2, "name": "Contact 2", "email": "[EMAIL_2]", "phone": "[PHONE_2]"}
        ])
    );
    assert_eq!(listed.logs[0].message, "first [EMAIL_1] [PHONE_1]");
    assert_eq!(listed.stats.tokenized, [("email".to_string(), 3), ("phone".to_string(), 3)].into());
    let report = listed.to_report().to_string();
    assert!(!report.contains("example.com") && !report.contains("555-"), "{report}");

    // A later program passes a token: the tool gets the address; the answer is tokenized again.
    let sent = s
        .execute(
            "const r = await crm.sendEmail({ to: '[EMAIL_2]', subject: 'Renewal' });\n\
             const inside = (await crm.sentEmails())[0].to;\n\
             if (inside !== 'contact2@example.com') throw new Error('the tool saw ' + inside);\n\
             return r;",
            ExecuteOptions::default(),
        )
        .await;
    assert!(sent.is_ok(), "{:?}", sent.error);
    assert_eq!(sent.value, json!({"sent": true, "to": "[EMAIL_2]"}));
    // An error message is tokenized too.
    let failed = s
        .execute("throw new Error('could not reach contact7@example.com');", ExecuteOptions::default())
        .await;
    assert_eq!(failed.error.unwrap().message, "could not reach [EMAIL_3]");

    // Another session's token does not resolve here: the tool gets the text as it is.
    let other = engine
        .session("other")
        .execute(
            "await crm.sendEmail({ to: '[EMAIL_1]', subject: 'x' });\n\
             return (await crm.sentEmails()).map(e => e.to === 'contact2@example.com' ? 'real' : e.to);",
            ExecuteOptions::default(),
        )
        .await;
    assert_eq!(other.value, json!(["real", "[EMAIL_1]"]));
}

#[test]
fn privacy_is_configured_and_checked_with_the_file() {
    let c = codemode::config::Config::parse(
        std::path::Path::new("codemode.toml"),
        "[privacy]\ntokenize = [\"email\"]\npatterns = { EMPLOYEE = \"E\\\\d{6}\" }\n",
    )
    .unwrap();
    assert!(!c.privacy().is_off());
    let e = codemode::config::Config::parse(
        std::path::Path::new("codemode.toml"),
        "[privacy]\ntokenize = [\"mail\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("codemode.toml:1:1: [privacy]: unknown kind \"mail\" to tokenize"), "{e}");
}

#[tokio::test]
async fn the_prompt_says_what_is_tokenized() {
    let text = engine().prompt(true);
    assert!(
        text.contains(
            "- Private values (email, phone) come back to you as tokens such as `[EMAIL_1]`. Inside programs \
             they are real; a token you pass to a tool in a later program reaches the tool as the real value.\n\
             \nNamespaces:\n"
        ),
        "{text}"
    );
}

/// Runs `codemode ARGS` (with `--demo` and a configuration tokenizing emails and phones) through
/// `lines`; returns everything it wrote.
fn face(args: &[&str], lines: &[serde_json::Value]) -> String {
    let dir = std::env::temp_dir().join(format!("codemode-privacy-{}-{}", args[0], std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("codemode.toml");
    std::fs::write(&config, "[privacy]\ntokenize = [\"email\", \"phone\"]\n").unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_codemode"));
    command.args(args).args(["--demo", "--config"]).arg(&config);
    let out = crate::harness::converse(command, lines);
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// The round trip of the issue: a result with tokens only, a later program's token reaching
/// `crm.sendEmail` as the real address, and no real address in anything the face wrote.
const FIRST: &str = "const c = (await crm.listContacts())[0]; console.log('to', c.email); return c;";
const SECOND: &str = "const r = await crm.sendEmail({ to: '[EMAIL_1]', subject: 'Hi' });\n\
    const sent = await crm.sentEmails();\n\
    return { r, real: sent[0].to === 'contact1@example.com' };";

fn results(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|m| m.get("id").is_some_and(|id| id != &json!(0)))
        .collect()
}

#[test]
fn the_daemon_keeps_private_values_out_and_resolves_its_tokens() {
    let execute = |id: u64, code: &str| json!({"jsonrpc": "2.0", "id": id, "method": "code/execute", "params": {"code": code, "session": "s"}});
    let out = face(&["serve", "--stdio"], &[execute(1, FIRST), execute(2, SECOND)]);
    assert!(!out.contains("example.com") && !out.contains("555-"), "{out}");
    let results = results(&out);
    let first = &results[0]["result"];
    assert_eq!(
        first["value"],
        json!({"id": 1, "name": "Contact 1", "email": "[EMAIL_1]", "phone": "[PHONE_1]"}),
        "{out}"
    );
    assert_eq!(first["logs"][0]["message"], json!("to [EMAIL_1]"));
    assert_eq!(first["stats"]["tokenized"], json!({"email": 2, "phone": 1}));
    assert_eq!(
        results[1]["result"]["value"],
        json!({"r": {"sent": true, "to": "[EMAIL_1]"}, "real": true}),
        "{out}"
    );
}

#[test]
fn codemode_mcp_keeps_private_values_out_and_resolves_its_tokens() {
    let call = |id: u64, code: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "execute_code", "arguments": {"code": code}}});
    let hello = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
        "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let out = face(&["mcp"], &[hello, initialized, call(1, FIRST), call(2, SECOND)]);
    assert!(!out.contains("example.com") && !out.contains("555-"), "{out}");
    let results = results(&out);
    let first = &results[0]["result"];
    assert_eq!(first["structuredContent"]["value"]["email"], json!("[EMAIL_1]"), "{out}");
    assert_eq!(first["content"][0]["text"].as_str().unwrap().lines().next(), Some("[log] to [EMAIL_1]"));
    assert_eq!(results[1]["result"]["structuredContent"]["value"]["real"], json!(true), "{out}");
}
