use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

fn codemode() -> Command {
    Command::new(env!("CARGO_BIN_EXE_codemode"))
}

fn run_stdin(args: &[&str], code: &str) -> (i32, String) {
    let mut child = codemode()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(code.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn run_json_prints_one_object() {
    let (code, out) = run_stdin(&["run", "--json", "-"], "console.log('hi'); return 1 + 1");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["value"], json!(2));
    assert_eq!(v["logs"], json!([{"level": "log", "message": "hi"}]));
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["stats"]["tool_calls"], json!(0));
    assert!(v["stats"]["duration_ms"].is_number());
    assert_eq!(v["stats"]["tokens"]["returned"], json!(2));
}

#[test]
fn run_demo_example_summarizes_the_sheet() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/spreadsheet.ts");
    let out = codemode().args(["run", "--demo", "--json", path]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["value"]["active"], json!(3334));
    assert_eq!(v["value"]["totalAmount"], json!(1665027));
    assert_eq!(v["value"]["top"], json!(["Customer 321", "Customer 3321", "Customer 6321"]));
    assert_eq!(v["logs"][0]["message"], json!("10000 rows read, 3334 active"));
    assert_eq!(v["stats"]["tool_calls"], json!(2));
    let tokens = &v["stats"]["tokens"];
    assert!(tokens["tool_results"].as_u64().unwrap() > 200_000, "{tokens}");
    assert!(tokens["returned"].as_u64().unwrap() < 200, "{tokens}");
}

#[test]
fn failing_script_exits_1_with_human_error() {
    let (code, out) = run_stdin(&["run", "-"], "const a = 1;\nthrow new TypeError('bad input');");
    assert_eq!(code, 1);
    assert!(out.contains("error[exception] at 2:11: TypeError: bad input"), "{out}");
}

#[test]
fn timeout_flag_is_applied() {
    let (code, out) = run_stdin(&["run", "--json", "--timeout-ms", "100", "-"], "while(true){}");
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["kind"], json!("timeout"));
    assert_eq!(v["error"]["message"], json!("the program ran past its 100 ms deadline"));
}

#[test]
fn bad_usage_exits_2() {
    let out = codemode().args(["run", "/nonexistent/file.ts"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/file.ts"));
    let out = codemode().args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
