/**
 * Hostile STOW-RS (and URL) input against the real server: every bad request gets a 4xx with a
 * reason a person can act on, and NOTHING in the store changes — the index counts, the files under
 * blobs/ and staging/, and nothing is written outside the data folder.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { readDicom, writePart10 } from "../../src/dicom/index.js";
import {
  dataFolderSnapshot,
  dicomPartHeader,
  hasBlob,
  httpRequest,
  type HttpResponse,
  type InProcessServer,
  multipartBody,
  reasonOf,
  sha256,
  startInProcess,
  stowItems,
  syntheticInstance,
} from "../helpers/archive-harness.js";

const IMPLICIT_LE = "1.2.840.10008.1.2";

let sandbox = "";
let s: InProcessServer;
const cleanups: Array<() => unknown> = [];

/** A valid instance already stored: the store is never empty, so "unchanged" means something. */
const resident = syntheticInstance({ studyUid: "1.2.826.0.1.1", seriesUid: "1.2.826.0.1.2", sopUid: "1.2.826.0.1.3" });

before(async () => {
  // The data folder sits alone in a sandbox folder: anything written beside it is a path escape.
  sandbox = mkdtempSync(join(tmpdir(), "voxelgate-hostile-"));
  const dataDir = join(sandbox, "data");
  mkdirSync(dataDir);
  s = await startInProcess({ after: (fn) => cleanups.push(fn) }, {}, dataDir);
  const { body, contentType } = multipartBody([resident]);
  const res = await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
  assert.equal(res.status, 200, res.text());
});

after(async () => {
  for (const fn of cleanups) await fn();
  rmSync(sandbox, { recursive: true, force: true });
});

let uid = 100;
/** A fresh valid instance (new UIDs) that must NOT end up stored. */
function fresh(extra: { patientName?: string; transferSyntaxUid?: string } = {}): { bytes: Buffer; sop: string } {
  uid++;
  const sop = `1.2.826.0.2.${uid}.3`;
  return {
    bytes: syntheticInstance({ studyUid: `1.2.826.0.2.${uid}.1`, seriesUid: `1.2.826.0.2.${uid}.2`, sopUid: sop, seed: uid, ...extra }),
    sop,
  };
}

interface StoreState {
  stats: unknown;
  files: string[];
  sandbox: string[];
}

const state = (): StoreState => ({
  stats: s.archive.index.stats(),
  files: dataFolderSnapshot(s.dataDir),
  sandbox: readdirSync(sandbox).sort(),
});

/** Runs a request and checks: the status is one of `statuses`, the reason matches, nothing changed in the store. */
async function refused(
  what: string,
  send: () => Promise<HttpResponse>,
  statuses: number[],
  reason: RegExp,
  mustNotExist: string[] = [],
): Promise<HttpResponse> {
  const before = state();
  const res = await send();
  assert.ok(statuses.includes(res.status), `${what}: status ${res.status} (wanted ${statuses.join(" or ")}): ${res.text().slice(0, 300)}`);
  const text = res.status === 409 ? (stowItems(res.json()).failed[0]?.comment ?? "") : reasonOf(res);
  assert.match(text, reason, `${what}: the reason says what is wrong: ${text}`);
  assert.ok(text.length >= 20, `${what}: a sentence, not a code: ${text}`);
  assert.deepEqual(await settled(before), before, `${what}: nothing in the store changed`);
  for (const sop of mustNotExist) assert.equal(s.archive.index.instance(sop), undefined, `${what}: ${sop} is not indexed`);
  // The server is still alive and still serves the resident instance.
  const alive = await httpRequest(`${s.dicomweb}/studies/1.2.826.0.1.1/metadata`);
  assert.equal(alive.status, 200);
  return res;
}

/** The store state once in-flight work (a handler still discarding an aborted upload) has settled. */
async function settled(expected: StoreState): Promise<StoreState> {
  let now = state();
  for (let i = 0; i < 50 && JSON.stringify(now) !== JSON.stringify(expected); i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = state();
  }
  return now;
}

const post = (body: Buffer | string, contentType: string, path = "/studies"): Promise<HttpResponse> =>
  httpRequest(`${s.dicomweb}${path}`, { method: "POST", headers: { "content-type": contentType, accept: "application/dicom+json" }, body });

