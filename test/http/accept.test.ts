import assert from "node:assert/strict";
import { test } from "node:test";
import {
  formatMediaType,
  MediaTypeError,
  negotiate,
  type Offer,
  parseAccept,
  parseMediaType,
  quoteParam,
  rankOffers,
} from "../../src/http/accept.js";

const summary = (header: string | undefined) => parseAccept(header).map((r) => [r.mediaType, { ...r.params }, r.q]);

const MULTIPART_DICOM: Offer = { mediaType: "multipart/related", params: { type: "application/dicom" } };
const MULTIPART_OCTET: Offer = { mediaType: "multipart/related", params: { type: "application/octet-stream" } };
const ZIP: Offer = { mediaType: "application/zip" };
const OCTET: Offer = { mediaType: "application/octet-stream" };
const DICOM_JSON: Offer = { mediaType: "application/dicom+json" };

test("parseMediaType: lower-cased type and names, quoted values with escapes, duplicates noted", () => {
  const m = parseMediaType('Multipart/Related ; TYPE="application/dicom" ;Boundary=abc; note="a \\"b\\"; c"; type=x');
  assert.equal(m.mediaType, "multipart/related");
  assert.equal(m.type, "multipart");
  assert.equal(m.subtype, "related");
  assert.deepEqual({ ...m.params }, { type: "application/dicom", boundary: "abc", note: 'a "b"; c' });
  assert.deepEqual(m.duplicateParams, ["type"]);
  assert.deepEqual({ ...parseMediaType("application/dicom;").params }, {});
  assert.equal(parseMediaType("  text/plain  ").mediaType, "text/plain");
  for (const bad of ["", "text", "text/", "/plain", "te xt/plain", "a/b; =x", "a/b; c", 'a/b; c="open', 'a/b; c="x" junk']) {
    assert.throws(() => parseMediaType(bad), MediaTypeError, bad);
  }
});

test("parseAccept: order, q values, parameters before q, extensions after q", () => {
  assert.deepEqual(summary("application/dicom+json, application/json;q=0.5, */*;q=0.1"), [
    ["application/dicom+json", {}, 1],
    ["application/json", {}, 0.5],
    ["*/*", {}, 0.1],
  ]);
  const [r] = parseAccept('multipart/related; type="application/dicom"; q=0.9; ext=1');
  assert.ok(r);
  assert.deepEqual({ ...r.params }, { type: "application/dicom" });
  assert.deepEqual({ ...r.extensions }, { ext: "1" });
  assert.equal(r.q, 0.9);
  assert.equal(r.index, 0);
  assert.deepEqual(summary("a/b;Q=0, c/d;q=1.000, e/f;q=0.123"), [
    ["a/b", {}, 0],
    ["c/d", {}, 1],
    ["e/f", {}, 0.123],
  ]);
});

test("parseAccept: OHIF's unquoted type parameter and transfer-syntax=*", () => {
  assert.deepEqual(summary("multipart/related; type=application/octet-stream; transfer-syntax=*"), [
    ["multipart/related", { type: "application/octet-stream", "transfer-syntax": "*" }, 1],
  ]);
  assert.deepEqual(
    summary(
      'application/dicom+json, multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80,multipart/related;type=application/octet-stream',
    ),
    [
      ["application/dicom+json", {}, 1],
      ["multipart/related", { type: "image/jls", "transfer-syntax": "1.2.840.10008.1.2.4.80" }, 1],
      ["multipart/related", { type: "application/octet-stream" }, 1],
    ],
  );
});

test("parseAccept: quoted strings may hold commas and semicolons; malformed elements are dropped, the rest kept", () => {
  assert.deepEqual(summary('a/b; x="1, 2; 3", c/d'), [
    ["a/b", { x: "1, 2; 3" }, 1],
    ["c/d", {}, 1],
  ]);
  assert.deepEqual(summary('garbage, a/b;q=2, c/d;q=0.5x, */json, e/f; x="open, g/h'), []);
  assert.deepEqual(summary('garbage, a/b;q=2, c/d, ,, e/f;q=abc, g/h; x="unterminated'), [["c/d", {}, 1]]);
  assert.deepEqual(
    parseAccept("bad, c/d, e/f").map((r) => r.index),
    [0, 1],
  );
  assert.deepEqual(summary(" \t "), [["*/*", {}, 1]]);
  assert.deepEqual(summary(undefined), [["*/*", {}, 1]]);
});

test("negotiate: the multipart type parameter decides between multipart offers", () => {
  const offers = [MULTIPART_DICOM, MULTIPART_OCTET, ZIP];
  assert.equal(negotiate('multipart/related; type="application/octet-stream"', offers)?.offer, MULTIPART_OCTET);
  assert.equal(negotiate("multipart/related; type=application/octet-stream; transfer-syntax=*", offers)?.offer, MULTIPART_OCTET);
  assert.equal(negotiate('multipart/related; type="application/dicom"', offers)?.offer, MULTIPART_DICOM);
  assert.equal(negotiate("multipart/related; type=Application/DICOM", offers)?.offer, MULTIPART_DICOM);
  assert.equal(negotiate('multipart/related; type="image/jpeg"', offers), undefined);
  assert.equal(negotiate('multipart/related; type="application/octet-stream"', [MULTIPART_DICOM, ZIP]), undefined);
  // Without a type parameter the first multipart offer wins.
  assert.equal(negotiate("multipart/related", offers)?.offer, MULTIPART_DICOM);
  // The range is returned so the caller can read transfer-syntax.
  const chosen = negotiate("multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50", offers);
  assert.equal(chosen?.range.params["transfer-syntax"], "1.2.840.10008.1.2.4.50");
  assert.equal(chosen?.offerIndex, 0);
});

