import { test } from "node:test";
import assert from "node:assert/strict";
import { LABEL, render } from "../src/render.js";
import { VERSION } from "../src/version.js";

test("the label names the frontend and its version", () => {
  assert.equal(LABEL, `frontend ${VERSION}`);
});

test("render puts the label first", () => {
  assert.equal(render("frontend v7"), "frontend v7 (fullstack example)");
});
