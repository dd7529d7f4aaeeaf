/**
 * The archive server end to end: the real server (startServer on port 0, a temporary data folder)
 * checked against independent oracles — DCMTK (dcmftest, dcmdump), pydicom (element values,
 * pixel arrays, compressed frames) — for STOW, WADO retrieve, metadata, frames, bulk data,
 * DELETE, CORS, public URLs, health and the landing page.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test, type TestContext } from "node:test";
import { gunzipSync } from "node:zlib";
import yauzl from "yauzl";
import { datasetToJson, firstInteger, readDicom } from "../../src/dicom/index.js";
import { readParts } from "../../src/http/multipart.js";
import {
  hasBlob,
  httpRequest,
  type HttpResponse,
  type InProcessServer,
  listFiles,
  multipartBody,
  reasonOf,
  sha256,
  spawnServer,
  startInProcess,
  stowItems,
  syntheticInstance,
} from "../helpers/archive-harness.js";
import { PYDICOM_DATA, PYTHON, requireTools, run, toolsAvailable, TOOLS } from "../helpers/tools.js";

const EXPLICIT_LE = "1.2.840.10008.1.2.1";
const TEST_FILES = join(PYDICOM_DATA, "test_files");

// ---------------------------------------------------------------------------------------------
// Fixtures: pydicom's files plus copies with new UIDs made by DCMTK (dcmodify, dcmconv, dcmdrle)

interface Fixture {
  name: string;
  path: string;
  bytes: Buffer;
  sha: string;
  sopClassUid: string;
  sopUid: string;
  studyUid: string;
  seriesUid: string;
  transferSyntaxUid: string;
  frames: number;
}

const RECIPES: Array<{ name: string; source: string; steps: string[][] }> = [
  { name: "ct", source: "CT_small.dcm", steps: [] }, // explicit VR little endian
  { name: "ct_series2", source: "CT_small.dcm", steps: [["dcmodify", "-nb", "-gse", "-gin"]] }, // same study, another series
  { name: "ct_same_series", source: "CT_small.dcm", steps: [["dcmodify", "-nb", "-gin"]] }, // stored later: series ETag changes
  { name: "ct_other_study", source: "CT_small.dcm", steps: [["dcmodify", "-nb", "-gst", "-gse", "-gin"]] },
  { name: "mr_implicit", source: "MR_small_implicit.dcm", steps: [] },
  { name: "mr_bigendian", source: "MR_small_bigendian.dcm", steps: [] }, // same SOP Instance UID as mr_implicit, other bytes
  // 16-bit RGB, 2 frames, explicit VR big endian, new UIDs
  {
    name: "be_2frame",
    source: "SC_rgb_rle_16bit_2frame.dcm",
    steps: [["dcmdrle"], ["dcmodify", "-nb", "-gst", "-gse", "-gin"], ["dcmconv", "+tb"]],
  },
  { name: "deflated", source: "image_dfl.dcm", steps: [] },
  { name: "j2k", source: "JPEG2000.dcm", steps: [] },
  { name: "rle_2frame", source: "SC_rgb_rle_2frame.dcm", steps: [] },
  // 32-bit monochrome, 15 frames, converted to big endian by DCMTK (OW swapped as 16-bit words)
  {
    name: "dose_be32",
    source: "rtdose.dcm",
    steps: [
      ["dcmodify", "-nb", "-gin"],
      ["dcmconv", "+tb"],
    ],
  },
];

/** The first set stored: one of each encoding. */
const INITIAL = ["ct", "ct_series2", "mr_implicit", "be_2frame", "deflated", "j2k", "rle_2frame"];

const PY_UIDS = `
import sys, json, pydicom
out = {}
for p in sys.argv[1:]:
    d = pydicom.dcmread(p)
    out[p] = dict(sopClass=str(d.SOPClassUID), sop=str(d.SOPInstanceUID), study=str(d.StudyInstanceUID),
                  series=str(d.SeriesInstanceUID), ts=str(d.file_meta.TransferSyntaxUID), frames=int(d.get("NumberOfFrames", 1) or 1))
print(json.dumps(out))
`;

/** Every binary value as little-endian bytes (base64), keyed by its bulk data path; frames; the pixel array hash. */
const PY_ORACLE = `
import sys, json, base64, hashlib, pydicom, numpy as np
from pydicom.encaps import generate_pixel_data_frame
d = pydicom.dcmread(sys.argv[1])
swap = {"OW": "u2", "OF": "u4", "OL": "u4", "OD": "u8", "OV": "u8"}
bulk = {}
def walk(ds, prefix, little):
    for el in ds:
        key = prefix + "%08X" % el.tag
        if el.VR == "SQ":
            for i, item in enumerate(el.value):
                walk(item, key + "/%d/" % i, little)
        elif el.VR in ("OB", "OW", "OF", "OL", "OD", "OV", "UN", "OB or OW"):
            v = el.value or b""
            if not little and el.VR in swap:
                v = np.frombuffer(v, dtype=">" + swap[el.VR]).astype("<" + swap[el.VR]).tobytes()
            bulk[key] = base64.b64encode(v).decode()
walk(d, "", d.is_little_endian)
frames = []
ts = d.file_meta.TransferSyntaxUID
n = int(d.get("NumberOfFrames", 1) or 1)
if "PixelData" in d:
    if ts.is_compressed:
        frames = [base64.b64encode(f).decode() for f in generate_pixel_data_frame(d.PixelData, n)]
    else:
        arr = d.pixel_array
        if n == 1:
            arr = arr[np.newaxis]
        for f in arr:
            if d.SamplesPerPixel > 1 and d.get("PlanarConfiguration", 0) == 1:
                f = np.moveaxis(f, -1, 0)
            frames.append(base64.b64encode(f.astype(f.dtype.newbyteorder("<")).tobytes()).decode())
pixels = None
if "PixelData" in d and not ts.is_compressed:
    a = d.pixel_array
    pixels = hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes()).hexdigest() + str(a.shape)
print(json.dumps(dict(bulk=bulk, frames=frames, pixels=pixels)))
`;

interface Oracle {
  bulk: Record<string, string>;
  frames: string[];
  pixels: string | null;
}

let workDir = "";
let fixturesReady = false;
const fixtures = new Map<string, Fixture>();
const oracles = new Map<string, Oracle>();

function fixture(name: string): Fixture {
  const f = fixtures.get(name);
  if (!f) throw new Error(`fixture ${name} was not built`);
  return f;
}

function oracle(path: string): Oracle {
  let o = oracles.get(path);
  if (!o) {
    o = JSON.parse(run(PYTHON, ["-c", PY_ORACLE, path]).toString("utf8")) as Oracle;
    oracles.set(path, o);
  }
  return o;
}

