import { VERSION } from "./version.js";

// In the bundle the label is one literal ("frontend v1"), which tests and `syncd smoke`
// fetch from /app.js to see which version is deployed: build.mjs defines __LABEL__ (esbuild
// `define`; its constant folding alone inlines strings of up to 3 characters only) and fails
// the build if the literal is missing. Under node (the tests) it is computed here.
/* global __LABEL__ */
export const LABEL = typeof __LABEL__ === "string" ? __LABEL__ : "frontend " + VERSION;

// Pure (no DOM) so node's test runner can check it.
export function render(label) {
  return `${label} (fullstack example)`;
}
