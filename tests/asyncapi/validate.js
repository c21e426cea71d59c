// Parse AsyncAPI documents with the official parser and print what it reports.
// Usage: node validate.js FILE...   prints one JSON object per file:
// {"file", "valid" (a document came out), "diagnostics": [{"code", "message", "path", "severity"}]}
// severity as the parser gives it: 0 error, 1 warning, 2 information, 3 hint.
"use strict";

const fs = require("fs");
const { Parser } = require("@asyncapi/parser");

async function main() {
  const parser = new Parser();
  for (const file of process.argv.slice(2)) {
    const text = fs.readFileSync(file, "utf8");
    const { document, diagnostics } = await parser.parse(text, { source: file });
    const found = diagnostics.map((d) => ({
      code: d.code,
      message: d.message,
      path: d.path,
      severity: d.severity,
    }));
    console.log(JSON.stringify({ file, valid: document !== undefined, diagnostics: found }));
  }
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
