import assert from "node:assert/strict";
import { test } from "node:test";
import { generateUid, isValidUid, uidProblem } from "../../src/dicom/index.js";
import { IMPLEMENTATION_CLASS_UID } from "../../src/dicom/uid.js";

test("UIDs are validated against PS3.5 §9.1", () => {
  for (const ok of ["1.2.840.10008.1.2.1", "2.25.0", "1.2.3.0.4", IMPLEMENTATION_CLASS_UID]) assert.ok(isValidUid(ok), ok);
  const bad: Array<[string, RegExp]> = [
    ["", /empty/],
    ["1.2.03", /leading zero/],
    ["1..2", /empty component/],
    ["1.2.", /empty component/],
    ["1.2.a", /digits and dots/],
    ["1", /two components/],
    [`1.${"2".repeat(63)}`, /maximum is 64/],
  ];
  for (const [uid, why] of bad) assert.match(uidProblem(uid) ?? "valid", why, uid);
});

test("generated UIDs are valid 2.25 UIDs and unique", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const uid = generateUid();
    assert.ok(uid.startsWith("2.25.") && isValidUid(uid), uid);
    seen.add(uid);
  }
  assert.equal(seen.size, 1000);
});
