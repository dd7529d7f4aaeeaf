/**
 * Rendered resources and thumbnails against the real server (startInProcess on a port) with real
 * DICOM files: CT windowed like DCMTK's dcmj2pnm, JPEG by default, PNG and animated GIF, viewport
 * and quality, 400 for bad parameters, study and series level as multipart/related, thumbnails at
 * the four levels, the rendered cache (separate from the native one, hits in /metrics), the
 * transfer-syntax parameter ignored, dicomweb-client's retrieveInstanceRendered.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test, type TestContext } from "node:test";
import dicomweb from "dicomweb-client";
import sharp, { type Metadata } from "sharp";
import { parseRenderParams, renderCacheKey } from "../../src/codec/render-params.js";
import { cacheFileName } from "../../src/dicomweb/disk-cache.js";
import { readParts } from "../../src/http/multipart.js";
import {
  cacheFiles as cacheFilesOf,
  httpRequest,
  type HttpResponse,
  type InProcessServer,
  multipartBody,
  reasonOf,
  sha256,
  startInProcess,
} from "../helpers/archive-harness.js";
import { PYDICOM_DATA, PYTHON, requireTools, run, toolsAvailable, TOOLS } from "../helpers/tools.js";

const require = createRequire(import.meta.url);
(globalThis as Record<string, unknown>).XMLHttpRequest ??= require("xhr2");

// ---------------------------------------------------------------------------------------------
// Fixtures

/**
 * Study R: series A holds mono8 (256×256 8-bit, #1), rgb8 (64×64 RGB, #2), mono8b (256×200, #3);
 * series B holds ct3 (3 frames of CT_small's 16-bit pixels, offsets 0, +300, -300). Outside it:
 * CT_small as shipped, and its JPEG 2000 lossless copy (GDCM, new instance UID).
 */
const PY_FIXTURES = `
import sys, copy, json, numpy as np, pydicom
from pydicom.uid import generate_uid, ExplicitVRLittleEndian
out, ct = sys.argv[1], pydicom.dcmread(sys.argv[2])
study, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
uids = {}
def make(name, pixels, bits, signed, series, number, samples=1, pi="MONOCHROME2", frames=None, keep_ct=False):
    ds = copy.deepcopy(ct)
    if not keep_ct:
        for k in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth", "PixelPaddingValue"):
            if k in ds: del ds[k]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, pi
    if samples > 1: ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if samples > 1 else pixels.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 1 if signed else 0
    if frames: ds.NumberOfFrames = frames
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
    ds.InstanceNumber = number
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(f"{out}/{name}.dcm", write_like_original=False)
y, x = np.mgrid[0:256, 0:256]
make("mono8", np.clip(np.round(128 + 90 * np.sin(x / 23.0) * np.cos(y / 31.0)), 0, 255).astype(np.uint8), 8, False, series_a, 1)
y, x = np.mgrid[0:64, 0:64]
make("rgb8", np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8), 8, False, series_a, 2, samples=3, pi="RGB")
y, x = np.mgrid[0:200, 0:256]
make("mono8b", ((x + y) % 256).astype(np.uint8), 8, False, series_a, 3)
base = ct.pixel_array.astype(np.int32)
make("ct3", np.stack([np.clip(base + d, -32768, 32767) for d in (0, 300, -300)]).astype(np.int16), 16, True, series_b, 1, frames=3, keep_ct=True)
`;

const PY_UIDS = `
import sys, json, pydicom
print(json.dumps({p: dict(sop=str(d.SOPInstanceUID), study=str(d.StudyInstanceUID), series=str(d.SeriesInstanceUID),
      rows=int(d.Rows), columns=int(d.Columns), frames=int(d.get("NumberOfFrames", 1) or 1)) for p, d in ((p, pydicom.dcmread(p)) for p in sys.argv[1:])}))
`;

interface Fixture {
  name: string;
  path: string;
  bytes: Buffer;
  sop: string;
  study: string;
  series: string;
  rows: number;
  columns: number;
  frames: number;
}

const TOOLS_USED = [TOOLS.pydicom, TOOLS.dcmj2pnm, TOOLS.gdcmconv];

let work = "";
let ready = false;
let main: InProcessServer;
const fixtures = new Map<string, Fixture>();
const cleanups: Array<() => unknown> = [];

function fixture(name: string): Fixture {
  const f = fixtures.get(name);
  assert.ok(f, `fixture ${name} was not built`);
  return f;
}

