//! Private data stays out of what reaches the model: values of the chosen kinds are tokens in
//! results, logs and errors, consistent within a session, and a token a later program of the
//! session passes to a tool reaches the tool as the real value.

use codemode::{Engine, ExecuteOptions, Privacy};
use serde_json::json;

fn engine() -> Engine {
    let privacy = Privacy::new(["email", "phone"], []).unwrap();
    let mut registry = codemode::demo::registry();
    codemode::demo::register_crm(&mut registry).unwrap();
    Engine::builder().registry(registry).privacy(privacy).workers(2).build().unwrap()
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