const B = "hostile-boundary-42";
const CT = `multipart/related; type="application/dicom"; boundary=${B}`;
const part = (bytes: Buffer) => Buffer.concat([dicomPartHeader(B), bytes, Buffer.from("\r\n")]);
const close = Buffer.from(`--${B}--\r\n`);

// ---------------------------------------------------------------------------------------------

test("truncated multipart body (no closing boundary): 400, nothing stored, not even complete parts", async () => {
  const a = fresh();
  const b = fresh();
  await refused(
    "no closing boundary",
    () => post(Buffer.concat([part(a.bytes), part(b.bytes)]), CT),
    [400],
    /closing boundary|truncated/i,
    [a.sop, b.sop],
  );
});

test("multipart body cut in the middle of a part: 400, nothing stored", async () => {
  const a = fresh();
  const b = fresh();
  const whole = Buffer.concat([part(a.bytes), part(b.bytes), close]);
  const cut = whole.subarray(0, part(a.bytes).length + 200 + Math.floor(b.bytes.length / 2));
  await refused("cut inside part 2", () => post(cut, CT), [400], /closing boundary|truncated/i, [a.sop, b.sop]);
  // Cut inside the part headers.
  const c = fresh();
  const inHeaders = Buffer.concat([part(c.bytes), Buffer.from(`--${B}\r\nContent-Ty`)]);
  await refused("cut inside part headers", () => post(inHeaders, CT), [400], /closing boundary|truncated|header/i, [c.sop]);
});