function buildFixtures(): void {
  workDir = mkdtempSync(join(tmpdir(), "voxelgate-archive-server-"));
  const paths: string[] = [];
  for (const r of RECIPES) {
    let current = join(workDir, `${r.name}.dcm`);
    copyFileSync(join(TEST_FILES, r.source), current);
    r.steps.forEach((step, i) => {
      const [tool, ...args] = step as [string, ...string[]];
      if (tool === "dcmodify") run(tool, [...args, current]);
      else {
        const next = join(workDir, `${r.name}.${i}.dcm`);
        run(tool, [...args, current, next]);
        current = next;
      }
    });
    const finalPath = join(workDir, `${r.name}.final.dcm`);
    copyFileSync(current, finalPath);
    paths.push(finalPath);
  }
  const uids = JSON.parse(run(PYTHON, ["-c", PY_UIDS, ...paths]).toString("utf8")) as Record<
    string,
    { sopClass: string; sop: string; study: string; series: string; ts: string; frames: number }
  >;
  RECIPES.forEach((r, i) => {
    const path = paths[i] as string;
    const u = uids[path];
    if (!u) throw new Error(`pydicom gave no UIDs for ${path}`);
    const bytes = readFileSync(path);
    fixtures.set(r.name, {
      name: r.name,
      path,
      bytes,
      sha: sha256(bytes),
      sopClassUid: u.sopClass,
      sopUid: u.sop,
      studyUid: u.study,
      seriesUid: u.series,
      transferSyntaxUid: u.ts,
      frames: u.frames,
    });
  });
  fixturesReady = true;
}

const ORACLE_TOOLS = [TOOLS.pydicom, TOOLS.dcmdump, TOOLS.dcmftest, TOOLS.dcmconv];

/** Skips (or fails under CI) when an oracle is missing. */
function needFixtures(t: TestContext): boolean {
  if (!requireTools(t, ...ORACLE_TOOLS)) return false;
  assert.ok(fixturesReady, "fixtures were not built");
  return true;
}

// ---------------------------------------------------------------------------------------------
// Servers and helpers

let main: InProcessServer;
const fileCleanups: Array<() => unknown> = [];

before(async () => {
  if (toolsAvailable(...ORACLE_TOOLS)) buildFixtures();
  main = await startInProcess({ after: (fn) => fileCleanups.push(fn) });
});

after(async () => {
  for (const fn of fileCleanups) await fn();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

const instanceUrl = (s: { dicomweb: string }, f: Fixture): string =>
  `${s.dicomweb}/studies/${f.studyUid}/series/${f.seriesUid}/instances/${f.sopUid}`;

async function stow(s: { dicomweb: string }, files: Buffer[], study?: string, headers: Record<string, string> = {}): Promise<HttpResponse> {
  const { body, contentType } = multipartBody(files);
  return httpRequest(`${s.dicomweb}/studies${study ? `/${study}` : ""}`, {
    method: "POST",
    headers: { "content-type": contentType, accept: "application/dicom+json", ...headers },
    body,
  });
}

let initialStow: Promise<HttpResponse> | undefined;
/** The initial set is stored once; every test that needs it awaits this. */
const ensureStored = (): Promise<HttpResponse> =>
  (initialStow ??= stow(
    main,
    INITIAL.map((n) => fixture(n).bytes),
  ));

/** Parses a multipart/related response with our reader: each part's Content-Type, Content-Location and bytes. */
async function parseMultipart(res: HttpResponse): Promise<Array<{ contentType: string; location?: string; bytes: Buffer }>> {
  const out: Array<{ contentType: string; location?: string; bytes: Buffer }> = [];
  for await (const part of readParts(Readable.from([res.body]), String(res.headers["content-type"]))) {
    const chunks: Buffer[] = [];
    for await (const c of part.stream) chunks.push(c as Buffer);
    out.push({ contentType: part.contentType, location: part.contentLocation, bytes: Buffer.concat(chunks) });
  }
  return out;
}

function unzip(buffer: Buffer): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(buffer, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error("no zip"));
      const files = new Map<string, Buffer>();
      zip.on("entry", (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return reject(e ?? new Error("no stream"));
          const chunks: Buffer[] = [];
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("end", () => {
            files.set(entry.fileName, Buffer.concat(chunks));
            zip.readEntry();
          });
          stream.on("error", reject);
        });
      });
      zip.on("end", () => resolve(files));
      zip.on("error", reject);
      zip.readEntry();
    });
  });
}

/**
 * dcmdump of the dataset for comparing values: file meta left out, lengths and comments stripped,
 * sequence/item length encodings (explicit or undefined) and delimitation items ignored, the long
 * pixel data line replaced by its hash so a failure message stays readable.
 */
