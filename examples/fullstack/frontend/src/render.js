import { VERSION } from "./version.js";

// A constant expression rather than something built inside a function: with
// minifySyntax, esbuild folds it into the single literal "frontend v1" in
// dist/app.js, which tests fetch to see which version is deployed.
// build.mjs fails the build if that ever stops being true.
export const LABEL = "frontend " + VERSION;

// Pure (no DOM) so node's test runner can check it.
export function render(label) {
  return `${label} (fullstack example)`;
}