function buildFixtures(): void {
  work = mkdtempSync(join(tmpdir(), "voxelgate-rendered-routes-"));
  const ct = join(work, "ct.dcm");
  copyFileSync(join(PYDICOM_DATA, "test_files", "CT_small.dcm"), ct);
  run(PYTHON, ["-c", PY_FIXTURES, work, ct]);
  const ctJ2k = join(work, "ct_j2k.dcm");
  run("gdcmconv", ["--j2k", ct, ctJ2k]);
  run("dcmodify", ["-nb", "-gin", ctJ2k]);
  const paths: Record<string, string> = { ct, ct_j2k: ctJ2k };
  for (const name of ["mono8", "rgb8", "mono8b", "ct3"]) paths[name] = join(work, `${name}.dcm`);
  const uids = JSON.parse(run(PYTHON, ["-c", PY_UIDS, ...Object.values(paths)]).toString("utf8")) as Record<
    string,
    Omit<Fixture, "name" | "path" | "bytes">
  >;
  for (const [name, path] of Object.entries(paths)) {
    const u = uids[path];
    assert.ok(u, `pydicom read ${path}`);
    fixtures.set(name, { name, path, bytes: readFileSync(path), ...u });
  }
  ready = true;
}

function need(t: TestContext): boolean {
  if (!requireTools(t, ...TOOLS_USED)) return false;
  assert.ok(ready, "fixtures were built and stored");
  return true;
}

