// Bundles src/index.js into dist/app.js and copies the static page next to it.
// Runs from any cwd: paths are resolved from this file.
import { build } from "esbuild";
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LABEL } from "./src/render.js";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");

const started = performance.now();
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(root, "src/index.js")],
  outfile: join(dist, "app.js"),
  bundle: true,
  // An IIFE loads from a plain <script> tag.
  format: "iife",
  target: "es2020",
  // The label as one literal (see src/render.js); constant folding only (no renaming, no
  // whitespace removal) turns the `typeof` test around it into plain `LABEL = "frontend v1"`.
  define: { __LABEL__: JSON.stringify(LABEL) },
  minifySyntax: true,
  logLevel: "warning",
});
await copyFile(join(root, "public/index.html"), join(dist, "index.html"));

const bundle = await readFile(join(dist, "app.js"), "utf8");
if (!bundle.includes(`"${LABEL}"`)) {
  console.error(`build.mjs: dist/app.js lacks the literal "${LABEL}"`);
  process.exit(1);
}
console.log(`built dist/ (${LABEL}) in ${Math.round(performance.now() - started)} ms`);