function datasetDump(path: string): string[] {
  return run("dcmdump", ["-q", "+L", path])
    .toString("latin1")
    .split("\n")
    .map((l) => l.replace(/\s*#.*$/, ""))
    .filter((l) => l.trim() !== "" && !l.trim().startsWith("(0002,") && !/^\s*\(fffe,e0[0d]d\)/.test(l))
    .map((l) => l.replace(/\((Sequence|Item) with (explicit|undefined) length.*$/, "($1)"))
    .map((l) => (l.length > 400 ? `${l.slice(0, 16)} … sha256 ${sha256(Buffer.from(l, "latin1"))}` : l));
}

const stats = (s: InProcessServer) => s.archive.index.stats();

// ---------------------------------------------------------------------------------------------
// STOW

test("STOW of explicit/implicit/big endian/deflated/JPEG 2000/RLE instances: 200, RetrieveURLs that resolve; identical duplicates: 200", async (t) => {
  if (!needFixtures(t)) return;
  const res = await ensureStored();
  assert.equal(res.status, 200, res.text());
  assert.match(String(res.headers["content-type"]), /^application\/dicom\+json/);
  const { referenced, failed } = stowItems(res.json());
  assert.equal(failed.length, 0);
  assert.equal(referenced.length, INITIAL.length);
  for (const name of INITIAL) {
    const f = fixture(name);
    const item = referenced.find((r) => r.sopUid === f.sopUid);
    assert.ok(item, `${name} is in ReferencedSOPSequence`);
    assert.equal(item.sopClassUid, f.sopClassUid);
    assert.equal(item.retrieveUrl, instanceUrl(main, f));
    const got = await httpRequest(item.retrieveUrl, { headers: { accept: "application/dicom; transfer-syntax=*" } });
    assert.equal(got.status, 200, `${name}: ${got.text().slice(0, 300)}`);
    assert.ok(got.body.equals(f.bytes), `${name}: the RetrieveURL gives the stored bytes`);
    assert.ok(hasBlob(main.dataDir, f.sha), `${name}: blob file exists`);
  }
  assert.deepEqual(stats(main), { studies: 6, series: 7, instances: 7 });

  const again = await ensureStoredAgain();
  assert.equal(again.status, 200, again.text());
  assert.equal(stowItems(again.json()).referenced.length, INITIAL.length);
  assert.deepEqual(stats(main), { studies: 6, series: 7, instances: 7 });
  assert.equal(listFiles(join(main.dataDir, "blobs")).length, INITIAL.length);
  assert.deepEqual(listFiles(join(main.dataDir, "staging")), []);
});

const ensureStoredAgain = () =>
  stow(
    main,
    INITIAL.map((n) => fixture(n).bytes),
  );

test("STOW of a changed file with a stored SOP Instance UID: 409 with FailureReason 0111 under the reject policy; the stored one stays", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  const implicit = fixture("mr_implicit");
  const changed = fixture("mr_bigendian");
  assert.equal(changed.sopUid, implicit.sopUid);
  const before = stats(main);
  const res = await stow(main, [changed.bytes]);
  assert.equal(res.status, 409, res.text());
  const { referenced, failed } = stowItems(res.json());
  assert.equal(referenced.length, 0);
  assert.equal(failed.length, 1);
  assert.equal(failed[0]?.failureReason, 0x0111);
  assert.equal(failed[0]?.sopUid, implicit.sopUid);
  assert.ok((failed[0]?.comment ?? "").length > 10, "ErrorComment says why");
  assert.deepEqual(stats(main), before);
  assert.ok(!hasBlob(main.dataDir, changed.sha), "the refused file is not kept");
  const got = await httpRequest(instanceUrl(main, implicit), { headers: { accept: "application/dicom; transfer-syntax=*" } });
  assert.ok(got.body.equals(implicit.bytes), "the stored instance is unchanged");
});

test('duplicatePolicy "overwrite": a changed file replaces the stored one (retrieve gives the new bytes, the old file is gone)', async (t) => {
  if (!needFixtures(t)) return;
  const s = await startInProcess(t, { duplicatePolicy: "overwrite" });
  const first = fixture("mr_implicit");
  const second = fixture("mr_bigendian");
  assert.equal((await stow(s, [first.bytes])).status, 200);
  const res = await stow(s, [second.bytes]);
  assert.equal(res.status, 200, res.text());
  assert.equal(stowItems(res.json()).referenced[0]?.sopUid, second.sopUid);
  const got = await httpRequest(instanceUrl(s, second), { headers: { accept: "application/dicom; transfer-syntax=*" } });
  assert.equal(got.status, 200);
  assert.ok(got.body.equals(second.bytes), "retrieve gives the new bytes");
  assert.match(String(got.headers["content-type"]), /transfer-syntax=1\.2\.840\.10008\.1\.2\.2\b/);
  assert.deepEqual(s.archive.index.stats(), { studies: 1, series: 1, instances: 1 });
  assert.ok(hasBlob(s.dataDir, second.sha));
  assert.ok(!hasBlob(s.dataDir, first.sha), "the replaced file was deleted");
  const meta = await httpRequest(`${instanceUrl(s, second)}/metadata`);
  const json = meta.json() as Array<Record<string, { Value?: unknown[] }>>;
  assert.deepEqual(json[0]?.["00083002"]?.Value, ["1.2.840.10008.1.2.2"], "metadata describes the new file");
});

test("study-targeted STOW with an instance of another study: 409, FailureReason C409, a reason naming both studies, nothing stored", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  const target = fixture("ct");
  const other = fixture("ct_other_study");
  const before = stats(main);
  const blobsBefore = listFiles(join(main.dataDir, "blobs"));
  const res = await stow(main, [other.bytes], target.studyUid);
  assert.equal(res.status, 409, res.text());
  const { referenced, failed } = stowItems(res.json());
  assert.equal(referenced.length, 0);
  assert.equal(failed[0]?.failureReason, 0xc409);
  assert.equal(failed[0]?.sopUid, other.sopUid);
  assert.ok(failed[0]?.comment?.includes(other.studyUid), `reason names the instance's study: ${failed[0]?.comment}`);
  assert.ok(failed[0]?.comment?.includes(target.studyUid), `reason names the URL's study: ${failed[0]?.comment}`);
  assert.deepEqual(stats(main), before);
  assert.deepEqual(listFiles(join(main.dataDir, "blobs")), blobsBefore);
  assert.deepEqual(listFiles(join(main.dataDir, "staging")), []);
  assert.equal((await httpRequest(instanceUrl(main, other))).status, 404);

  // The same study in the URL as in the file: stored.
  const ok = await stow(main, [fixture("ct").bytes], target.studyUid);
  assert.equal(ok.status, 200, ok.text());
});

// ---------------------------------------------------------------------------------------------
// WADO-RS retrieve

test("instance retrieve as application/dicom without transfer-syntax is valid Explicit VR Little Endian with the original values (dcmftest, dcmdump, pydicom)", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  for (const name of ["ct", "mr_implicit", "be_2frame", "deflated"]) {
    const f = fixture(name);
    const res = await httpRequest(instanceUrl(main, f), { headers: { accept: "application/dicom" } });
    assert.equal(res.status, 200, `${name}: ${res.text().slice(0, 300)}`);
    assert.equal(res.headers["content-type"], `application/dicom; transfer-syntax=${EXPLICIT_LE}`, name);
    assert.equal(Number(res.headers["content-length"]), res.body.length, `${name}: Content-Length`);
    const out = join(workDir, `${name}.retrieved.dcm`);
    writeFileSync(out, res.body);
    assert.match(run("dcmftest", [out]).toString(), /^yes:/, `${name}: dcmftest accepts it`);
    assert.match(run("dcmdump", ["-q", "+P", "0002,0010", out]).toString(), /=LittleEndianExplicit/, `${name}: transfer syntax`);
    assert.deepEqual(datasetDump(out), datasetDump(f.path), `${name}: same dataset values as the original (dcmdump)`);
    assert.equal(oracle(out).pixels, oracle(f.path).pixels, `${name}: same pixel array (pydicom)`);
  }
});

