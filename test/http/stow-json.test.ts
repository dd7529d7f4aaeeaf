/**
 * STOW-RS with `multipart/related; type="application/dicom+json"` (PS3.18 §10.5.1.2.2): metadata
 * parts plus bulk data parts named by Content-Location, native and compressed pixel data; the
 * XML response; the 415 for a part type the request did not declare.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { datasetToJson, readDicom } from "../../src/dicom/index.js";
import { httpRequest, multipartBody, reasonOf, startInProcess, stowItems, syntheticInstance } from "../helpers/archive-harness.js";

const STUDY = "1.2.826.0.1.3680043.9.4242";
const SERIES = `${STUDY}.1`;

/** A JSON STOW part list: one metadata part, then bulk parts. */
function jsonRequest(boundary: string, metadata: unknown[], bulk: Array<{ location: string; type: string; bytes: Buffer }>): Buffer {
  const parts: Buffer[] = [
    Buffer.from(`--${boundary}\r\nContent-Type: application/dicom+json\r\n\r\n`),
    Buffer.from(JSON.stringify(metadata)),
    Buffer.from("\r\n"),
  ];
  for (const b of bulk) {
    parts.push(
      Buffer.from(`--${boundary}\r\nContent-Type: ${b.type}\r\nContent-Location: ${b.location}\r\n\r\n`),
      b.bytes,
      Buffer.from("\r\n"),
    );
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(parts);
}

/** DICOM JSON of a synthetic instance with its pixel data as a BulkDataURI. */
function metadataWithBulkPixels(sopUid: string, location: string): { json: Record<string, unknown>; pixels: Buffer } {
  const file = syntheticInstance({ studyUid: STUDY, seriesUid: SERIES, sopUid, rows: 16, columns: 16, seed: 7 });
  const read = readDicom(file);
  const json = datasetToJson(read.dataset, { bulkData: (c) => (c.element.tag === 0x7fe00010 ? location : undefined) }) as Record<
    string,
    unknown
  >;
  const pixelEl = read.dataset.get(0x7fe00010);
  assert.ok(pixelEl?.bytes);
  return { json, pixels: Buffer.from(pixelEl.bytes) };
}

test("STOW application/dicom+json with a native bulk data part: stored, pixels and attributes retrievable", async (t) => {
  const s = await startInProcess(t);
  const sop = `${SERIES}.1`;
  const { json, pixels } = metadataWithBulkPixels(sop, "http://client/bulk/1");
  // Non-ASCII text with a Latin-1 character set: the server re-encodes it as UTF-8 and says so.
  json["00100010"] = { vr: "PN", Value: [{ Alphabetic: "Müller^Zoë" }] };
  json["00080005"] = { vr: "CS", Value: ["ISO_IR 100"] };
  const boundary = "json-stow-boundary";
  const res = await httpRequest(`${s.dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": `multipart/related; type="application/dicom+json"; boundary=${boundary}`, accept: "application/dicom+json" },
    body: jsonRequest(boundary, [json], [{ location: "http://client/bulk/1", type: "application/octet-stream", bytes: pixels }]),
  });
  // Coerced character set: stored with a warning (202, WarningReason B000).
  assert.equal(res.status, 202, res.text());
  const items = stowItems(JSON.parse(res.text()));
  assert.equal(items.referenced.length, 1);
  assert.equal(items.failed.length, 0);
  const body = JSON.parse(res.text()) as Record<string, { Value: Array<Record<string, { Value: unknown[] }>> }>;
  assert.equal(body["00081199"]?.Value[0]?.["00081196"]?.Value[0], 0xb000);

  const frame = await httpRequest(`${s.dicomweb}/studies/${STUDY}/series/${SERIES}/instances/${sop}/frames/1`, {
    headers: { accept: "application/octet-stream" },
  });
  assert.equal(frame.status, 200);
  assert.ok(frame.body.equals(pixels), "frame 1 is the bulk part's bytes");
  const meta = await httpRequest(`${s.dicomweb}/studies/${STUDY}/series/${SERIES}/instances/${sop}/metadata`, {
    headers: { "accept-encoding": "gzip" },
  });
  const [instance] = JSON.parse(gunzipSync(meta.body).toString("utf8")) as Array<
    Record<string, { Value?: Array<{ Alphabetic?: string } | string> }>
  >;
  assert.deepEqual(instance?.["00100010"]?.Value?.[0], { Alphabetic: "Müller^Zoë" });
  assert.equal(instance?.["00080005"]?.Value?.[0], "ISO_IR 192");
});

test("STOW application/dicom+json with a compressed (image/jpeg) bulk part: stored encapsulated in the named syntax", async (t) => {
  const s = await startInProcess(t);
  const sop = `${SERIES}.2`;
  const { json } = metadataWithBulkPixels(sop, "cid:frame1");
  // Any bytes stand for the JPEG frame: the archive stores them as sent (no decoding at ingest).
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, 0x42), Buffer.from([0xff, 0xd9])]);
  const boundary = "json-stow-jpeg";
  const res = await httpRequest(`${s.dicomweb}/studies/${STUDY}`, {
    method: "POST",
    headers: { "content-type": `multipart/related; type="application/dicom+json"; boundary=${boundary}` },
    body: jsonRequest(
      boundary,
      [json],
      [{ location: "cid:frame1", type: "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50", bytes: jpeg }],
    ),
  });
  assert.equal(res.status, 200, res.text());
  const row = s.archive.index.instance(sop);
  assert.equal(row?.transferSyntaxUid, "1.2.840.10008.1.2.4.50");
  const frame = await httpRequest(`${s.dicomweb}/studies/${STUDY}/series/${SERIES}/instances/${sop}/frames/1`, {
    headers: { accept: "image/jpeg" },
  });
  assert.equal(frame.status, 200, frame.text());
  assert.match(String(frame.headers["content-type"]), /^image\/jpeg/);
  assert.ok(frame.body.equals(jpeg), "the compressed frame comes back byte for byte");
});

test("STOW application/dicom+json: a BulkDataURI no part provides fails that instance with a reason", async (t) => {
  const s = await startInProcess(t);
  const { json } = metadataWithBulkPixels(`${SERIES}.3`, "http://client/missing");
  const boundary = "json-stow-missing";
  const res = await httpRequest(`${s.dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": `multipart/related; type="application/dicom+json"; boundary=${boundary}` },
    body: jsonRequest(boundary, [json], []),
  });
  assert.equal(res.status, 409, res.text());
  const items = stowItems(JSON.parse(res.text()));
  assert.equal(items.failed.length, 1);
  assert.match(res.text(), /BulkDataURI|bulk/i);
  assert.equal(s.archive.index.stats().instances, 0);
});

test("STOW response as XML when asked; a part of an undeclared type fails with a reason", async (t) => {
  const s = await startInProcess(t);
  const file = syntheticInstance({ studyUid: STUDY, seriesUid: SERIES, sopUid: `${SERIES}.4` });
  const boundary = "xml-answer";
  const body = Buffer.concat([
    multipartBody([file], boundary).body.subarray(0, -Buffer.byteLength(`--${boundary}--\r\n`)),
    Buffer.from(`--${boundary}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--${boundary}--\r\n`),
  ]);
  const res = await httpRequest(`${s.dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: "application/dicom+xml" },
    body,
  });
  assert.equal(res.status, 202, res.text());
  assert.match(String(res.headers["content-type"]), /^application\/dicom\+xml/);
  assert.match(res.text(), /<NativeDicomModel/);
  assert.match(res.text(), /tag="00081199"/);
  assert.match(res.text(), /tag="00081198"/);
  assert.match(res.text(), /text\/plain/, "the failure says which media type was refused");
  assert.equal(s.archive.index.stats().instances, 1);
});

test("STOW with an Accept the response cannot meet: 406 with the media types on offer", async (t) => {
  const s = await startInProcess(t);
  const boundary = "b406";
  const res = await httpRequest(`${s.dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: "image/png" },
    body: multipartBody([syntheticInstance({ studyUid: STUDY, seriesUid: SERIES, sopUid: `${SERIES}.5` })], boundary).body,
  });
  assert.equal(res.status, 406);
  assert.match(reasonOf(res), /application\/dicom\+json/);
});
