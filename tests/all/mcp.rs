//! The MCP server, driven by a client nobody here wrote: the official Python SDK.

use crate::harness::python;

#[test]
fn the_python_sdk_lists_searches_describes_and_executes() {
    let Some(mut python) = python() else {
        eprintln!("SKIPPED the_python_sdk_lists_searches_describes_and_executes: python3 with pip not found");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_stdio_client.py");
    let out = python.arg(script).arg(env!("CARGO_BIN_EXE_codemode")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "tools: describe_tools, execute_code, search_tools\n\
         prompt in execute_code: True\n\
         search: ['sheets.getRows', 'sheets.updateRow']\n\
         describe: True\n\
         execute: False {\"churned\": 3333, \"revenue\": 1664973}\n\
         text: [log] rows 10000\n\
         failure: True exception error (exception) at line 2, column 30: TypeError: bad 1\n"
    );
}
