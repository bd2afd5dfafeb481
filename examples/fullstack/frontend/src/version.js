export const VERSION = "v1";
// Tests bump the version by rewriting the constant above with a regex: keep it
// on one line, exactly in this shape.
