//! Private data stays out of the model's context: values of chosen kinds (email addresses,
//! phone numbers, card numbers, IBANs, custom patterns) in what goes back to the model — the
//! result, the logs, error messages — are replaced by stable tokens (`[EMAIL_1]`), and a token a
//! later program of the same session passes to a tool is replaced by the real value before the
//! tool sees it. Inside the sandbox programs see real values.
//!
//! A [`Vault`] holds one session's mapping (or one execution's, outside a session); tokens
//! resolve only in the vault that made them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

/// What to tokenize. Built from kind names (`email`, `phone`, `credit_card`, `iban`) and custom
/// patterns; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Privacy {
    detectors: Arc<Vec<Detector>>,
}

#[derive(Debug)]
struct Detector {
    /// The token's kind, upper case: `EMAIL` makes `[EMAIL_1]`.
    kind: String,
    pattern: Regex,
    check: fn(&str) -> bool,
}

/// The built-in kinds [`Privacy::new`] takes.
pub const PRIVACY_KINDS: &[&str] = &["email", "phone", "credit_card", "iban"];

/// Why a privacy setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PrivacyError(String);

impl Privacy {
    /// Tokenizes the built-in `kinds` (from [`PRIVACY_KINDS`]) and the custom `patterns`
    /// (name → regular expression; the name, upper-cased, is the token's kind).
    pub fn new<'a>(
        kinds: impl IntoIterator<Item = &'a str>,
        patterns: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Privacy, PrivacyError> {
        let mut detectors = Vec::new();
        for kind in kinds {
            let (pattern, check): (&str, fn(&str) -> bool) = match kind {
                "email" => (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", |_| true),
                // International (`+1-555-1042`, `+44 20 7946 0958`) or North American
                // (`(555) 123-4567`, `555-123-4567`): separators required, so plain numbers,
                // dates and ids are left alone.
                "phone" => {
                    (r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){1,5}|\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b", |m| {
                        (7..=15).contains(&digits(m).len())
                    })
                }
                "credit_card" => (r"\b\d(?:[ -]?\d){12,18}\b", |m| luhn(&digits(m))),
                "iban" => (r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", iban_valid),
                other => {
                    return Err(PrivacyError(format!(
                        "unknown kind {other:?} to tokenize; the built-in kinds are {}, and others are \
                         custom patterns",
                        PRIVACY_KINDS.join(", ")
                    )))
                }
            };
            let pattern = Regex::new(pattern).expect("built-in patterns compile");
            detectors.push(Detector { kind: kind.to_ascii_uppercase(), pattern, check });
        }
        for (name, pattern) in patterns {
            let kind: String = name.to_ascii_uppercase();
            if kind.is_empty()
                || !kind.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(PrivacyError(format!(
                    "pattern name {name:?}: use letters, digits and `_` (it names the tokens, as in [{kind}_1])"
                )));
            }
            let pattern = Regex::new(pattern)
                .map_err(|e| PrivacyError(format!("pattern {name:?} does not compile: {e}")))?;
            detectors.push(Detector { kind, pattern, check: |_| true });
        }
        Ok(Privacy { detectors: Arc::new(detectors) })
    }

    /// What the prompt helper tells the agent when something is tokenized.
    pub(crate) fn prompt_line(&self) -> Option<String> {
        let first = self.detectors.first()?;
        let kinds: Vec<String> =
            self.detectors.iter().map(|d| d.kind.to_ascii_lowercase().replace('_', " ")).collect();
        Some(format!(
            "- Private values ({}) come back to you as tokens such as `[{}_1]`. Inside programs they \
             are real; a token you pass to a tool in a later program reaches the tool as the real value.\n",
            kinds.join(", "),
            first.kind
        ))
    }

    /// True when nothing is tokenized.
    pub fn is_off(&self) -> bool {
        self.detectors.is_empty()
    }
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// The Luhn checksum of a card number's digits.
fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, d) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(d - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    (13..=19).contains(&digits.len()) && sum.is_multiple_of(10)
}

/// ISO 13616: the country and check digits moved to the end, letters as numbers, mod 97 is 1.
fn iban_valid(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// One session's tokens (or one execution's, outside a session).
#[derive(Debug, Default)]
pub(crate) struct Vault {
    tokens: HashMap<String, String>,
    values: HashMap<String, String>,
    next: HashMap<String, u64>,
}

/// The token pattern: `[KIND_N]`.
fn token_pattern() -> &'static Regex {
    static TOKEN: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| Regex::new(r"\[[A-Z][A-Z0-9_]*_\d+\]").expect("the token pattern compiles"))
}

