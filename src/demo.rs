//! The demo namespace `sheets`: the spreadsheet from the code-mode write-up, held in memory.
//!
//! Sheet `"sales"` has 10,000 rows; row `i` is `{ id: i, customer: "Customer " + i,
//! status: ["active","churned","trial"][i % 3], region: ["EU","US","APAC","LATAM"][i % 4],
//! amount: (i * 7919) % 1000 }`. Updates last as long as the registry.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{RegistryError, ToolError};
use crate::registry::{Registry, Tool, ToolOutput};

/// The namespace's description (build.rs repeats it for the build-time declarations).
const DESCRIPTION: &str = "A workbook of spreadsheets: list sheets, read rows, update rows.";

/// The declarations build.rs generated from schemas/demo, for comparison with the run-time ones.
#[doc(hidden)]
pub const BUILD_TIME_DECLARATIONS: &str = include_str!(concat!(env!("OUT_DIR"), "/demo.d.ts"));

/// Rows of the `sales` sheet.
pub const SALES_ROWS: usize = 10_000;

// The tool definitions, checked at build time by build.rs.
const LIST_SHEETS: &str = include_str!("../schemas/demo/listSheets.json");
const GET_ROWS: &str = include_str!("../schemas/demo/getRows.json");
const UPDATE_ROW: &str = include_str!("../schemas/demo/updateRow.json");

struct Sheet {
    id: &'static str,
    title: &'static str,
    rows: Vec<Map<String, Value>>,
}

type Book = Arc<Mutex<Vec<Sheet>>>;

fn sales_row(i: usize) -> Map<String, Value> {
    const STATUS: [&str; 3] = ["active", "churned", "trial"];
    const REGION: [&str; 4] = ["EU", "US", "APAC", "LATAM"];
    let v = json!({
        "id": i,
        "customer": format!("Customer {i}"),
        "status": STATUS[i % 3],
        "region": REGION[i % 4],
        "amount": (i * 7919) % 1000,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("literal object"),
    }
}

fn tool(text: &str, handler: impl crate::registry::ToolHandler) -> Tool {
    let mut defs = crate::definitions::parse(text).expect("demo definitions are valid (checked by build.rs)");
    Tool::from_definition(defs.remove(0), handler)
}

fn parse<T: serde::de::DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    serde_json::from_value(args).map_err(|e| ToolError::with_code("invalid_argument", e.to_string()))
}

fn position(book: &[Sheet], id: &str) -> Result<usize, ToolError> {
    book.iter().position(|s| s.id == id).ok_or_else(|| unknown_sheet(id))
}

fn unknown_sheet(id: &str) -> ToolError {
    ToolError::with_code("not_found", format!("unknown sheet id {id:?}; listSheets() returns the ids"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetRows {
    sheet_id: String,
    offset: Option<usize>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateRow {
    sheet_id: String,
    id: usize,
    fields: Map<String, Value>,
}

/// A tool whose handler works on the locked workbook; none of them awaits anything.
fn book_tool(text: &str, book: &Book, f: fn(&mut [Sheet], Value) -> Result<ToolOutput, ToolError>) -> Tool {
    let book = Arc::clone(book);
    tool(text, move |args: Value| {
        let book = Arc::clone(&book);
        async move { f(&mut book.lock().expect("book lock"), args) }
    })
}

fn list_sheets(book: &mut [Sheet], _args: Value) -> Result<ToolOutput, ToolError> {
    let sheets = book.iter().map(|s| json!({ "id": s.id, "title": s.title, "rowCount": s.rows.len() }));
    Ok(Value::Array(sheets.collect()).into())
}

fn get_rows(book: &mut [Sheet], args: Value) -> Result<ToolOutput, ToolError> {
    let args: GetRows = parse(args)?;
    let rows = &book[position(book, &args.sheet_id)?].rows;
    let start = args.offset.unwrap_or(0).min(rows.len());
    let end = start.saturating_add(args.limit.unwrap_or(usize::MAX)).min(rows.len());
    // Serialized straight from the stored rows: no copy of 10,000 maps per call.
    let text = serde_json::to_string(&rows[start..end])
        .map_err(|e| ToolError::with_code("internal", e.to_string()))?;
    Ok(ToolOutput::Json(text))
}

fn update_row(book: &mut [Sheet], args: Value) -> Result<ToolOutput, ToolError> {
    let args: UpdateRow = parse(args)?;
    let index = position(book, &args.sheet_id)?;
    let row = book[index].rows.get_mut(args.id).ok_or_else(|| {
        ToolError::with_code("not_found", format!("sheet {:?} has no row {}", args.sheet_id, args.id))
    })?;
    row.extend(args.fields);
    Ok(json!({ "ok": true }).into())
}

/// Adds the `sheets` namespace to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    let book: Book = Arc::new(Mutex::new(vec![Sheet {
        id: "sales",
        title: "Sales pipeline",
        rows: (0..SALES_ROWS).map(sales_row).collect(),
    }]));

    registry.register("sheets", book_tool(LIST_SHEETS, &book, list_sheets))?;
    registry.register("sheets", book_tool(GET_ROWS, &book, get_rows))?;
    registry.register("sheets", book_tool(UPDATE_ROW, &book, update_row))?;
    registry.describe_namespace("sheets", DESCRIPTION)?;
    Ok(())
}

/// A registry holding only the demo namespace.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r).expect("demo tools are valid");
    r
}
