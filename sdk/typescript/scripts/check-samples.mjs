// Type-checks a directory of TypeScript samples against this SDK: `node scripts/check-samples.mjs DIR`.
// Samples import "@forkyard/sdk" and may use top-level await and node's globals (process).
// Exits with tsc's status; its diagnostics name the sample files. The API reference's
// generated TypeScript samples are checked this way (tests/sdk_typescript/test_samples.py).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const dir = process.argv[2];
if (!dir) {
  console.error("usage: check-samples.mjs DIR");
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "forkyard-samples-"));
const config = {
  compilerOptions: {
    target: "ES2022",
    module: "ES2022",
    moduleResolution: "Bundler",
    lib: ["ES2022", "DOM", "DOM.Iterable"],
    types: ["node"],
    typeRoots: [join(here, "node_modules", "@types")],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    // Each sample is a module of its own, so two samples may both declare `inst`.
    moduleDetection: "force",
    baseUrl: here,
    paths: { "@forkyard/sdk": [join(here, "src", "index.ts")] },
  },
  include: [join(resolve(dir), "**", "*.ts")],
};
writeFileSync(join(work, "tsconfig.json"), JSON.stringify(config, null, 2));
const tsc = join(here, "node_modules", "typescript", "bin", "tsc");
const run = spawnSync(process.execPath, [tsc, "-p", join(work, "tsconfig.json"), "--pretty", "false"], {
  stdio: "inherit",
});
rmSync(work, { recursive: true, force: true });
process.exit(run.status ?? 1);