impl Vault {
    /// `text` with every value `privacy` detects replaced by its token; counts what was
    /// replaced by kind into `counts`.
    pub(crate) fn tokenize(
        &mut self,
        privacy: &Privacy,
        text: &str,
        counts: &mut BTreeMap<String, u64>,
    ) -> String {
        if privacy.is_off() {
            return text.to_string();
        }
        // Earliest match first; at one place, the detector listed first.
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for (n, detector) in privacy.detectors.iter().enumerate() {
            for m in detector.pattern.find_iter(text) {
                if (detector.check)(m.as_str()) {
                    found.push((m.start(), m.end(), n));
                }
            }
        }
        if found.is_empty() {
            return text.to_string();
        }
        found.sort_by_key(|&(start, end, n)| (start, std::cmp::Reverse(end), n));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end, n) in found {
            if start < at {
                continue;
            }
            out.push_str(&text[at..start]);
            let kind = &privacy.detectors[n].kind;
            out.push_str(&self.token_for(kind, &text[start..end]));
            *counts.entry(kind.to_ascii_lowercase()).or_default() += 1;
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    fn token_for(&mut self, kind: &str, value: &str) -> String {
        if let Some(token) = self.tokens.get(value) {
            return token.clone();
        }
        let n = self.next.entry(kind.to_string()).or_default();
        *n += 1;
        let token = format!("[{kind}_{n}]");
        self.tokens.insert(value.to_string(), token.clone());
        self.values.insert(token.clone(), value.to_string());
        token
    }

    /// Every string (and key) of `value` tokenized in place.
    pub(crate) fn tokenize_json(
        &mut self,
        privacy: &Privacy,
        value: &mut Value,
        counts: &mut BTreeMap<String, u64>,
    ) {
        if privacy.is_off() {
            return;
        }
        match value {
            Value::String(s) => *s = self.tokenize(privacy, s, counts),
            Value::Array(items) => items.iter_mut().for_each(|v| self.tokenize_json(privacy, v, counts)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.tokenize_json(privacy, &mut v, counts);
                    map.insert(self.tokenize(privacy, &key, counts), v);
                }
            }
            _ => {}
        }
    }

    /// Every token this vault made, in the strings of `value`, replaced by its real value; a
    /// token it did not make stays as it is.
    pub(crate) fn resolve_json(&self, value: &mut Value) {
        if self.values.is_empty() {
            return;
        }
        match value {
            Value::String(s) if s.contains('[') => {
                let resolved = token_pattern().replace_all(s, |c: &regex::Captures<'_>| {
                    self.values.get(&c[0]).cloned().unwrap_or_else(|| c[0].to_string())
                });
                if let std::borrow::Cow::Owned(text) = resolved {
                    *s = text;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.resolve_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.resolve_json(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Privacy {
        Privacy::new(PRIVACY_KINDS.iter().copied(), [("employee", r"\bE\d{6}\b")]).unwrap()
    }

    #[test]
    fn each_kind_is_found_and_what_is_not_one_is_left() {
        let mut vault = Vault::default();
        let mut counts = BTreeMap::new();
        let text = "mail ada@example.com or bob.smith+x@mail.co.uk, call +1-555-1042 or (555) 123-4567, \
                    card 4111 1111 1111 1111, not 4111 1111 1111 1112, iban GB82 WEST 1234 5698 7654 32, \
                    staff E123456; revenue 1664973 on 2026-12-01, id 10000";
        let out = vault.tokenize(&all(), text, &mut counts);
        assert_eq!(
            out,
            "mail [EMAIL_1] or [EMAIL_2], call [PHONE_1] or [PHONE_2], card [CREDIT_CARD_1], not 4111 1111 \
             1111 1112, iban [IBAN_1], staff [EMPLOYEE_1]; revenue 1664973 on 2026-12-01, id 10000"
        );
        assert_eq!(
            counts,
            BTreeMap::from([
                ("credit_card".into(), 1),
                ("email".into(), 2),
                ("employee".into(), 1),
                ("iban".into(), 1),
                ("phone".into(), 2)
            ])
        );
        // The same value gets the same token; tokens resolve in this vault only.
        assert_eq!(vault.tokenize(&all(), "ada@example.com", &mut counts), "[EMAIL_1]");
        let mut args = serde_json::json!({"to": "[EMAIL_1]", "cc": ["x [EMAIL_2] y", "[EMAIL_9]"]});
        vault.resolve_json(&mut args);
        assert_eq!(
            args,
            serde_json::json!({"to": "ada@example.com", "cc": ["x bob.smith+x@mail.co.uk y", "[EMAIL_9]"]})
        );
        let mut other = serde_json::json!("[EMAIL_1]");
        Vault::default().resolve_json(&mut other);
        assert_eq!(other, serde_json::json!("[EMAIL_1]"));
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        assert_eq!(
            Privacy::new(["mail"], []).unwrap_err().0,
            "unknown kind \"mail\" to tokenize; the built-in kinds are email, phone, credit_card, iban, and \
             others are custom patterns"
        );
        let e = Privacy::new([], [("id", "(")]).unwrap_err().0;
        assert!(e.starts_with("pattern \"id\" does not compile: "), "{e}");
        assert!(Privacy::new([], [("a-b", "x")]).unwrap_err().0.starts_with("pattern name \"a-b\""));
    }
}