before(async () => {
  if (!toolsAvailable(...TOOLS_USED)) return;
  buildFixtures();
  main = await startInProcess({ after: (fn) => cleanups.push(fn) }, { codecThreads: 2 });
  const { body, contentType } = multipartBody([...fixtures.values()].map((f) => f.bytes));
  const res = await httpRequest(`${main.dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": contentType, accept: "application/dicom+json" },
    body,
  });
  assert.equal(res.status, 200, `STOW of the fixtures: ${res.text().slice(0, 500)}`);
});

after(async () => {
  for (const fn of cleanups) await fn();
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Helpers

const studyUrl = (f: Fixture): string => `${main.dicomweb}/studies/${f.study}`;
const seriesUrl = (f: Fixture): string => `${studyUrl(f)}/series/${f.series}`;
const instanceUrl = (f: Fixture): string => `${seriesUrl(f)}/instances/${f.sop}`;

const get = (url: string, accept?: string): Promise<HttpResponse> => httpRequest(url, { headers: accept === undefined ? {} : { accept } });

/** Decodes a PNG as stored: grey stays one channel. */
async function decodePng(png: Buffer | string): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const stored = (await sharp(png).metadata()).channels;
  const img = stored === 1 ? sharp(png).extractChannel(0) : sharp(png);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** Largest difference of the first channel (DCMTK may write grey as RGB). */
function maxDifference(
  a: { data: Buffer; width: number; height: number; channels: number },
  b: { data: Buffer; width: number; height: number; channels: number },
): number {
  assert.deepEqual([a.width, a.height], [b.width, b.height], "image size");
  let max = 0;
  for (let i = 0; i < a.width * a.height; i++) {
    max = Math.max(max, Math.abs((a.data[i * a.channels] as number) - (b.data[i * b.channels] as number)));
  }
  return max;
}

/** An image answer: 200, the Content-Type, and what sharp finds in the body. */
async function image(res: HttpResponse, mediaType: string, what: string): Promise<Metadata> {
  assert.equal(res.status, 200, `${what}: ${res.text().slice(0, 300)}`);
  assert.equal(String(res.headers["content-type"]).split(";")[0], mediaType, `${what}: Content-Type`);
  const meta = await sharp(res.body, { animated: true }).metadata();
  assert.equal(meta.format, mediaType.split("/")[1], `${what}: the body is ${mediaType}`);
  return meta;
}

async function parts(res: HttpResponse): Promise<Array<{ contentType: string; bytes: Buffer }>> {
  const out: Array<{ contentType: string; bytes: Buffer }> = [];
  for await (const part of readParts(Readable.from([res.body]), String(res.headers["content-type"]))) {
    const chunks: Buffer[] = [];
    for await (const c of part.stream) chunks.push(c as Buffer);
    out.push({ contentType: part.contentType, bytes: Buffer.concat(chunks) });
  }
  return out;
}

async function cacheLookups(): Promise<(cache: string, result: "hit" | "miss") => number> {
  const res = await httpRequest(`${main.url}metrics`);
  assert.equal(res.status, 200);
  const values = new Map<string, number>();
  for (const line of res.text().split("\n")) {
    const m = /^voxelgate_cache_lookups_total\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[1] as string).matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    values.set(`${labels.cache}/${labels.result}`, Number(m[2]));
  }
  return (cache, result) => values.get(`${cache}/${result}`) ?? 0;
}

const cacheFiles = (which: "native" | "rendered"): string[] => cacheFilesOf(main.dataDir, which);

// ---------------------------------------------------------------------------------------------
// Tests

test("CT rendered with window=40,400,linear (instance and frame 1, PNG) matches dcmj2pnm +Ww 40 400 within 2; the JPEG 2000 copy renders the same", async (t) => {
  if (!need(t)) return;
  const ct = fixture("ct");
  const reference = join(work, "ct.dcmj2pnm.png");
  run("dcmj2pnm", ["--write-png", "+Ww", "40", "400", ct.path, reference]);
  const ref = await decodePng(reference);
  const renders: Buffer[] = [];
  for (const url of [`${instanceUrl(ct)}/rendered`, `${instanceUrl(ct)}/frames/1/rendered`]) {
    const res = await get(`${url}?window=40,400,linear`, "image/png");
    const meta = await image(res, "image/png", url);
    assert.deepEqual([meta.width, meta.height], [ct.columns, ct.rows]);
    const diff = maxDifference(await decodePng(res.body), ref);
    assert.ok(diff <= 2, `${url}: max difference to dcmj2pnm ${diff} > 2`);
    renders.push(res.body);
  }
  const j2k = await get(`${instanceUrl(fixture("ct_j2k"))}/rendered?window=40,400,linear`, "image/png");
  await image(j2k, "image/png", "JPEG 2000 copy");
  assert.equal(maxDifference(await decodePng(j2k.body), await decodePng(renders[0] as Buffer)), 0, "lossless copy renders identically");
  // Another window gives another image (the parameter is used).
  const other = await get(`${instanceUrl(ct)}/rendered?window=1000,200,linear`, "image/png");
  assert.ok(maxDifference(await decodePng(other.body), ref) > 50, "window=1000,200 differs from 40,400");
});

test("rendered: JPEG when Accept is absent or */*; PNG and JPEG on request; 406 for a type that is not an image", async (t) => {
  if (!need(t)) return;
  const f = fixture("mono8");
  for (const accept of [undefined, "*/*", "image/*", "image/jpeg"]) {
    const meta = await image(await get(`${instanceUrl(f)}/rendered`, accept), "image/jpeg", `Accept ${accept}`);
    assert.deepEqual([meta.width, meta.height], [256, 256]);
  }
  await image(await get(`${instanceUrl(f)}/rendered`, "image/png, image/jpeg;q=0.5"), "image/png", "png preferred");
  const refused = await get(`${instanceUrl(f)}/rendered`, "application/dicom");
  assert.equal(refused.status, 406);
  assert.match(reasonOf(refused), /image\/jpeg/);
});

test("rendered GIF of a 3-frame instance has 3 pages; one frame's GIF has 1; frames/1,3/rendered is multipart with 2 images; frame 4 → 404", async (t) => {
  if (!need(t)) return;
  const ct3 = fixture("ct3");
  const all = await image(await get(`${instanceUrl(ct3)}/rendered`, "image/gif"), "image/gif", "instance GIF");
  assert.equal(all.pages, 3, "one page per frame");
  const one = await image(await get(`${instanceUrl(ct3)}/frames/2/rendered`, "image/gif"), "image/gif", "frame GIF");
  assert.equal(one.pages ?? 1, 1);
  const two = await get(`${instanceUrl(ct3)}/frames/1,3/rendered?window=40,400,linear`, "image/png");
  assert.equal(two.status, 200, two.text().slice(0, 300));
  assert.match(String(two.headers["content-type"]), /^multipart\/related/);
  const list = await parts(two);
  assert.equal(list.length, 2);
  const [first, third] = await Promise.all(list.map((p) => decodePng(p.bytes)));
  assert.ok(first && third && maxDifference(first, third) > 50, "frames 1 and 3 (pixels 600 apart) are different images under one window");
  const missing = await get(`${instanceUrl(ct3)}/frames/4/rendered`, "image/png");
  assert.equal(missing.status, 404, missing.text().slice(0, 200));
});

test("rendered: viewport=64,64 gives 64×64; quality=10 is smaller than quality=95; window=abc and quality=0 → 400 with a reason", async (t) => {
  if (!need(t)) return;
  const f = fixture("mono8");
  const small = await image(await get(`${instanceUrl(f)}/rendered?viewport=64,64`, "image/jpeg"), "image/jpeg", "viewport");
  assert.deepEqual([small.width, small.height], [64, 64]);
  const low = await get(`${instanceUrl(f)}/rendered?quality=10`, "image/jpeg");
  const high = await get(`${instanceUrl(f)}/rendered?quality=95`, "image/jpeg");
  await image(low, "image/jpeg", "quality 10");
  await image(high, "image/jpeg", "quality 95");
  assert.ok(low.body.length < high.body.length, `quality=10 (${low.body.length} bytes) < quality=95 (${high.body.length} bytes)`);
  for (const [query, word] of [
    ["window=abc", /window/i],
    ["quality=0", /quality/i],
    ["viewport=0,0", /viewport/i],
  ] as const) {
    const bad = await get(`${instanceUrl(f)}/rendered?${query}`, "image/jpeg");
    assert.equal(bad.status, 400, `${query}: ${bad.text().slice(0, 200)}`);
    assert.match(reasonOf(bad), word, `${query}: the reason names the parameter`);
  }
});

test("study and series rendered: multipart/related with one image per instance", async (t) => {
  if (!need(t)) return;
  const mono = fixture("mono8");
  for (const [url, count] of [
    [`${studyUrl(mono)}/rendered`, 4],
    [`${seriesUrl(mono)}/rendered`, 3],
    [`${seriesUrl(fixture("ct3"))}/rendered`, 1],
  ] as const) {
    const res = await get(url, "image/png");
    assert.equal(res.status, 200, `${url}: ${res.text().slice(0, 300)}`);
    assert.match(String(res.headers["content-type"]), /^multipart\/related/);
    assert.match(String(res.headers["content-type"]), /type="?image\/png/);
    const list = await parts(res);
    assert.equal(list.length, count, `${url}: one image per instance`);
    const sizes = [];
    for (const p of list) {
      assert.equal(p.contentType.split(";")[0], "image/png");
      const meta = await sharp(p.bytes).metadata();
      assert.equal(meta.format, "png");
      sizes.push(`${meta.width}x${meta.height}`);
    }
    if (count === 3) assert.deepEqual(sizes.sort(), ["256x200", "256x256", "64x64"].sort(), "each instance's own image");
  }
});

test("thumbnails at study, series, instance and frame level are small images (≤ 128 px)", async (t) => {
  if (!need(t)) return;
  const mono = fixture("mono8");
  const ct3 = fixture("ct3");
  for (const url of [
    `${studyUrl(mono)}/thumbnail`,
    `${seriesUrl(mono)}/thumbnail`,
    `${instanceUrl(mono)}/thumbnail`,
    `${instanceUrl(fixture("mono8b"))}/thumbnail`,
    `${instanceUrl(ct3)}/frames/2/thumbnail`,
  ]) {
    const meta = await image(await get(url), "image/jpeg", url);
    assert.ok((meta.width ?? 0) > 0 && (meta.width ?? 0) <= 128 && (meta.height ?? 0) <= 128, `${url}: ${meta.width}×${meta.height}`);
    assert.ok((meta.pages ?? 1) === 1, "a thumbnail is one image");
  }
  const mono8b = await sharp((await get(`${instanceUrl(fixture("mono8b"))}/thumbnail`)).body).metadata();
  assert.deepEqual([mono8b.width, mono8b.height], [128, 100], "256×200 keeps its aspect ratio");
  const png = await image(await get(`${instanceUrl(mono)}/thumbnail`, "image/png"), "image/png", "PNG thumbnail");
  assert.deepEqual([png.width, png.height], [128, 128]);
});

test("rendered cache: kept in memory (written under <data>/cache/rendered only when it leaves memory), the second request is a hit with the same bytes, other parameters another entry", async (t) => {
  if (!need(t)) return;
  const f = fixture("rgb8");
  const url = `${instanceUrl(f)}/rendered?quality=77`;
  const nativeBefore = cacheFiles("native");
  const lookups0 = await cacheLookups();
  const first = await get(url, "image/jpeg");
  await image(first, "image/jpeg", "first");
  const lookups1 = await cacheLookups();
  assert.equal(lookups1("rendered", "miss") - lookups0("rendered", "miss"), 1, "first request: a rendered miss");
  // The entry's file name: after (instance content hash, frame 1, every render parameter).
  const fileFor = (quality: number) =>
    cacheFileName(`${sha256(f.bytes)}/1/${renderCacheKey(parseRenderParams([["quality", String(quality)]]), "image/jpeg")}`);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(
    cacheFiles("rendered").filter((p) => p.endsWith(fileFor(77))),
    [],
    "while in memory the image is not written (the disk cache's own test covers the writing on eviction)",
  );
  const second = await get(url, "image/jpeg");
  const lookups2 = await cacheLookups();
  assert.ok(second.body.equals(first.body), "same image");
  assert.equal(lookups2("rendered", "hit") - lookups1("rendered", "hit"), 1, "second request: a rendered hit");
  assert.equal(lookups2("rendered", "miss") - lookups1("rendered", "miss"), 0);
  await image(await get(`${instanceUrl(f)}/rendered?quality=78`, "image/jpeg"), "image/jpeg", "other quality");
  assert.equal((await cacheLookups())("rendered", "miss") - lookups2("rendered", "miss"), 1, "other parameters: another entry");
  assert.deepEqual(cacheFiles("native"), nativeBefore, "rendering never writes to the native cache");
  assert.equal(
    lookups2("native", "hit") + lookups2("native", "miss"),
    lookups0("native", "hit") + lookups0("native", "miss"),
    "nor looks there",
  );
});

test("a transfer-syntax parameter in a rendered request's Accept changes nothing: same image, no transfer-syntax in the answer, never the stored frame", async (t) => {
  if (!need(t)) return;
  const j2k = fixture("ct_j2k");
  const plain = await get(`${instanceUrl(j2k)}/rendered`, "image/jpeg");
  await image(plain, "image/jpeg", "plain");
  for (const accept of [
    "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.90",
    "image/jpeg; transfer-syntax=*",
    'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50',
  ]) {
    const res = await get(`${instanceUrl(j2k)}/rendered`, accept);
    await image(res, "image/jpeg", accept);
    assert.ok(!/transfer-syntax/i.test(String(res.headers["content-type"])), `${accept}: ${res.headers["content-type"]}`);
    assert.ok(res.body.equals(plain.body), `${accept}: the same image as without the parameter`);
  }
  const png = await get(`${instanceUrl(j2k)}/frames/1/rendered`, "image/png; transfer-syntax=1.2.840.10008.1.2.1");
  await image(png, "image/png", "frame PNG with transfer-syntax");
  // A JPEG 2000 instance asked for image/jp2 on the rendered resource: not a rendered type, and never the stored codestream.
  const jp2 = await get(`${instanceUrl(j2k)}/rendered`, "image/jp2");
  assert.equal(jp2.status, 406, `image/jp2 on /rendered: ${jp2.status} ${String(jp2.headers["content-type"])}`);
});

test("dicomweb-client: retrieveInstanceRendered returns an image (JPEG by default, PNG when asked, viewport honoured)", async (t) => {
  if (!need(t)) return;
  interface Client {
    retrieveInstanceRendered(options: {
      studyInstanceUID: string;
      seriesInstanceUID: string;
      sopInstanceUID: string;
      mediaTypes?: Array<{ mediaType: string }>;
      queryParams?: Record<string, string>;
    }): Promise<ArrayBuffer | ArrayBuffer[]>;
  }
  // 0.11.3 resolves an arraybuffer response as a one-element list.
  const bytes = (r: ArrayBuffer | ArrayBuffer[]): Buffer => {
    const list = Array.isArray(r) ? r : [r];
    assert.equal(list.length, 1, "one image");
    return Buffer.from(new Uint8Array(list[0] as ArrayBuffer));
  };
  const client = new dicomweb.api.DICOMwebClient({ url: main.dicomweb, singlepart: false, verbose: false }) as unknown as Client;
  const ct = fixture("ct");
  const ref = { studyInstanceUID: ct.study, seriesInstanceUID: ct.series, sopInstanceUID: ct.sop };
  const jpeg = bytes(await client.retrieveInstanceRendered(ref));
  const meta = await sharp(jpeg).metadata();
  assert.equal(meta.format, "jpeg");
  assert.deepEqual([meta.width, meta.height], [128, 128]);
  const png = bytes(
    await client.retrieveInstanceRendered({ ...ref, mediaTypes: [{ mediaType: "image/png" }], queryParams: { viewport: "32,32" } }),
  );
  const pngMeta = await sharp(png).metadata();
  assert.equal(pngMeta.format, "png");
  assert.deepEqual([pngMeta.width, pngMeta.height], [32, 32]);
});
