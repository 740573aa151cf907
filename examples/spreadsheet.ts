// The code-mode spreadsheet scenario: 10,000 rows stay in the sandbox; the model sees a summary.
// Run it: cargo run --release -- run --demo examples/spreadsheet.ts
interface Row {
  id: number;
  customer: string;
  status: "active" | "churned" | "trial";
  region: "EU" | "US" | "APAC" | "LATAM";
  amount: number;
}

const sheets_ = await sheets.listSheets();
const sales = sheets_.find((s: { id: string }) => s.id === "sales")!;
const rows: Row[] = await sheets.getRows({ sheetId: sales.id });

const active = rows.filter((r) => r.status === "active");
const byRegion: Record<string, { count: number; total: number }> = {};
for (const r of active) {
  const bucket = (byRegion[r.region] ??= { count: 0, total: 0 });
  bucket.count += 1;
  bucket.total += r.amount;
}
console.log(`${rows.length} rows read, ${active.length} active`);

const top = [...active].sort((a, b) => b.amount - a.amount).slice(0, 3).map((r) => r.customer);
return {
  active: active.length,
  totalAmount: active.reduce((sum, r) => sum + r.amount, 0),
  byRegion,
  top,
};