test("negotiate: OHIF's metadata and frame requests", () => {
  assert.equal(
    negotiate("application/dicom+json, multipart/related; type=application/octet-stream", [DICOM_JSON, { mediaType: "application/json" }])
      ?.offer,
    DICOM_JSON,
  );
  const frames = [MULTIPART_OCTET, OCTET];
  assert.equal(negotiate("multipart/related; type=application/octet-stream; transfer-syntax=*", frames)?.offer, MULTIPART_OCTET);
  assert.equal(negotiate("application/octet-stream", frames)?.offer, OCTET);
});

test("negotiate: wildcards, q=0 exclusion, specificity, ties by Accept order then offer order", () => {
  const offers = [MULTIPART_DICOM, ZIP, OCTET];
  assert.equal(negotiate(undefined, offers)?.offer, MULTIPART_DICOM);
  assert.equal(negotiate("*/*", offers)?.offer, MULTIPART_DICOM);
  assert.equal(negotiate("application/*", offers)?.offer, ZIP);
  // q=0 on a specific range beats the wildcard that would allow it.
  assert.equal(negotiate("*/*, multipart/related;q=0", offers)?.offer, ZIP);
  assert.equal(negotiate("application/*;q=0, */*;q=0.1", offers)?.offer, MULTIPART_DICOM);
  assert.equal(negotiate("*/*;q=0", offers), undefined);
  assert.equal(negotiate("application/zip;q=0", [ZIP]), undefined);
  // Higher q wins regardless of order.
  assert.equal(negotiate("application/zip;q=0.5, application/octet-stream", offers)?.offer, OCTET);
  // Equal q: the more specific range wins over a wildcard listed first...
  assert.equal(negotiate("*/*, application/zip", offers)?.offer, ZIP);
  // ...and among equally specific ranges the one the client listed first.
  assert.equal(negotiate("application/octet-stream, application/zip", offers)?.offer, OCTET);
  assert.equal(negotiate("application/zip, application/octet-stream", offers)?.offer, ZIP);
  // One range matching two offers: offer order.
  assert.equal(negotiate("application/*", [OCTET, ZIP])?.offer, OCTET);
  // The most specific matching range sets the offer's weight.
  const ranked = rankOffers("multipart/related;q=0.2, multipart/related; type=application/dicom;q=0.9, */*;q=0.5", [
    MULTIPART_OCTET,
    MULTIPART_DICOM,
    ZIP,
  ]);
  assert.deepEqual(
    ranked.map((r) => [r.offerIndex, r.q]),
    [
      [1, 0.9],
      [2, 0.5],
      [0, 0.2],
    ],
  );
});

test("negotiate: parameters an offer does not declare do not constrain; '*' values match any", () => {
  assert.equal(negotiate("application/dicom+json; charset=utf-8", [DICOM_JSON])?.offer, DICOM_JSON);
  const utf8Only: Offer = { mediaType: "application/dicom+json", params: { Charset: "UTF-8" } };
  assert.equal(negotiate("application/dicom+json; charset=utf-8", [utf8Only])?.offer, utf8Only);
  assert.equal(negotiate("application/dicom+json; charset=iso-8859-1", [utf8Only]), undefined);
  const anySyntax: Offer = { mediaType: "application/dicom", params: { "transfer-syntax": "*" } };
  assert.equal(
    negotiate("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90", [anySyntax])?.range.params["transfer-syntax"],
    "1.2.840.10008.1.2.4.90",
  );
  const explicit: Offer = { mediaType: "application/dicom", params: { "transfer-syntax": "1.2.840.10008.1.2.1" } };
  assert.equal(negotiate("application/dicom; transfer-syntax=*", [explicit])?.offer, explicit);
  assert.equal(negotiate("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50", [explicit]), undefined);
});

test("negotiate: nothing acceptable, garbage header, pre-parsed ranges", () => {
  assert.equal(negotiate("image/png", [MULTIPART_DICOM, ZIP]), undefined);
  assert.equal(negotiate("this is not an accept header", [ZIP]), undefined);
  assert.deepEqual(rankOffers("text/html", [ZIP]), []);
  const ranges = parseAccept("application/zip");
  assert.equal(negotiate(ranges, [OCTET, ZIP])?.offer, ZIP);
  assert.equal(negotiate([], [ZIP]), undefined);
});

test("formatMediaType and quoteParam quote only what is not a token", () => {
  assert.equal(quoteParam("1.2.840.10008.1.2.1"), "1.2.840.10008.1.2.1");
  assert.equal(quoteParam("*"), "*");
  assert.equal(quoteParam("application/dicom"), '"application/dicom"');
  assert.equal(quoteParam('say "hi" \\ bye'), '"say \\"hi\\" \\\\ bye"');
  assert.equal(quoteParam(""), '""');
  assert.throws(() => quoteParam("a\r\nb"), MediaTypeError);
  assert.equal(
    formatMediaType("application/dicom", { "transfer-syntax": "1.2.840.10008.1.2.1" }),
    "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
  );
  assert.throws(() => formatMediaType("a/b", { "bad name": "x" }), MediaTypeError);
  // What formatMediaType writes, parseMediaType reads back.
  const params = { type: "application/dicom", note: 'x "y"; z', plain: "abc" };
  assert.deepEqual({ ...parseMediaType(formatMediaType("multipart/related", params)).params }, params);
});