test("instance retrieve with transfer-syntax=* gives the stored bytes; a compressed instance without it is decoded to Explicit VR LE; an impossible syntax: 406 with a reason", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  for (const name of INITIAL) {
    const f = fixture(name);
    const res = await httpRequest(instanceUrl(main, f), { headers: { accept: "application/dicom; transfer-syntax=*" } });
    assert.equal(res.status, 200, name);
    assert.equal(res.headers["content-type"], `application/dicom; transfer-syntax=${f.transferSyntaxUid}`, name);
    assert.ok(res.body.equals(f.bytes), `${name}: exactly the stored bytes`);
  }
  for (const name of ["j2k", "rle_2frame"]) {
    const f = fixture(name);
    const res = await httpRequest(instanceUrl(main, f), { headers: { accept: "application/dicom" } });
    assert.equal(res.status, 200, `${name}: ${res.text().slice(0, 300)}`);
    assert.equal(res.headers["content-type"], "application/dicom; transfer-syntax=1.2.840.10008.1.2.1");
    const decoded = readDicom(res.body);
    assert.equal(decoded.error, undefined);
    assert.equal(decoded.transferSyntaxUid, "1.2.840.10008.1.2.1");
    const source = readDicom(f.bytes).dataset;
    const rows = firstInteger(source, 0x00280010) ?? 0;
    const columns = firstInteger(source, 0x00280011) ?? 0;
    const samples = firstInteger(source, 0x00280002) ?? 1;
    const bytes = Math.ceil((firstInteger(source, 0x00280100) ?? 8) / 8);
    assert.equal(
      decoded.dataset.get(0x7fe00010)?.bytes?.length,
      rows * columns * samples * bytes * f.frames,
      `${name}: uncompressed pixel data`,
    );
    const impossible = await httpRequest(instanceUrl(main, f), {
      headers: { accept: "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.100" },
    });
    assert.equal(impossible.status, 406, `${name}: ${impossible.text()}`);
    const reason = reasonOf(impossible);
    assert.ok(reason.includes(f.transferSyntaxUid), `reason names the stored syntax: ${reason}`);
    assert.match(reason, /transfer-syntax=\*/, "reason says how to get it as stored");
  }
});

test("multipart study retrieve parsed back gives every instance; zip retrieve has every file", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  const ct = fixture("ct");
  const ct2 = fixture("ct_series2");
  const studyUrl = `${main.dicomweb}/studies/${ct.studyUid}`;
  const stored = main.archive.index.instances({ studyUid: ct.studyUid });
  assert.ok(stored.length >= 2);

  // As stored.
  const res = await httpRequest(studyUrl, { headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  assert.equal(res.status, 200, res.text().slice(0, 300));
  assert.match(String(res.headers["content-type"]), /^multipart\/related/);
  const parts = await parseMultipart(res);
  assert.equal(parts.length, stored.length);
  const bySop = new Map(parts.map((p) => [sopOf(p.bytes), p]));
  for (const f of [ct, ct2]) {
    const p = bySop.get(f.sopUid);
    assert.ok(p, `part for ${f.name}`);
    assert.ok(p.bytes.equals(f.bytes), `${f.name}: the part is the stored file`);
    assert.equal(p.location, instanceUrl(main, f));
    assert.match(p.contentType, /^application\/dicom; transfer-syntax=1\.2\.840\.10008\.1\.2\.1$/);
  }

  // Default syntax for a study with an implicit and a big endian instance (converted): series of one each.
  for (const name of ["mr_implicit", "be_2frame", "deflated"]) {
    const f = fixture(name);
    const r = await httpRequest(`${main.dicomweb}/studies/${f.studyUid}/series/${f.seriesUid}`, {
      headers: { accept: 'multipart/related; type="application/dicom"' },
    });
    assert.equal(r.status, 200);
    const [only, ...rest] = await parseMultipart(r);
    assert.equal(rest.length, 0);
    assert.ok(only);
    assert.equal(only.contentType, `application/dicom; transfer-syntax=${EXPLICIT_LE}`);
    const out = join(workDir, `${name}.part.dcm`);
    writeFileSync(out, only.bytes);
    assert.deepEqual(datasetDump(out), datasetDump(f.path), `${name}: converted part has the original values`);
  }

  // Zip of the study.
  const zip = await httpRequest(studyUrl, { headers: { accept: "application/zip" } });
  assert.equal(zip.status, 200);
  assert.equal(zip.headers["content-type"], "application/zip");
  const entries = await unzip(zip.body);
  assert.equal(entries.size, stored.length);
  for (const row of stored) {
    const name = `${row.studyUid}/${row.seriesUid}/${row.sopUid}.dcm`;
    const bytes = entries.get(name);
    assert.ok(bytes, `zip has ${name} (entries: ${[...entries.keys()].join(", ")})`);
    assert.equal(sopOf(bytes), row.sopUid);
    const out = join(workDir, "zip-entry.dcm");
    writeFileSync(out, bytes);
    assert.match(run("dcmftest", [out]).toString(), /^yes:/);
  }
});

function sopOf(bytes: Buffer): string | undefined {
  const el = readDicom(bytes).dataset.get(0x00080018);
  return el?.bytes
    ? Buffer.from(el.bytes)
        .toString("latin1")
        .replace(/[\0 ]+$/, "")
    : undefined;
}

// ---------------------------------------------------------------------------------------------
// Metadata

type JsonAttr = { vr: string; Value?: unknown[]; InlineBinary?: string; BulkDataURI?: string };
type JsonDs = Record<string, JsonAttr>;

/**
 * The server's metadata equals `datasetToJson` of the file, except that large binary values are
 * BulkDataURIs (checked by dereferencing them against pydicom's value) and 00083002 is added.
 */
async function compareMetadata(
  got: JsonDs,
  expected: JsonDs,
  bulk: Record<string, string>,
  path: string,
  where: string,
  seen: { uris: number },
): Promise<void> {
  const keys = Object.keys(got).filter((k) => !(path === "" && k === "00083002"));
  assert.deepEqual(keys.sort(), Object.keys(expected).sort(), `${where}: same attributes at ${path || "top level"}`);
  for (const key of keys) {
    const g = got[key] as JsonAttr;
    const e = expected[key] as JsonAttr;
    const at = `${where} ${path}${key}`;
    assert.equal(g.vr, e.vr, `${at}: vr`);
    if (g.BulkDataURI !== undefined) {
      seen.uris++;
      assert.equal(g.InlineBinary, undefined);
      const res = await httpRequest(g.BulkDataURI, { headers: { accept: "application/octet-stream" } });
      assert.equal(res.status, 200, `${at}: ${g.BulkDataURI} → ${res.status} ${res.text().slice(0, 200)}`);
      const want = bulk[`${path}${key}`];
      assert.ok(want !== undefined, `${at}: pydicom has the value`);
      assert.ok(res.body.equals(Buffer.from(want, "base64")), `${at}: BulkDataURI bytes equal pydicom's value (little endian)`);
      if (e.InlineBinary !== undefined)
        assert.ok(res.body.equals(Buffer.from(e.InlineBinary, "base64")), `${at}: and datasetToJson's InlineBinary`);
      continue;
    }
    if (g.vr === "SQ") {
      const gi = (g.Value ?? []) as JsonDs[];
      const ei = (e.Value ?? []) as JsonDs[];
      assert.equal(gi.length, ei.length, `${at}: items`);
      for (let i = 0; i < gi.length; i++) await compareMetadata(gi[i] as JsonDs, ei[i] as JsonDs, bulk, `${path}${key}/${i}/`, where, seen);
      continue;
    }
    assert.deepEqual(g, e, `${at}: value`);
  }
}

test("instance, series and study metadata equal datasetToJson of the file; every BulkDataURI gives pydicom's bytes", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  for (const name of INITIAL) {
    const f = fixture(name);
    const res = await httpRequest(`${instanceUrl(main, f)}/metadata`, { headers: { accept: "application/dicom+json" } });
    assert.equal(res.status, 200, name);
    assert.match(String(res.headers["content-type"]), /^application\/dicom\+json/);
    const list = res.json() as JsonDs[];
    assert.equal(list.length, 1);
    const got = list[0] as JsonDs;
    assert.deepEqual(got["00083002"], { vr: "UI", Value: [f.transferSyntaxUid] }, `${name}: 00083002`);
    const expected = datasetToJson(readDicom(f.bytes).dataset) as JsonDs;
    const seen = { uris: 0 };
    await compareMetadata(got, expected, oracle(f.path).bulk, "", name, seen);
    assert.ok(seen.uris >= 1, `${name}: pixel data is a BulkDataURI`);
  }
  // Series and study: one item per instance, each the instance's metadata.
  const ct = fixture("ct");
  const study = (await httpRequest(`${main.dicomweb}/studies/${ct.studyUid}/metadata`)).json() as JsonDs[];
  const series = (await httpRequest(`${main.dicomweb}/studies/${ct.studyUid}/series/${ct.seriesUid}/metadata`)).json() as JsonDs[];
  const rows = main.archive.index.instances({ studyUid: ct.studyUid });
  assert.equal(study.length, rows.length);
  assert.deepEqual(study.map((d) => d["00080018"]?.Value?.[0]).sort(), rows.map((r) => r.sopUid).sort());
  assert.ok(series.every((d) => d["0020000E"]?.Value?.[0] === ct.seriesUid));
  const instance = (await httpRequest(`${instanceUrl(main, ct)}/metadata`)).json() as JsonDs[];
  assert.deepEqual(
    study.find((d) => d["00080018"]?.Value?.[0] === ct.sopUid),
    instance[0],
  );
});

