const r = await sheets.getRows({ sheetId: "sales" });
return r.length