test("the client drops the connection half-way through the body: nothing stored, no staging leftovers", async () => {
  const a = fresh();
  const b = fresh();
  const whole = Buffer.concat([part(a.bytes), part(b.bytes), close]);
  const before = state();
  const url = new URL(`${s.dicomweb}/studies`);
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: ${CT}\r\nContent-Length: ${whole.length}\r\n\r\n`);
      socket.write(whole.subarray(0, Math.floor(whole.length * 0.7)), () => {
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 200);
      });
    });
    socket.on("error", reject);
  });
  assert.deepEqual(await settled(before), before, "nothing changed once the server noticed the abort");
  assert.equal(s.archive.index.instance(a.sop), undefined);
  assert.equal((await httpRequest(`${s.url}healthz`)).status, 200);
});

test("a body that uses another boundary than the Content-Type's: 400", async () => {
  const a = fresh();
  const { body } = multipartBody([a.bytes], "some-other-boundary");
  await refused("wrong boundary", () => post(body, CT), [400], /boundary/i, [a.sop]);
});

test("multipart/related without a boundary parameter, or with a malformed one: 400", async () => {
  const a = fresh();
  const { body } = multipartBody([a.bytes], B);
  await refused("missing boundary", () => post(body, 'multipart/related; type="application/dicom"'), [400], /boundary/i, [a.sop]);
  await refused("empty boundary", () => post(body, 'multipart/related; type="application/dicom"; boundary=""'), [400], /boundary/i, [
    a.sop,
  ]);
  await refused("two boundaries", () => post(body, `${CT}; boundary=x`), [400], /boundary/i, [a.sop]);
});

test("a part that is not DICOM: 409 with FailureReason C000 and a reason; with a good part beside it: 202, only the good one stored", async () => {
  const junk = Buffer.from("this is a text file, not a DICOM instance\n".repeat(20));
  const res = await refused("text part", () => post(Buffer.concat([part(junk), close]), CT), [409], /DICOM/i);
  const { failed, referenced } = stowItems(res.json());
  assert.equal(referenced.length, 0);
  assert.equal(failed[0]?.failureReason, 0xc000);

  // Same with a part of another media type in an application/dicom request.
  const typed = Buffer.concat([Buffer.from(`--${B}\r\nContent-Type: text/plain\r\n\r\n`), junk, Buffer.from("\r\n"), close]);
  await refused("text/plain part", () => post(typed, CT), [409], /media type|application\/dicom/i);

  // A good instance beside a bad one: 202, the good one stored, the bad one reported.
  const good = fresh();
  const mixed = await post(Buffer.concat([part(junk), part(good.bytes), close]), CT);
  assert.equal(mixed.status, 202, mixed.text());
  const items = stowItems(mixed.json());
  assert.equal(items.failed.length, 1);
  assert.equal(items.referenced[0]?.sopUid, good.sop);
  assert.ok(hasBlob(s.dataDir, sha256(good.bytes)));
  assert.ok(s.archive.index.instance(good.sop));
});

test("a DICOM part whose element declares a huge length (4 GiB, the most a 32-bit length can say): 409 with a reason, nothing stored", async () => {
  // Pixel Data (OB, explicit VR) claiming 0xFFFFFFF0 bytes, followed by a few.
  const a = fresh();
  const at = a.bytes.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0x00, 0x00]));
  assert.ok(at > 0);
  const pixels = Buffer.from(a.bytes.subarray(0, at + 300));
  pixels.writeUInt32LE(0xfffffff0, at + 8);
  let res = await refused(
    "huge pixel data length",
    () => post(Buffer.concat([part(pixels), close]), CT),
    [409],
    /length|truncat|end|bytes/i,
    [a.sop],
  );
  assert.equal(stowItems(res.json()).failed[0]?.failureReason, 0xc000);

  // Patient Name (implicit VR, 32-bit length) claiming 0xFFFFFFF0 bytes, in the middle of the dataset.
  const b = fresh({ transferSyntaxUid: IMPLICIT_LE, patientName: "HUGE^LENGTH" });
  const name = b.bytes.indexOf(Buffer.from("HUGE^LENGTH", "latin1"));
  assert.ok(name > 8);
  const patched = Buffer.from(b.bytes);
  patched.writeUInt32LE(0xfffffff0, name - 4);
  res = await refused("huge string length", () => post(Buffer.concat([part(patched), close]), CT), [409], /length|truncat|end|bytes/i, [
    b.sop,
  ]);

  // The same as a single application/dicom body.
  await refused("huge length, single part", () => post(patched, "application/dicom"), [409], /length|truncat|end|bytes/i, [b.sop]);
});

test("invalid UIDs inside the file (letters, 70 characters, path characters): 409 with a reason naming the UID", async () => {
  const cases: Array<[string, { studyUid: string; seriesUid: string; sopUid: string }, RegExp]> = [
    ["letters", { studyUid: "1.2.826.0.3.1", seriesUid: "1.2.826.0.3.2", sopUid: "1.2.abc" }, /1\.2\.abc/],
    ["70 characters", { studyUid: "1.2.826.0.3.1", seriesUid: "1.2.826.0.3.2", sopUid: `1.2.${"3".repeat(66)}` }, /64|70|long/],
    ["study ../..", { studyUid: "../../../etc", seriesUid: "1.2.826.0.3.2", sopUid: "1.2.826.0.3.3" }, /not a valid UID/],
    ["series with a slash", { studyUid: "1.2.826.0.3.1", seriesUid: "1.2/3", sopUid: "1.2.826.0.3.4" }, /not a valid UID/],
  ];
  for (const [what, uids, reason] of cases) {
    const bytes = syntheticInstance(uids);
    const res = await refused(what, () => post(Buffer.concat([part(bytes), close]), CT), [409], reason);
    assert.equal(stowItems(res.json()).failed[0]?.failureReason, 0xc000, what);
  }
});

test("path traversal in URL UIDs: 400/404, never a file outside the data folder", async () => {
  const a = fresh();
  const body = Buffer.concat([part(a.bytes), close]);
  for (const path of [
    "/studies/..%2F..%2Fetc",
    "/studies/1.2.3%5C..%5C..%5Cetc",
    "/studies/1.2.3%2F..%2F..",
    "/studies/..",
    "/studies/1.2.3/..%2F..%2F..%2Ftmp",
  ]) {
    await refused(`POST ${path}`, () => post(body, CT, path), [400, 404], /UID|resource|valid/i, [a.sop]);
  }
  const gets = [
    "/studies/..%2F..%2Fetc/metadata",
    "/studies/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/studies/1.2.3/series/..%2F..",
    "/studies/1.2.3/series/..%2F..%2Findex.sqlite/metadata",
    "/studies/1.2.826.0.1.1/series/1.2.826.0.1.2/instances/1.2.826.0.1.3/bulk/..%2F..%2F..%2Findex.sqlite",
    "/studies/1.2.826.0.1.1/series/1.2.826.0.1.2/instances/1.2.826.0.1.3/bulk/7FE00010%2F..%2F..",
    "/studies/1.2.826.0.1.1/series/1.2.826.0.1.2/instances/..%5C..%5Cindex.sqlite/frames/1",
    "/studies/%2e%2e/series/%2e%2e/instances/%2e%2e",
  ];
  for (const path of gets) {
    const before = state();
    const res = await httpRequest(`${s.dicomweb}${path}`, { headers: { accept: "*/*" } });
    assert.ok([400, 404].includes(res.status), `GET ${path}: ${res.status} ${res.text().slice(0, 200)}`);
    assert.ok(reasonOf(res).length >= 20, `GET ${path}: a reason`);
    assert.ok(!res.body.includes("root:x:0:0"), `GET ${path} does not leak /etc/passwd`);
    assert.ok(!res.body.includes("SQLite format 3"), `GET ${path} does not leak the index`);
    assert.deepEqual(state(), before, `GET ${path} changed nothing`);
    const del = await httpRequest(`${s.dicomweb}${path}`, { method: "DELETE" });
    assert.ok([400, 404, 405].includes(del.status), `DELETE ${path}: ${del.status}`);
  }
  assert.deepEqual(readdirSync(sandbox), ["data"], "nothing was written beside the data folder");
});

test("unsupported Content-Type: 415 with what to send instead", async () => {
  const a = fresh();
  const { body } = multipartBody([a.bytes], B);
  const types = [
    "text/plain",
    "application/json",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "image/jpeg",
    `multipart/form-data; boundary=${B}`,
    `multipart/related; type="image/jpeg"; boundary=${B}`,
    `multipart/mixed; boundary=${B}`,
  ];
  // Every type is tried, then every failure is reported at once.
  const wrong: string[] = [];
  for (const type of types) {
    await refused(`Content-Type ${type}`, () => post(body, type), [415], /multipart\/related|application\/dicom/, [a.sop]).catch(
      (err: Error) => wrong.push(err.message.split("\n")[0] ?? ""),
    );
  }
  assert.deepEqual(wrong, []);
  await refused(
    "no Content-Type",
    () => httpRequest(`${s.dicomweb}/studies`, { method: "POST", body }),
    [415, 400],
    /Content-Type|multipart/i,
    [a.sop],
  );
});

test("a huge part header block: 400 or 413, nothing stored", async () => {
  const a = fresh();
  const header = Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\nX-Padding: ${"a".repeat(64 * 1024)}\r\n\r\n`);
  const body = Buffer.concat([header, a.bytes, Buffer.from("\r\n"), close]);
  await refused("64 KiB header line", () => post(body, CT), [400, 413], /header/i, [a.sop]);
  // Many small header lines.
  const many = Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\n${"X-A: b\r\n".repeat(10_000)}\r\n`);
  await refused("10,000 header lines", () => post(Buffer.concat([many, a.bytes, Buffer.from("\r\n"), close]), CT), [400, 413], /header/i, [
    a.sop,
  ]);
});

test("an empty body, a body with no parts, and an empty part: 4xx with a reason", async () => {
  await refused("empty body", () => post(Buffer.alloc(0), CT), [400], /empty|no part/i);
  await refused("closing boundary only", () => post(close, CT), [400], /no part|empty/i);
  const empty = Buffer.concat([part(Buffer.alloc(0)), close]);
  await refused("an empty part", () => post(empty, CT), [400, 409], /empty|DICOM|no /i);
  await refused("empty single application/dicom body", () => post(Buffer.alloc(0), "application/dicom"), [400, 409], /empty|DICOM|no /i);
});

test("absurd Number of Frames (frame-count bomb) in a small file: 409 with a reason, nothing stored", async () => {
  const a = fresh();
  // The same small file, rewritten with Number of Frames 999,999,999.
  const ds = readDicom(a.bytes).dataset;
  ds.set({ tag: 0x00280008, vr: "IS", bytes: Buffer.from("999999999 "), position: -1 });
  const bomb = writePart10(ds, { transferSyntaxUid: "1.2.840.10008.1.2.1" });
  await refused("999,999,999 frames", () => post(Buffer.concat([part(bomb), close]), CT), [409], /frame/i, [a.sop]);
});