test("metadata: a stored text value that looks like the internal base-URL token comes back unchanged", async (t) => {
  const s = await startInProcess(t);
  const token = "@@VOXELGATE_BASE@@";
  const bytes = syntheticInstance({ studyUid: "1.2.3.4.5.1", seriesUid: "1.2.3.4.5.2", sopUid: "1.2.3.4.5.3", patientName: `${token}^X` });
  const res = await stow(s, [bytes]);
  assert.equal(res.status, 200, res.text());
  const meta = (await httpRequest(`${s.dicomweb}/studies/1.2.3.4.5.1/metadata`)).json() as JsonDs[];
  const expected = datasetToJson(readDicom(bytes).dataset) as JsonDs;
  assert.deepEqual(meta[0]?.["00100010"], expected["00100010"], "PatientName is the stored value");
});

test("metadata: ETag with If-None-Match → 304, gzip when accepted, a new ETag after another instance is stored in the series", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  const ct = fixture("ct");
  const seriesUrl = `${main.dicomweb}/studies/${ct.studyUid}/series/${ct.seriesUid}/metadata`;
  const studyUrl = `${main.dicomweb}/studies/${ct.studyUid}/metadata`;
  const plain = await httpRequest(seriesUrl);
  assert.equal(plain.status, 200);
  assert.equal(plain.headers["content-encoding"], undefined);
  const etag = plain.headers.etag;
  assert.ok(etag && /^"[^"]+"$/.test(etag), `strong ETag: ${etag}`);
  const studyEtag = (await httpRequest(studyUrl)).headers.etag;

  const notModified = await httpRequest(seriesUrl, { headers: { "if-none-match": etag } });
  assert.equal(notModified.status, 304);
  assert.equal(notModified.body.length, 0);
  assert.equal((await httpRequest(seriesUrl, { headers: { "if-none-match": '"something-else"' } })).status, 200);

  const gz = await httpRequest(seriesUrl, { headers: { "accept-encoding": "gzip" } });
  assert.equal(gz.status, 200);
  assert.equal(gz.headers["content-encoding"], "gzip");
  assert.ok(gunzipSync(gz.body).equals(plain.body), "gzip body inflates to the plain body");
  assert.ok(gz.body.length < plain.body.length);

  const added = fixture("ct_same_series");
  assert.equal(added.seriesUid, ct.seriesUid);
  assert.equal((await stow(main, [added.bytes])).status, 200);
  const after = await httpRequest(seriesUrl, { headers: { "if-none-match": etag } });
  assert.equal(after.status, 200, "the old ETag no longer matches");
  assert.notEqual(after.headers.etag, etag);
  const list = after.json() as JsonDs[];
  assert.ok(
    list.some((d) => d["00080018"]?.Value?.[0] === added.sopUid),
    "the new instance is in the series metadata",
  );
  assert.notEqual((await httpRequest(studyUrl)).headers.etag, studyEtag, "the study ETag moved too");
});

// ---------------------------------------------------------------------------------------------
// Frames and bulk data

test("frames: native frames equal pydicom's pixels (multi-frame, big endian → little endian, implicit, deflated)", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  for (const name of ["ct", "mr_implicit", "be_2frame", "deflated"]) {
    const f = fixture(name);
    const want = oracle(f.path).frames;
    assert.equal(want.length, f.frames);
    for (let n = 1; n <= f.frames; n++) {
      const res = await httpRequest(`${instanceUrl(main, f)}/frames/${n}`, { headers: { accept: "application/octet-stream" } });
      assert.equal(res.status, 200, `${name} frame ${n}: ${res.text().slice(0, 200)}`);
      assert.match(String(res.headers["content-type"]), /^application\/octet-stream/);
      assert.ok(res.body.equals(Buffer.from(want[n - 1] as string, "base64")), `${name} frame ${n} equals pydicom's`);
    }
  }
  // Several frames in one multipart response, in the order asked.
  const be = fixture("be_2frame");
  const res = await httpRequest(`${instanceUrl(main, be)}/frames/2,1`, {
    headers: { accept: 'multipart/related; type="application/octet-stream"' },
  });
  assert.equal(res.status, 200);
  const parts = await parseMultipart(res);
  const want = oracle(be.path).frames;
  assert.equal(parts.length, 2);
  assert.ok(parts[0]?.bytes.equals(Buffer.from(want[1] as string, "base64")));
  assert.ok(parts[1]?.bytes.equals(Buffer.from(want[0] as string, "base64")));
  assert.equal(parts[0]?.location, `${instanceUrl(main, be)}/frames/2`);
});

test("frames: compressed frames (JPEG 2000, RLE) with transfer-syntax=* equal pydicom's; without it decoded; an impossible type 406", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  for (const [name, media] of [
    ["j2k", "image/jp2"],
    ["rle_2frame", "image/dicom-rle"],
  ] as const) {
    const f = fixture(name);
    const want = oracle(f.path).frames;
    assert.equal(want.length, f.frames);
    for (let n = 1; n <= f.frames; n++) {
      const res = await httpRequest(`${instanceUrl(main, f)}/frames/${n}`, {
        headers: { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' },
      });
      assert.equal(res.status, 200, `${name} frame ${n}: ${res.text().slice(0, 300)}`);
      const [part] = await parseMultipart(res);
      assert.ok(part);
      assert.ok(part.contentType.includes(`transfer-syntax=${f.transferSyntaxUid}`), part.contentType);
      assert.ok(part.bytes.equals(Buffer.from(want[n - 1] as string, "base64")), `${name} frame ${n} equals pydicom's`);
      // The frame's own media type.
      const typed = await httpRequest(`${instanceUrl(main, f)}/frames/${n}`, { headers: { accept: `multipart/related; type="${media}"` } });
      assert.equal(typed.status, 200, `${name} as ${media}: ${typed.text().slice(0, 300)}`);
      const [typedPart] = await parseMultipart(typed);
      assert.ok(typedPart?.contentType.startsWith(media), typedPart?.contentType);
      assert.ok(typedPart?.bytes.equals(part.bytes));
    }
    // Without transfer-syntax=*, application/octet-stream means uncompressed: decoded by the server.
    const source = readDicom(f.bytes).dataset;
    const frameLength =
      (firstInteger(source, 0x00280010) ?? 0) *
      (firstInteger(source, 0x00280011) ?? 0) *
      (firstInteger(source, 0x00280002) ?? 1) *
      Math.ceil((firstInteger(source, 0x00280100) ?? 8) / 8);
    const decoded = await httpRequest(`${instanceUrl(main, f)}/frames/1`, { headers: { accept: "application/octet-stream" } });
    assert.equal(decoded.status, 200, `${name}: ${decoded.text().slice(0, 300)}`);
    assert.equal(decoded.headers["content-type"], "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1");
    assert.equal(decoded.body.length, frameLength, name);
    const refused = await httpRequest(`${instanceUrl(main, f)}/frames/1`, { headers: { accept: "video/mpeg" } });
    assert.equal(refused.status, 406, name);
    assert.match(reasonOf(refused), /transfer-syntax=\*/);
  }
});

test("frames: out of range → 404 with a reason; frames/0, frames/a, frames/1,,2 → 400", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  const f = fixture("rle_2frame");
  const res = await httpRequest(`${instanceUrl(main, f)}/frames/3`, {
    headers: { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' },
  });
  assert.equal(res.status, 404);
  assert.match(reasonOf(res), /2 frames/);
  assert.match(reasonOf(res), /frame 3/);
  for (const bad of ["0", "a", "1,,2", "-1", "1.5"]) {
    const r = await httpRequest(`${instanceUrl(main, f)}/frames/${bad}`, {
      headers: { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' },
    });
    assert.equal(r.status, 400, `frames/${bad}`);
    assert.match(reasonOf(r), /frame/);
  }
});

test("frames, bulk data and the converted instance agree on the pixels of a 32-bit big endian instance", async (t) => {
  if (!needFixtures(t)) return;
  const s = await startInProcess(t);
  const f = fixture("dose_be32");
  assert.equal(f.transferSyntaxUid, "1.2.840.10008.1.2.2");
  assert.equal((await stow(s, [f.bytes])).status, 200);
  const url = instanceUrl(s, f);
  const converted = await httpRequest(url, { headers: { accept: "application/dicom" } });
  assert.equal(converted.status, 200);
  const out = join(workDir, "dose_be32.retrieved.dcm");
  writeFileSync(out, converted.body);
  // DCMTK's own little endian conversion of the same file is the reference.
  const reference = join(workDir, "dose_be32.dcmconv-le.dcm");
  run("dcmconv", ["+te", f.path, reference]);
  assert.deepEqual(datasetDump(out), datasetDump(reference), "converted instance equals DCMTK's conversion");
  const referenceFrames = oracle(reference).frames;
  const bulk = await httpRequest(`${url}/bulk/7FE00010`, { headers: { accept: "application/octet-stream" } });
  assert.ok(
    bulk.body.equals(Buffer.concat(referenceFrames.map((b) => Buffer.from(b, "base64")))),
    "bulk pixel data equals DCMTK's little endian pixels",
  );
  for (const n of [1, 7, f.frames]) {
    const frame = await httpRequest(`${url}/frames/${n}`, { headers: { accept: "application/octet-stream" } });
    assert.equal(frame.status, 200);
    assert.ok(
      frame.body.equals(Buffer.from(referenceFrames[n - 1] as string, "base64")),
      `frame ${n} equals DCMTK's little endian frame ${n}`,
    );
  }
});

test("bulk data: Range → 206 with Content-Range, suffix ranges, beyond the end → 416", async (t) => {
  if (!needFixtures(t)) return;
  await ensureStored();
  const f = fixture("ct");
  const url = `${instanceUrl(main, f)}/bulk/7FE00010`;
  const whole = await httpRequest(url, { headers: { accept: "application/octet-stream" } });
  assert.equal(whole.status, 200);
  assert.equal(whole.headers["accept-ranges"], "bytes");
  const size = whole.body.length;
  assert.equal(size, 128 * 128 * 2);
  assert.ok(whole.body.equals(Buffer.from(oracle(f.path).bulk["7FE00010"] as string, "base64")));

  const part = await httpRequest(url, { headers: { accept: "application/octet-stream", range: "bytes=100-1099" } });
  assert.equal(part.status, 206);
  assert.equal(part.headers["content-range"], `bytes 100-1099/${size}`);
  assert.ok(part.body.equals(whole.body.subarray(100, 1100)));

  const open = await httpRequest(url, { headers: { accept: "application/octet-stream", range: `bytes=${size - 10}-` } });
  assert.equal(open.status, 206);
  assert.ok(open.body.equals(whole.body.subarray(size - 10)));

  const suffix = await httpRequest(url, { headers: { accept: "application/octet-stream", range: "bytes=-16" } });
  assert.equal(suffix.status, 206);
  assert.equal(suffix.headers["content-range"], `bytes ${size - 16}-${size - 1}/${size}`);
  assert.ok(suffix.body.equals(whole.body.subarray(size - 16)));

  const beyond = await httpRequest(url, { headers: { accept: "application/octet-stream", range: `bytes=${size}-` } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers["content-range"], `bytes */${size}`);
  assert.match(reasonOf(beyond), /Range/);

  // Deflated instance: not addressable in the file, still the right bytes and ranges.
  const dfl = fixture("deflated");
  const dUrl = `${instanceUrl(main, dfl)}/bulk/7FE00010`;
  const want = Buffer.from(oracle(dfl.path).bulk["7FE00010"] as string, "base64");
  const dPart = await httpRequest(dUrl, { headers: { accept: "application/octet-stream", range: "bytes=1000-1999" } });
  assert.equal(dPart.status, 206);
  assert.ok(dPart.body.equals(want.subarray(1000, 2000)));

  const missing = await httpRequest(`${instanceUrl(main, f)}/bulk/00100010`, { headers: { accept: "application/octet-stream" } });
  assert.equal(missing.status, 404);
});

// ---------------------------------------------------------------------------------------------
// DELETE

test("DELETE with the default configuration: 405 with a reason, nothing removed", async (t) => {
  const s = await startInProcess(t);
  const bytes = syntheticInstance({ studyUid: "1.2.3.9.1", seriesUid: "1.2.3.9.2", sopUid: "1.2.3.9.3" });
  assert.equal((await stow(s, [bytes])).status, 200);
  for (const path of [
    "/studies/1.2.3.9.1",
    "/studies/1.2.3.9.1/series/1.2.3.9.2",
    "/studies/1.2.3.9.1/series/1.2.3.9.2/instances/1.2.3.9.3",
  ]) {
    const res = await httpRequest(`${s.dicomweb}${path}`, { method: "DELETE" });
    assert.equal(res.status, 405, path);
    assert.match(reasonOf(res), /allowDelete/);
    assert.ok(String(res.headers.allow).includes("GET"));
  }
  assert.deepEqual(s.archive.index.stats(), { studies: 1, series: 1, instances: 1 });
  assert.ok(hasBlob(s.dataDir, sha256(bytes)));
});

test("DELETE with allowDelete: instance, series and study removed; files gone from blobs/; metadata 404; QIDO no longer lists it", async (t) => {
  const s = await startInProcess(t, { allowDelete: true });
  const study = "1.2.3.10.1";
  const mk = (series: string, sop: string, seed: number) => syntheticInstance({ studyUid: study, seriesUid: series, sopUid: sop, seed });
  const a1 = mk("1.2.3.10.2", "1.2.3.10.2.1", 1);
  const a2 = mk("1.2.3.10.2", "1.2.3.10.2.2", 2);
  const b1 = mk("1.2.3.10.3", "1.2.3.10.3.1", 3);
  const other = syntheticInstance({ studyUid: "1.2.3.11.1", seriesUid: "1.2.3.11.2", sopUid: "1.2.3.11.3", seed: 4 });
  assert.equal((await stow(s, [a1, a2, b1, other])).status, 200);
  assert.deepEqual(s.archive.index.stats(), { studies: 2, series: 3, instances: 4 });

  const qido = async (uid: string): Promise<boolean | undefined> => {
    const r = await httpRequest(`${s.dicomweb}/studies?StudyInstanceUID=${uid}`, { headers: { accept: "application/dicom+json" } });
    if (r.status === 404 && /no resource/.test(reasonOf(r))) return undefined; // QIDO routes not there
    if (r.status === 204) return false;
    assert.equal(r.status, 200, r.text());
    return (r.json() as JsonDs[]).some((d) => d["0020000D"]?.Value?.[0] === uid);
  };
  const qidoBefore = await qido(study);
  if (qidoBefore === undefined) t.diagnostic("QIDO routes are not there yet: the QIDO part of this test was not checked");
  else assert.equal(qidoBefore, true);

  const inst = `${s.dicomweb}/studies/${study}/series/1.2.3.10.2/instances/1.2.3.10.2.1`;
  let res = await httpRequest(inst, { method: "DELETE" });
  assert.equal(res.status, 200, res.text());
  assert.ok(!hasBlob(s.dataDir, sha256(a1)), "instance file removed");
  assert.ok(hasBlob(s.dataDir, sha256(a2)));
  assert.equal((await httpRequest(`${inst}/metadata`)).status, 404);
  assert.equal((await httpRequest(inst, { method: "DELETE" })).status, 404, "deleting again: 404");

  res = await httpRequest(`${s.dicomweb}/studies/${study}/series/1.2.3.10.2`, { method: "DELETE" });
  assert.equal(res.status, 200);
  assert.ok(!hasBlob(s.dataDir, sha256(a2)));
  assert.equal((await httpRequest(`${s.dicomweb}/studies/${study}/series/1.2.3.10.2/metadata`)).status, 404);
  assert.equal((await httpRequest(`${s.dicomweb}/studies/${study}/metadata`)).status, 200, "the study still has series 3");

  res = await httpRequest(`${s.dicomweb}/studies/${study}`, { method: "DELETE" });
  assert.equal(res.status, 200);
  assert.ok(!hasBlob(s.dataDir, sha256(b1)));
  const gone = await httpRequest(`${s.dicomweb}/studies/${study}/metadata`);
  assert.equal(gone.status, 404);
  assert.match(reasonOf(gone), new RegExp(study.replaceAll(".", "\\.")));
  assert.deepEqual(s.archive.index.stats(), { studies: 1, series: 1, instances: 1 });
  assert.deepEqual(
    listFiles(join(s.dataDir, "blobs")).map((p) => p.split("/").pop()),
    [`${sha256(other)}.dcm`],
  );
  if (qidoBefore !== undefined) {
    assert.equal(await qido(study), false, "QIDO no longer lists the deleted study");
    assert.equal(await qido("1.2.3.11.1"), true);
  }
  assert.equal((await httpRequest(`${s.dicomweb}/studies/1.2.3.11.1/metadata`)).status, 200, "the other study is untouched");
});

// ---------------------------------------------------------------------------------------------
// CORS, public URLs, health, landing page

test("CORS: preflight answered for an allowed origin; GET responses (multipart too) carry Access-Control-Allow-Origin; other origins get none", async (t) => {
  const s = await startInProcess(t, { corsOrigins: ["http://viewer.example"] });
  const bytes = syntheticInstance({ studyUid: "1.2.3.12.1", seriesUid: "1.2.3.12.2", sopUid: "1.2.3.12.3" });
  assert.equal((await stow(s, [bytes])).status, 200);
  const meta = `${s.dicomweb}/studies/1.2.3.12.1/metadata`;
  const origin = "http://viewer.example";

  const pre = await httpRequest(meta, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "GET", "access-control-request-headers": "accept, authorization" },
  });
  assert.ok(pre.status === 204 || pre.status === 200, String(pre.status));
  assert.equal(pre.headers["access-control-allow-origin"], origin);
  assert.match(String(pre.headers["access-control-allow-methods"]), /\bGET\b/);
  assert.match(String(pre.headers["access-control-allow-headers"]), /authorization/i);

  const got = await httpRequest(meta, { headers: { origin } });
  assert.equal(got.status, 200);
  assert.equal(got.headers["access-control-allow-origin"], origin);
  assert.match(String(got.headers["access-control-expose-headers"]), /ETag/);

  const multi = await httpRequest(`${s.dicomweb}/studies/1.2.3.12.1`, {
    headers: { origin, accept: 'multipart/related; type="application/dicom"' },
  });
  assert.equal(multi.status, 200);
  assert.equal(multi.headers["access-control-allow-origin"], origin);

  const error = await httpRequest(`${s.dicomweb}/studies/1.2.3.99/metadata`, { headers: { origin } });
  assert.equal(error.status, 404);
  assert.equal(error.headers["access-control-allow-origin"], origin, "error responses are readable by the viewer too");

  const evil = "http://evil.example";
  const evilPre = await httpRequest(meta, { method: "OPTIONS", headers: { origin: evil, "access-control-request-method": "GET" } });
  assert.equal(evilPre.headers["access-control-allow-origin"], undefined);
  assert.equal(evilPre.headers["access-control-allow-methods"], undefined);
  const evilGet = await httpRequest(meta, { headers: { origin: evil } });
  assert.equal(evilGet.headers["access-control-allow-origin"], undefined);

  // CORS off by default.
  const plain = await startInProcess(t);
  const none = await httpRequest(`${plain.url}healthz`, { headers: { origin } });
  assert.equal(none.headers["access-control-allow-origin"], undefined);
});

test("public URLs: Forwarded from a trusted proxy sets RetrieveURL and BulkDataURI; untrusted it is ignored; publicUrl wins", async (t) => {
  const forwarded = { forwarded: "for=203.0.113.7;proto=https;host=pacs.example.org" };
  const bytes = syntheticInstance({ studyUid: "1.2.3.13.1", seriesUid: "1.2.3.13.2", sopUid: "1.2.3.13.3", rows: 64, columns: 64 });
  const instancePath = "/studies/1.2.3.13.1/series/1.2.3.13.2/instances/1.2.3.13.3";

  const check = async (s: InProcessServer, base: string) => {
    const res = await stow(s, [bytes], undefined, forwarded);
    assert.equal(res.status, 200, res.text());
    const { referenced, retrieveUrl } = stowItems(res.json());
    assert.equal(referenced[0]?.retrieveUrl, `${base}${instancePath}`);
    assert.equal(retrieveUrl, `${base}/studies/1.2.3.13.1`);
    const meta = (await httpRequest(`${s.dicomweb}${instancePath}/metadata`, { headers: forwarded })).json() as JsonDs[];
    assert.equal(meta[0]?.["7FE00010"]?.BulkDataURI, `${base}${instancePath}/bulk/7FE00010`);
  };

  const trusted = await startInProcess(t, { trustedProxies: ["127.0.0.1"] });
  await check(trusted, "https://pacs.example.org/dicomweb");
  // X-Forwarded-* works too.
  const xf = await stow(trusted, [bytes], undefined, { "x-forwarded-proto": "https", "x-forwarded-host": "other.example.org:8443" });
  assert.equal(stowItems(xf.json()).referenced[0]?.retrieveUrl, `https://other.example.org:8443/dicomweb${instancePath}`);
  // A hostile host value is not echoed.
  const hostile = await stow(trusted, [bytes], undefined, { forwarded: 'host="evil.example/<script>"' });
  assert.ok(!stowItems(hostile.json()).referenced[0]?.retrieveUrl?.includes("<script>"));

  const untrusted = await startInProcess(t);
  await check(untrusted, untrusted.dicomweb);

  const fixed = await startInProcess(t, { trustedProxies: ["127.0.0.1"], publicUrl: "https://images.example.net/pacs" });
  await check(fixed, "https://images.example.net/pacs/dicomweb");
});

test("/healthz, /readyz and the landing page (DICOMweb root, number of studies, OHIF data source)", async (t) => {
  const s = await startInProcess(t);
  const health = await httpRequest(`${s.url}healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(health.json(), { status: "ok" });
  const ready = await httpRequest(`${s.url}readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(ready.json(), { status: "ready", checks: { index: "ok", storage: "ok", audit: "ok" } });

  const page = async () => {
    const r = await httpRequest(s.url);
    assert.equal(r.status, 200);
    assert.match(String(r.headers["content-type"]), /^text\/html/);
    return r.text().replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c)));
  };
  let html = await page();
  assert.ok(html.includes(s.dicomweb), "shows the DICOMweb root");
  assert.match(html, /0 studies/);
  const stowed = [1, 2, 3].map((i) =>
    syntheticInstance({ studyUid: `1.2.3.14.${i}`, seriesUid: `1.2.3.14.${i}.1`, sopUid: `1.2.3.14.${i}.1.1`, seed: i }),
  );
  assert.equal((await stow(s, stowed)).status, 200);
  html = await page();
  assert.match(html, /3 studies/);
  const snippet = /<pre>([\s\S]*?)<\/pre>/.exec(html)?.[1];
  assert.ok(snippet, "an OHIF snippet");
  const config = JSON.parse(snippet) as { dataSources: Array<{ configuration: { qidoRoot: string; wadoRoot: string } }> };
  assert.equal(config.dataSources[0]?.configuration.qidoRoot, s.dicomweb);
  assert.equal(config.dataSources[0]?.configuration.wadoRoot, s.dicomweb);
});

test("the CLI serves the same archive: stored instances survive a restart on the same data folder", async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-cli-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const bytes = syntheticInstance({ studyUid: "1.2.3.15.1", seriesUid: "1.2.3.15.2", sopUid: "1.2.3.15.3" });
  const first = await spawnServer(dataDir);
  t.after(() => first.kill());
  assert.equal((await stow(first, [bytes])).status, 200);
  await first.kill("SIGTERM");
  const second = await spawnServer(dataDir);
  t.after(() => second.kill());
  const got = await httpRequest(`${second.dicomweb}/studies/1.2.3.15.1/series/1.2.3.15.2/instances/1.2.3.15.3`, {
    headers: { accept: "application/dicom; transfer-syntax=*" },
  });
  assert.equal(got.status, 200);
  assert.ok(got.body.equals(bytes));
  assert.deepEqual(
    listFiles(join(dataDir, "blobs")).map((p) => p.split("/").pop()),
    [`${sha256(bytes)}.dcm`],
  );
});
