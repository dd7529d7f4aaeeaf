/**
 * Pixels on the retrieve paths against the real server (startInProcess on a port) with real DICOM
 * files: frames transcoded into every compressed media type and decoded back by DCMTK, GDCM or
 * OpenJPEG (never by the decoder that made them); compressed sources decoded, sent as stored,
 * negotiated by q-value, refused with 406; one frame of a 1,000-frame RLE instance; instance
 * retrieve transcoded to a named syntax (dcmftest, Basic Offset Table, one fragment per frame,
 * lossy attributes, checked with pydicom); the native cache (files, /metrics, one computation for
 * ten identical requests); dicomweb-client's frames with an image/jls media type.
 * Rendered images and thumbnails are in rendered-routes.test.ts.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test, type TestContext } from "node:test";
import dicomweb from "dicomweb-client";
import { encapsulateFrames, readDicom, Tags, writePart10 } from "../../src/dicom/index.js";
import { cacheFileName } from "../../src/dicomweb/disk-cache.js";
import { readParts } from "../../src/http/multipart.js";
import { openjpegDecode } from "../codec/corpus.js";
import {
  cacheFiles as cacheFilesOf,
  httpRequest,
  type HttpResponse,
  type InProcessServer,
  multipartBody,
  reasonOf,
  settledCacheFiles,
  sha256,
  startInProcess,
  syntheticInstance,
} from "../helpers/archive-harness.js";
import { PYDICOM_DATA, PYTHON, requireTools, run, toolsAvailable, TOOLS } from "../helpers/tools.js";

const require = createRequire(import.meta.url);
(globalThis as Record<string, unknown>).XMLHttpRequest ??= require("xhr2");

const TS = {
  ELE: "1.2.840.10008.1.2.1",
  BASELINE: "1.2.840.10008.1.2.4.50",
  SV1: "1.2.840.10008.1.2.4.70",
  JLS: "1.2.840.10008.1.2.4.80",
  J2K: "1.2.840.10008.1.2.4.90",
  HTJ2K: "1.2.840.10008.1.2.4.201",
  RLE: "1.2.840.10008.1.2.5",
} as const;

// ---------------------------------------------------------------------------------------------
// Fixtures: generated with pydicom (from CT_small's header), compressed by DCMTK and GDCM

/**
 * ct3: 3 frames of CT_small's 16-bit signed pixels (offsets 0, +50, -50); mono8: 256×256 8-bit;
 * rgb8: 64×64 8-bit RGB; big: 1,000 frames of 16×16 8-bit, each frame distinct (its number in the
 * first two bytes). Every file has its own study, series and instance UIDs.
 */
const PY_FIXTURES = `
import sys, copy, numpy as np, pydicom
from pydicom.uid import generate_uid, ExplicitVRLittleEndian
out, ct = sys.argv[1], pydicom.dcmread(sys.argv[2])
def make(name, pixels, bits, signed, samples=1, pi="MONOCHROME2", frames=None, keep_ct=False):
    ds = copy.deepcopy(ct)
    if not keep_ct:
        for k in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth", "PixelPaddingValue"):
            if k in ds: del ds[k]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, pi
    if samples > 1: ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if samples > 1 else pixels.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 1 if signed else 0
    if frames: ds.NumberOfFrames = frames
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(f"{out}/{name}.dcm", write_like_original=False)
base = ct.pixel_array.astype(np.int32)
make("ct3", np.stack([np.clip(base + d, -32768, 32767) for d in (0, 50, -50)]).astype(np.int16), 16, True, frames=3, keep_ct=True)
y, x = np.mgrid[0:256, 0:256]
mono = 128 + 90 * np.sin(x / 23.0) * np.cos(y / 31.0) + np.where(np.hypot(x - 128, y - 128) < 50, 30, 0)
make("mono8", np.clip(np.round(mono), 0, 255).astype(np.uint8), 8, False)
y, x = np.mgrid[0:64, 0:64]
rgb = np.stack([x * 4, y * 4, (x + y) * 2], -1)
rgb[16:32, 16:48] = [220, 30, 40]
make("rgb8", np.clip(rgb, 0, 255).astype(np.uint8), 8, False, samples=3, pi="RGB")
big = np.zeros((1000, 16, 16), np.uint8)
for f in range(1000):
    big[f] = ((np.arange(256) * 3 + f * 11) & 0xFF).reshape(16, 16)
    big[f, 0, 0], big[f, 0, 1] = f >> 8, f & 0xFF
make("big", big, 8, False, frames=1000)
`;

/** For each file: UIDs, transfer syntax, and each frame's bytes as stored (native: little endian samples; encapsulated: pydicom's frame). */
const PY_ORACLE = `
import sys, json, base64, pydicom
from pydicom.encaps import generate_pixel_data_frame
out = {}
for p in sys.argv[1:]:
    d = pydicom.dcmread(p)
    n = int(d.get("NumberOfFrames", 1) or 1)
    ts = d.file_meta.TransferSyntaxUID
    if d["PixelData"].is_undefined_length:
        frames = list(generate_pixel_data_frame(d.PixelData, n))
    else:
        size = d.Rows * d.Columns * d.SamplesPerPixel * (d.BitsAllocated // 8)
        frames = [d.PixelData[i * size:(i + 1) * size] for i in range(n)]
    out[p] = dict(sop=str(d.SOPInstanceUID), study=str(d.StudyInstanceUID), series=str(d.SeriesInstanceUID), ts=str(ts),
                  frames=[base64.b64encode(f).decode() for f in frames])
print(json.dumps(out))
`;

/** What a retrieved Part 10 file holds: syntax, Image Pixel and lossy attributes, Basic Offset Table, fragment lengths. */
const PY_INSPECT = `
import sys, json, pydicom
from pydicom.encaps import generate_pixel_data_fragment, get_frame_offsets
from pydicom.filebase import DicomBytesIO
d = pydicom.dcmread(sys.argv[1])
ts = d.file_meta.TransferSyntaxUID
bot, fragments = None, None
# pydicom 2.3 does not know the HTJ2K UIDs: encapsulated is told by the undefined length.
if d["PixelData"].is_undefined_length:
    fp = DicomBytesIO(d.PixelData)
    fp.is_little_endian = True
    has, offsets = get_frame_offsets(fp)
    bot = offsets if has else []
    fragments = [len(f) for f in generate_pixel_data_fragment(fp)]
v = lambda k: [str(x) for x in d.data_element(k).value] if k in d and d.data_element(k).VM > 1 else ([str(d.data_element(k).value)] if k in d else [])
print(json.dumps(dict(ts=str(ts), pi=str(d.PhotometricInterpretation), spp=int(d.SamplesPerPixel), frames=int(d.get("NumberOfFrames", 1) or 1),
    lossy=str(d.get("LossyImageCompression", "")), ratio=v("LossyImageCompressionRatio"), method=v("LossyImageCompressionMethod"),
    bot=bot, fragments=fragments)))
`;

interface Fixture {
  name: string;
  path: string;
  bytes: Buffer;
  sop: string;
  study: string;
  series: string;
  ts: string;
  /** Each frame as stored. */
  frames: Buffer[];
}

const TOOLS_USED = [
  TOOLS.pydicom,
  TOOLS.dcmftest,
  TOOLS.dcmcrle,
  TOOLS.dcmdrle,
  TOOLS.dcmcjpeg,
  TOOLS.dcmdjpeg,
  TOOLS.dcmcjpls,
  TOOLS.dcmdjpls,
  TOOLS.gdcmconv,
];

let work = "";
let ready = false;
let main: InProcessServer;
const fixtures = new Map<string, Fixture>();
/** The same pixels as each compressed fixture, decoded by GDCM (gdcmconv --raw), frame by frame. */
const gdcmRaw = new Map<string, Buffer[]>();
const cleanups: Array<() => unknown> = [];

function fixture(name: string): Fixture {
  const f = fixtures.get(name);
  assert.ok(f, `fixture ${name} was not built`);
  return f;
}

function oracleOf(paths: string[]): Record<string, { sop: string; study: string; series: string; ts: string; frames: string[] }> {
  return JSON.parse(run(PYTHON, ["-c", PY_ORACLE, ...paths]).toString("utf8")) as Record<
    string,
    { sop: string; study: string; series: string; ts: string; frames: string[] }
  >;
}

/** Compressed variants of CT_small (new UIDs) and of the 1,000-frame file. */
const COMPRESSED: Array<{ name: string; source: string; tool: string; args: string[] }> = [
  { name: "ct_jls", source: "ct", tool: "dcmcjpls", args: [] },
  { name: "ct_j2k", source: "ct", tool: "gdcmconv", args: ["--j2k"] },
  { name: "ct_rle", source: "ct", tool: "dcmcrle", args: [] },
  { name: "ct_sv1", source: "ct", tool: "dcmcjpeg", args: ["+e1"] },
  { name: "big_rle", source: "big", tool: "dcmcrle", args: [] },
];

function buildFixtures(): void {
  work = mkdtempSync(join(tmpdir(), "voxelgate-pixels-routes-"));
  const ct = join(work, "ct.dcm");
  copyFileSync(join(PYDICOM_DATA, "test_files", "CT_small.dcm"), ct);
  run(PYTHON, ["-c", PY_FIXTURES, work, ct]);
  const paths: Record<string, string> = { ct, ct3: join(work, "ct3.dcm"), mono8: join(work, "mono8.dcm"), rgb8: join(work, "rgb8.dcm") };
  paths.big = join(work, "big.dcm");
  for (const c of COMPRESSED) {
    const path = join(work, `${c.name}.dcm`);
    run(c.tool, [...c.args, paths[c.source] as string, path]);
    run("dcmodify", ["-nb", "-gst", "-gse", "-gin", path]);
    paths[c.name] = path;
    const raw = join(work, `${c.name}.gdcm-raw.dcm`);
    run("gdcmconv", ["--raw", path, raw]);
    paths[`${c.name}.raw`] = raw;
  }
  const oracle = oracleOf(Object.values(paths));
  for (const [name, path] of Object.entries(paths)) {
    const o = oracle[path];
    assert.ok(o, `pydicom read ${path}`);
    const frames = o.frames.map((b) => Buffer.from(b, "base64"));
    if (name.endsWith(".raw")) {
      gdcmRaw.set(name.slice(0, -4), frames);
      continue;
    }
    fixtures.set(name, { name, path, bytes: readFileSync(path), sop: o.sop, study: o.study, series: o.series, ts: o.ts, frames });
  }
  ready = true;
}

/** Skips (or fails under CI) when a tool is missing. */
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

const instanceUrl = (s: InProcessServer, f: Fixture): string => `${s.dicomweb}/studies/${f.study}/series/${f.series}/instances/${f.sop}`;
const frameUrl = (s: InProcessServer, f: Fixture, n: number | string): string => `${instanceUrl(s, f)}/frames/${n}`;

interface Part {
  contentType: string;
  location?: string;
  bytes: Buffer;
}

async function parts(res: HttpResponse): Promise<Part[]> {
  const out: Part[] = [];
  for await (const part of readParts(Readable.from([res.body]), String(res.headers["content-type"]))) {
    const chunks: Buffer[] = [];
    for await (const c of part.stream) chunks.push(c as Buffer);
    out.push({ contentType: part.contentType, location: part.contentLocation, bytes: Buffer.concat(chunks) });
  }
  return out;
}

/** The single part of a multipart/related frames response (asserts 200 and one part). */
async function onePart(res: HttpResponse, what: string): Promise<Part> {
  assert.equal(res.status, 200, `${what}: ${res.text().slice(0, 400)}`);
  assert.match(String(res.headers["content-type"]), /^multipart\/related/, what);
  const list = await parts(res);
  assert.equal(list.length, 1, `${what}: one part`);
  return list[0] as Part;
}

/** `type/subtype` and the transfer-syntax parameter of a Content-Type value. */
function describe(contentType: string): { mediaType: string; syntax?: string } {
  const [type, ...params] = contentType.split(";").map((s) => s.trim());
  const syntax = params
    .find((p) => p.toLowerCase().startsWith("transfer-syntax="))
    ?.slice("transfer-syntax=".length)
    .replace(/"/g, "");
  return { mediaType: (type ?? "").toLowerCase(), syntax };
}

const getFrame = (s: InProcessServer, f: Fixture, n: number, accept: string): Promise<HttpResponse> =>
  httpRequest(frameUrl(s, f, n), { headers: { accept } });

/** Counter values of voxelgate_cache_lookups_total by "cache/result". */
async function cacheLookups(s: InProcessServer): Promise<(cache: string, result: "hit" | "miss") => number> {
  const res = await httpRequest(`${s.url}metrics`);
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

const cacheFiles = (s: InProcessServer, which: "native" | "rendered"): string[] => cacheFilesOf(s.dataDir, which);
const cacheFilesSettle = (s: InProcessServer, which: "native" | "rendered", count: number): Promise<string[]> =>
  settledCacheFiles(s.dataDir, which, count);

let counter = 0;
/** Writes `frames` encapsulated in `syntax` with `template`'s header (our writer), for a DCMTK/GDCM decoder. */
function wrap(template: Fixture, frames: Buffer[], syntax: string, header: Record<number, number> = {}): string {
  const ds = readDicom(template.bytes).dataset;
  ds.set({ tag: Tags.PixelData, vr: "OB", encapsulated: encapsulateFrames(frames), position: -1 });
  for (const [tag, value] of Object.entries(header)) {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value);
    ds.set({ tag: Number(tag), vr: "US", bytes: b, position: -1 });
  }
  const path = join(work, `wrapped-${counter++}.dcm`);
  writeFileSync(path, writePart10(ds, { transferSyntaxUid: syntax }));
  return path;
}

/** The native pixel data of a decoded file (the decoder's output, read back with our reader: a plain explicit VR LE file). */
function nativePixels(path: string): Buffer {
  const read = readDicom(readFileSync(path));
  assert.equal(read.error, undefined, `${path} reads`);
  const bytes = read.dataset.get(Tags.PixelData)?.bytes;
  assert.ok(bytes, `${path} has native pixel data`);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Decodes encapsulated frames with an independent decoder: DCMTK for JPEG, JPEG-LS and RLE, GDCM for JPEG 2000, OpenJPEG (WASM) for HTJ2K. */
async function decodeIndependently(template: Fixture, frames: Buffer[], syntax: string): Promise<Buffer> {
  if (syntax === TS.HTJ2K) {
    const decoded = await Promise.all(frames.map((f) => openjpegDecode(f)));
    return Buffer.concat(decoded.map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength)));
  }
  const input = wrap(template, frames, syntax);
  const output = `${input}.decoded.dcm`;
  const tool: Record<string, [string, string[]]> = {
    [TS.JLS]: ["dcmdjpls", []],
    [TS.RLE]: ["dcmdrle", []],
    [TS.SV1]: ["dcmdjpeg", []],
    [TS.BASELINE]: ["dcmdjpeg", []],
    [TS.J2K]: ["gdcmconv", ["--raw"]],
  };
  const [command, args] = tool[syntax] ?? ["gdcmconv", ["--raw"]];
  run(command, [...args, input, output]);
  return nativePixels(output);
}

/** Largest and mean absolute difference of two 8-bit sample buffers of the same length. */
function difference(a: Buffer, b: Buffer): { max: number; mean: number } {
  assert.equal(a.length, b.length, "same number of bytes");
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / Math.max(1, a.length) };
}

/** Checks the bytes are what their media type says (markers of the codestream). */
function looksLike(bytes: Buffer, syntax: string): void {
  const hex = bytes.toString("hex");
  switch (syntax) {
    case TS.JLS:
      assert.equal(hex.slice(0, 4), "ffd8", "JPEG-LS starts with SOI");
      assert.ok(hex.includes("fff7"), "JPEG-LS has SOF55");
      break;
    case TS.SV1:
      assert.equal(hex.slice(0, 4), "ffd8", "JPEG starts with SOI");
      assert.ok(hex.includes("ffc3"), "lossless JPEG has SOF3");
      break;
    case TS.BASELINE:
      assert.equal(hex.slice(0, 4), "ffd8", "JPEG starts with SOI");
      assert.ok(hex.includes("ffc0"), "baseline JPEG has SOF0");
      break;
    case TS.J2K:
    case TS.HTJ2K: {
      const start = bytes.indexOf(Buffer.from([0xff, 0x4f, 0xff, 0x51]));
      assert.ok(start >= 0, "a J2K codestream (SOC, SIZ)");
      // HTJ2K codestreams carry a CAP marker (Part 15); classic JPEG 2000 Part 1 ones do not.
      const cap = bytes.subarray(start, start + 200).indexOf(Buffer.from([0xff, 0x50]));
      assert.equal(cap >= 0, syntax === TS.HTJ2K, syntax === TS.HTJ2K ? "HTJ2K has CAP" : "JPEG 2000 Part 1 has no CAP");
      break;
    }
    case TS.RLE:
      assert.equal(bytes.readUInt32LE(4), 64, "RLE header: first segment at 64");
      assert.ok(bytes.readUInt32LE(0) >= 1 && bytes.readUInt32LE(0) <= 15, "RLE header: 1..15 segments");
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Frames of a native 16-bit CT in each compressed media type

const LOSSLESS_TYPES: Array<{ type: string; syntax: string }> = [
  { type: "image/jls", syntax: TS.JLS },
  { type: "image/jp2", syntax: TS.J2K },
  { type: "image/jphc", syntax: TS.HTJ2K },
  { type: "image/dicom-rle", syntax: TS.RLE },
  { type: "image/jpeg", syntax: TS.SV1 },
];

test("frames of a native 16-bit CT as image/jls, jp2, jphc, dicom-rle, jpeg: lossless syntax in the Content-Type, decoded by DCMTK/GDCM/OpenJPEG to the source pixels", async (t) => {
  if (!need(t)) return;
  const ct = fixture("ct");
  const source = ct.frames[0] as Buffer;
  for (const { type, syntax } of LOSSLESS_TYPES) {
    const res = await getFrame(main, ct, 1, `multipart/related; type="${type}"`);
    const part = await onePart(res, type);
    const top = describe(String(res.headers["content-type"]));
    assert.equal(top.mediaType, "multipart/related");
    assert.match(
      String(res.headers["content-type"]),
      new RegExp(`type="?${type.replace("/", "\\/")}"?`),
      `${type}: the response's type parameter`,
    );
    assert.deepEqual(describe(part.contentType), { mediaType: type, syntax }, `${type}: the part says what its bytes are`);
    assert.equal(part.location, frameUrl(main, ct, 1), `${type}: Content-Location`);
    looksLike(part.bytes, syntax);
    const decoded = await decodeIndependently(ct, [part.bytes], syntax);
    assert.ok(decoded.equals(source), `${type}: the independent decoder gives the source pixels back exactly`);
  }
});

test("frames: image/jpeg with transfer-syntax=…4.50 on an 8-bit source is baseline JPEG (lossy, close to the source); without it lossless", async (t) => {
  if (!need(t)) return;
  const mono = fixture("mono8");
  const res = await getFrame(main, mono, 1, `multipart/related; type="image/jpeg"; transfer-syntax=${TS.BASELINE}`);
  const part = await onePart(res, "8-bit as 4.50");
  assert.deepEqual(describe(part.contentType), { mediaType: "image/jpeg", syntax: TS.BASELINE });
  looksLike(part.bytes, TS.BASELINE);
  const decoded = await decodeIndependently(mono, [part.bytes], TS.BASELINE);
  const { max } = difference(decoded, mono.frames[0] as Buffer);
  assert.ok(max <= 16, `dcmdjpeg's decode is close to the source (max difference ${max})`);
  assert.ok(part.bytes.length < (mono.frames[0] as Buffer).length / 2, "baseline JPEG compresses a smooth image");

  // Without naming the lossy syntax, image/jpeg of a lossless source stays lossless.
  const plain = await onePart(await getFrame(main, mono, 1, 'multipart/related; type="image/jpeg"'), "8-bit as image/jpeg");
  assert.equal(describe(plain.contentType).syntax, TS.SV1);
});

test("frames: a named syntax the pixels cannot be encoded in (baseline JPEG of 16-bit CT) → 406 with a reason, not 500", async (t) => {
  if (!need(t)) return;
  // 16-bit samples cannot be baseline JPEG: a 406 naming the problem (the instance retrieve already answers 406 for it).
  const ct = fixture("ct");
  for (const accept of [
    `multipart/related; type="image/jpeg"; transfer-syntax=${TS.BASELINE}`,
    `image/jpeg; transfer-syntax=${TS.BASELINE}`,
  ]) {
    const refused = await getFrame(main, ct, 1, accept);
    assert.equal(refused.status, 406, `${accept} on 16-bit CT: status ${refused.status}, ${refused.text().slice(0, 300)}`);
    assert.match(reasonOf(refused), /1\.2\.840\.10008\.1\.2\.4\.50|baseline|8.bit|16/i);
  }
});

test("frames: a transcoded frame is cached in <data>/cache/native; the second request is a hit (/metrics) with the same bytes", async (t) => {
  if (!need(t)) return;
  const ct = fixture("ct");
  const accept = 'multipart/related; type="image/jls"';
  // Frame 1 as image/jls was made by the first test: make sure it is there (a hit or a miss), then count.
  const warm = await onePart(await getFrame(main, ct, 1, accept), "warm");
  const filesBefore = cacheFiles(main, "native");
  assert.ok(filesBefore.length >= 1, "transcoded frames are files under cache/native");
  const before = await cacheLookups(main);
  const again = await onePart(await getFrame(main, ct, 1, accept), "again");
  const afterLookups = await cacheLookups(main);
  assert.ok(again.bytes.equals(warm.bytes), "the cached frame is the same bytes");
  assert.equal(afterLookups("native", "hit") - before("native", "hit"), 1, "one native cache hit");
  assert.equal(afterLookups("native", "miss") - before("native", "miss"), 0, "no miss");
  assert.deepEqual(cacheFiles(main, "native"), filesBefore, "no new cache file");
  assert.deepEqual(cacheFiles(main, "rendered"), [], "nothing under cache/rendered from a frames request");
});

test("frames: ten identical concurrent requests compute once (one miss, one new cache file, ten equal answers)", async (t) => {
  if (!need(t)) return;
  const ct3 = fixture("ct3");
  const before = await cacheLookups(main);
  const answers = await Promise.all(
    Array.from({ length: 10 }, () => getFrame(main, ct3, 2, 'multipart/related; type="image/jphc"').then((r) => onePart(r, "concurrent"))),
  );
  const afterLookups = await cacheLookups(main);
  assert.equal(afterLookups("native", "miss") - before("native", "miss"), 1, "computed once");
  // The entry's file is named after (instance content hash, frame, syntax); it is written after the answer.
  const name = cacheFileName(`${sha256(ct3.bytes)}/2/${TS.HTJ2K}`);
  for (let i = 0; i < 200 && !cacheFiles(main, "native").some((p) => p.endsWith(name)); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(cacheFiles(main, "native").filter((p) => p.endsWith(name)).length, 1, "one cache file for the key");
  for (const a of answers) assert.ok(a.bytes.equals((answers[0] as Part).bytes), "every answer has the same bytes");
  const decoded = await decodeIndependently(ct3, [(answers[0] as Part).bytes], TS.HTJ2K);
  assert.ok(decoded.equals(ct3.frames[1] as Buffer), "frame 2 (not frame 1) decodes to the source");
  // An eleventh request later is a hit.
  await onePart(await getFrame(main, ct3, 2, 'multipart/related; type="image/jphc"'), "later");
  assert.equal((await cacheLookups(main))("native", "hit") - afterLookups("native", "hit"), 1);
});

// ---------------------------------------------------------------------------------------------
// 2. Compressed sources

const SOURCES = [
  { name: "ct_jls", type: "image/jls" },
  { name: "ct_j2k", type: "image/jp2" },
  { name: "ct_rle", type: "image/dicom-rle" },
  { name: "ct_sv1", type: "image/jpeg" },
];

test("compressed sources (JPEG-LS, JPEG 2000, RLE, JPEG lossless): octet-stream is GDCM's raw pixels; transfer-syntax=* and the own media type are the stored bytes", async (t) => {
  if (!need(t)) return;
  const ct = fixture("ct");
  for (const { name, type } of SOURCES) {
    const f = fixture(name);
    const raw = gdcmRaw.get(name)?.[0];
    assert.ok(raw, `${name}: GDCM reference`);
    assert.ok(raw.equals(ct.frames[0] as Buffer), `${name}: the tools kept CT_small's pixels (lossless)`);

    const single = await getFrame(main, f, 1, "application/octet-stream");
    assert.equal(single.status, 200, `${name}: ${single.text().slice(0, 300)}`);
    assert.deepEqual(describe(String(single.headers["content-type"])), { mediaType: "application/octet-stream", syntax: TS.ELE });
    assert.ok(single.body.equals(raw), `${name}: application/octet-stream equals GDCM's decode`);

    const multi = await onePart(
      await getFrame(main, f, 1, 'multipart/related; type="application/octet-stream"'),
      `${name} multipart octet`,
    );
    assert.ok(multi.bytes.equals(raw), `${name}: multipart octet-stream equals GDCM's decode`);
    assert.equal(describe(multi.contentType).syntax, TS.ELE);

    const stored = await onePart(
      await getFrame(main, f, 1, 'multipart/related; type="application/octet-stream"; transfer-syntax=*'),
      `${name} transfer-syntax=*`,
    );
    assert.equal(describe(stored.contentType).syntax, f.ts, `${name}: transfer-syntax=* names the stored syntax`);
    assert.ok([type, "application/octet-stream"].includes(describe(stored.contentType).mediaType), stored.contentType);
    assert.ok(stored.bytes.equals(f.frames[0] as Buffer), `${name}: transfer-syntax=* gives the stored frame (pydicom's)`);

    const typed = await onePart(await getFrame(main, f, 1, `multipart/related; type="${type}"`), `${name} ${type}`);
    assert.deepEqual(describe(typed.contentType), { mediaType: type, syntax: f.ts });
    assert.ok(typed.bytes.equals(f.frames[0] as Buffer), `${name}: its own media type gives the stored frame`);
  }
});

test("compressed sources: Accept with several ranges and q-values gets the preferred one that can be made; q=0 excludes", async (t) => {
  if (!need(t)) return;
  const ct = fixture("ct");
  const jls = fixture("ct_jls");
  const before = await cacheLookups(main);
  // Preferred and as stored: no transcoding.
  const preferStored = await onePart(
    await getFrame(main, jls, 1, 'multipart/related; type="image/jp2"; q=0.4, multipart/related; type="image/jls"; q=0.9'),
    "jls preferred",
  );
  assert.deepEqual(describe(preferStored.contentType), { mediaType: "image/jls", syntax: TS.JLS });
  assert.ok(preferStored.bytes.equals(jls.frames[0] as Buffer));
  assert.equal((await cacheLookups(main))("native", "miss") - before("native", "miss"), 0, "the stored frame needs no transcoding");

  // The most preferred cannot be made (video): the next one is transcoded.
  const rle = fixture("ct_rle");
  const next = await onePart(
    await getFrame(
      main,
      rle,
      1,
      'multipart/related; type="video/mpeg"; q=1, multipart/related; type="image/jp2"; q=0.5, multipart/related; type="application/octet-stream"; q=0.1',
    ),
    "video refused, jp2 next",
  );
  assert.deepEqual(describe(next.contentType), { mediaType: "image/jp2", syntax: TS.J2K });
  assert.ok(
    (await decodeIndependently(ct, [next.bytes], TS.J2K)).equals(ct.frames[0] as Buffer),
    "the JPEG 2000 frame decodes (GDCM) to the pixels",
  );

  // q=0 means "not acceptable", even for the stored representation.
  const notRle = await onePart(
    await getFrame(main, rle, 1, 'multipart/related; type="image/dicom-rle"; q=0, multipart/related; type="image/jls"; q=0.2'),
    "q=0",
  );
  assert.deepEqual(describe(notRle.contentType), { mediaType: "image/jls", syntax: TS.JLS });

  // Higher q wins regardless of order.
  const order = await onePart(
    await getFrame(
      main,
      rle,
      1,
      'multipart/related; type="application/octet-stream"; q=0.3, multipart/related; type="image/dicom-rle"; q=0.8',
    ),
    "order",
  );
  assert.deepEqual(describe(order.contentType), { mediaType: "image/dicom-rle", syntax: TS.RLE });
});

test("compressed sources: an impossible request (video/mpeg) → 406 whose reason lists what is available", async (t) => {
  if (!need(t)) return;
  for (const name of ["ct_jls", "ct_j2k", "ct"]) {
    const f = fixture(name);
    for (const accept of [
      "video/mpeg",
      'multipart/related; type="video/mpeg"',
      'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.90',
    ]) {
      const res = await getFrame(main, f, 1, accept);
      assert.equal(res.status, 406, `${name} ${accept}: ${res.text().slice(0, 200)}`);
      const reason = reasonOf(res);
      for (const available of ["application/octet-stream", "image/jls", "image/jp2", "image/dicom-rle"]) {
        assert.ok(reason.includes(available), `${name} ${accept}: the reason lists ${available}: ${reason}`);
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------
// 3. One frame of a 1,000-frame instance

test("1,000-frame RLE instance: frame 999 is right (decoded and as stored), and serving it reads that frame, not the pixel data", async (t) => {
  if (!need(t)) return;
  const big = fixture("big_rle");
  const native = fixture("big");
  assert.equal(big.frames.length, 1000);
  const expected = native.frames[998] as Buffer;
  assert.deepEqual([expected[0], expected[1]], [998 >> 8, 998 & 0xff], "the source frame 999 carries its number (998, 0-based)");

  // Count what the server reads from the stored file while it serves frame 999.
  const blobs = main.archive.blobs as unknown as {
    readBytes: (key: string, range: { start: number; end: number }) => Promise<Buffer>;
    read: (key: string, ...rest: unknown[]) => unknown;
  };
  const readBytes = blobs.readBytes;
  const read = blobs.read;
  let bytesRead = 0;
  let streams = 0;
  blobs.readBytes = async (key, range) => {
    const out = await readBytes.call(blobs, key, range);
    bytesRead += out.length;
    return out;
  };
  blobs.read = (key, ...rest) => {
    streams++;
    return read.call(blobs, key, ...rest);
  };
  let decoded: HttpResponse;
  let stored: Part;
  try {
    decoded = await getFrame(main, big, 999, "application/octet-stream");
    stored = await onePart(await getFrame(main, big, 999, 'multipart/related; type="image/dicom-rle"'), "frame 999 as stored");
  } finally {
    blobs.readBytes = readBytes;
    blobs.read = read;
  }
  assert.equal(decoded.status, 200, decoded.text().slice(0, 300));
  assert.ok(decoded.body.equals(expected), "frame 999 decoded equals the source's frame 999");
  assert.ok(decoded.body.equals(gdcmRaw.get("big_rle")?.[998] as Buffer), "and GDCM's decode of frame 999");
  assert.ok(stored.bytes.equals(big.frames[998] as Buffer), "frame 999 as stored equals pydicom's frame 999");
  assert.equal(streams, 0, "no whole-file stream was opened");
  // What may be read: the attributes before the pixel data (once; then kept) and frame 999's fragment, twice.
  const pixelElement = big.bytes.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42]));
  assert.ok(pixelElement > 0, "pixel data element found in the file");
  const header = pixelElement + 12;
  const frame = (big.frames[998] as Buffer).length;
  t.diagnostic(`read ${bytesRead} bytes: header ${header}, frame 999 ${frame}, file ${big.bytes.length}`);
  assert.ok(bytesRead >= 2 * frame, `both requests read frame 999 (${bytesRead} bytes read)`);
  assert.ok(
    bytesRead <= header + 2 * (frame + 8),
    `two requests of frame 999 read ${bytesRead} bytes: at most the ${header}-byte header and the ${frame}-byte frame twice (the file has ${big.bytes.length})`,
  );
});

// ---------------------------------------------------------------------------------------------
// 4. Instance retrieve transcoded to a named syntax

interface Inspected {
  ts: string;
  pi: string;
  spp: number;
  frames: number;
  lossy: string;
  ratio: string[];
  method: string[];
  bot: number[] | null;
  fragments: number[] | null;
}

const inspect = (path: string): Inspected => JSON.parse(run(PYTHON, ["-c", PY_INSPECT, path]).toString("utf8")) as Inspected;

async function retrieveAs(f: Fixture, syntax: string): Promise<{ path: string; info: Inspected }> {
  const res = await httpRequest(instanceUrl(main, f), { headers: { accept: `application/dicom; transfer-syntax=${syntax}` } });
  assert.equal(res.status, 200, `${f.name} as ${syntax}: ${res.text().slice(0, 300)}`);
  assert.deepEqual(describe(String(res.headers["content-type"])), { mediaType: "application/dicom", syntax });
  assert.equal(Number(res.headers["content-length"]), res.body.length, "Content-Length");
  const path = join(work, `${f.name}-as-${syntax}.dcm`);
  writeFileSync(path, res.body);
  assert.match(run("dcmftest", [path]).toString(), /^yes:/, `${f.name} as ${syntax}: dcmftest`);
  return { path, info: inspect(path) };
}

test("instance retrieve as JPEG-LS, JPEG 2000, HTJ2K, RLE: valid Part 10 in the named syntax, Basic Offset Table, one fragment per frame, decodes to the source pixels", async (t) => {
  if (!need(t)) return;
  const ct3 = fixture("ct3");
  const source = Buffer.concat(ct3.frames);
  for (const syntax of [TS.JLS, TS.J2K, TS.HTJ2K, TS.RLE]) {
    const { path, info } = await retrieveAs(ct3, syntax);
    assert.equal(info.ts, syntax, "file meta names the syntax");
    assert.equal(info.pi, "MONOCHROME2", `${syntax}: Photometric Interpretation`);
    assert.equal(info.frames, 3);
    assert.equal(info.fragments?.length, 3, `${syntax}: one fragment per frame`);
    const fragments = info.fragments ?? [];
    const offsets = fragments.map((_, i) => fragments.slice(0, i).reduce((n, l) => n + l + 8, 0));
    assert.deepEqual(info.bot, offsets, `${syntax}: the Basic Offset Table points at each fragment`);
    assert.equal(info.lossy === "" || info.lossy === "00", true, `${syntax}: not marked lossy (${info.lossy})`);
    let pixels: Buffer;
    if (syntax === TS.HTJ2K) {
      // GDCM 3.0 does not read HTJ2K: OpenJPEG decodes each frame (pydicom's fragments).
      const frames = oracleOf([path])[path]?.frames.map((b) => Buffer.from(b, "base64")) ?? [];
      pixels = await decodeIndependently(ct3, frames, syntax);
    } else {
      const raw = `${path}.raw.dcm`;
      run("gdcmconv", ["--raw", path, raw]);
      pixels = nativePixels(raw);
    }
    assert.ok(pixels.equals(source), `${syntax}: decodes to the source pixels of all 3 frames`);
  }
  // A named lossless syntax at series level too: every part says its syntax.
  const series = await httpRequest(`${main.dicomweb}/studies/${ct3.study}/series/${ct3.series}`, {
    headers: { accept: `multipart/related; type="application/dicom"; transfer-syntax=${TS.RLE}` },
  });
  assert.equal(series.status, 200);
  const list = await parts(series);
  assert.equal(list.length, 1);
  assert.equal(describe((list[0] as Part).contentType).syntax, TS.RLE);
});

test("instance retrieve as JPEG baseline (4.50) of 8-bit sources: Lossy Image Compression 01 with ratio and method; RGB becomes YBR_FULL_422 and decodes close to the source", async (t) => {
  if (!need(t)) return;
  for (const name of ["mono8", "rgb8"]) {
    const f = fixture(name);
    const { path, info } = await retrieveAs(f, TS.BASELINE);
    assert.equal(info.ts, TS.BASELINE);
    assert.equal(info.lossy, "01", `${name}: LossyImageCompression`);
    assert.equal(info.ratio.length, 1, `${name}: one ratio`);
    assert.ok(Number(info.ratio[0]) > 1, `${name}: a compression ratio above 1 (${info.ratio[0]})`);
    assert.deepEqual(info.method, ["ISO_10918_1"], `${name}: method`);
    assert.equal(info.fragments?.length, 1);
    assert.deepEqual(info.bot ?? [], [0]);
    assert.equal(info.pi, name === "rgb8" ? "YBR_FULL_422" : "MONOCHROME2", `${name}: Photometric Interpretation of the JPEG data`);
    // dcmdjpeg converts YBR back to RGB as the Photometric Interpretation says; a wrong PI shows as wrong colours.
    const out = `${path}.dcmdjpeg.dcm`;
    run("dcmdjpeg", [path, out]);
    const { max, mean } = difference(nativePixels(out), f.frames[0] as Buffer);
    // Chroma subsampling blurs colour edges (max); a wrong Photometric Interpretation would move every pixel (mean).
    assert.ok(mean <= 3 && max <= 64, `${name}: dcmdjpeg's decode is close to the source (mean difference ${mean.toFixed(2)}, max ${max})`);
  }
  // 16-bit pixels cannot be JPEG baseline: 406 with a reason.
  const ct = fixture("ct");
  const refused = await httpRequest(instanceUrl(main, ct), { headers: { accept: `application/dicom; transfer-syntax=${TS.BASELINE}` } });
  assert.equal(refused.status, 406, refused.text().slice(0, 300));
});

// ---------------------------------------------------------------------------------------------
// 6. dicomweb-client (OHIF's client)

interface ClientInstance {
  studyInstanceUID: string;
  seriesInstanceUID: string;
  sopInstanceUID: string;
}
interface Client {
  retrieveInstanceFrames(
    options: ClientInstance & { frameNumbers: number[]; mediaTypes?: Array<{ mediaType: string; transferSyntaxUID?: string }> },
  ): Promise<ArrayBuffer[]>;
  retrieveInstanceRendered(
    options: ClientInstance & { mediaTypes?: Array<{ mediaType: string }>; queryParams?: Record<string, string> },
  ): Promise<ArrayBuffer>;
}

test("dicomweb-client: retrieveInstanceFrames with image/jls gets JPEG-LS that DCMTK decodes to the source; with transfer-syntax=* the stored frame", async (t) => {
  if (!need(t)) return;
  const client = new dicomweb.api.DICOMwebClient({ url: main.dicomweb, singlepart: false, verbose: false }) as unknown as Client;
  const ref = (f: Fixture): ClientInstance => ({ studyInstanceUID: f.study, seriesInstanceUID: f.series, sopInstanceUID: f.sop });
  const ct3 = fixture("ct3");
  const frames = await client.retrieveInstanceFrames({
    ...ref(ct3),
    frameNumbers: [3, 1],
    mediaTypes: [{ mediaType: "image/jls", transferSyntaxUID: TS.JLS }],
  });
  assert.equal(frames.length, 2);
  const bytes = frames.map((f) => Buffer.from(new Uint8Array(f)));
  for (const b of bytes) looksLike(b, TS.JLS);
  const decoded = await decodeIndependently(ct3, bytes, TS.JLS);
  assert.ok(
    decoded.equals(Buffer.concat([ct3.frames[2] as Buffer, ct3.frames[0] as Buffer])),
    "frames 3 and 1 decode (dcmdjpls) to the source",
  );

  const j2k = fixture("ct_j2k");
  const asStored = await client.retrieveInstanceFrames({
    ...ref(j2k),
    frameNumbers: [1],
    mediaTypes: [{ mediaType: "application/octet-stream", transferSyntaxUID: "*" }],
  });
  assert.ok(
    Buffer.from(new Uint8Array(asStored[0] as ArrayBuffer)).equals(j2k.frames[0] as Buffer),
    "transfer-syntax=* gives the stored frame",
  );
});

// ---------------------------------------------------------------------------------------------
// Single part, several frames, Range

test("frames: a single compressed frame as a single part (Accept: image/jls), several frames as several parts in the order asked", async (t) => {
  if (!need(t)) return;
  const ct3 = fixture("ct3");
  const single = await getFrame(main, ct3, 3, "image/jls");
  assert.equal(single.status, 200, single.text().slice(0, 300));
  assert.deepEqual(describe(String(single.headers["content-type"])), { mediaType: "image/jls", syntax: TS.JLS });
  looksLike(single.body, TS.JLS);
  assert.ok((await decodeIndependently(ct3, [single.body], TS.JLS)).equals(ct3.frames[2] as Buffer), "frame 3 decodes to the source");

  const res = await httpRequest(frameUrl(main, ct3, "3,1,2"), { headers: { accept: 'multipart/related; type="image/dicom-rle"' } });
  assert.equal(res.status, 200, res.text().slice(0, 300));
  const list = await parts(res);
  assert.deepEqual(
    list.map((p) => p.location),
    [3, 1, 2].map((n) => frameUrl(main, ct3, n)),
  );
  for (const p of list) assert.deepEqual(describe(p.contentType), { mediaType: "image/dicom-rle", syntax: TS.RLE });
  const decoded = await decodeIndependently(
    ct3,
    list.map((p) => p.bytes),
    TS.RLE,
  );
  assert.ok(decoded.equals(Buffer.concat([ct3.frames[2], ct3.frames[0], ct3.frames[1]] as Buffer[])), "dcmdrle gives frames 3, 1, 2");

  // Several frames cannot be one single part.
  const refused = await httpRequest(frameUrl(main, ct3, "1,2"), { headers: { accept: "image/jls" } });
  assert.equal(refused.status, 406);
  assert.match(reasonOf(refused), /multipart/);
});

test("frames: HTTP Range on an uncompressed frame → 206 with Content-Range (DESIGN: Range works on bulk data and frames)", async (t) => {
  if (!need(t)) return;
  const ct = fixture("ct");
  const frame = ct.frames[0] as Buffer;
  const res = await httpRequest(frameUrl(main, ct, 1), { headers: { accept: "application/octet-stream", range: "bytes=100-1099" } });
  assert.equal(res.status, 206, `status ${res.status}, ${res.body.length} bytes, Content-Range ${String(res.headers["content-range"])}`);
  assert.equal(res.headers["content-range"], `bytes 100-1099/${frame.length}`);
  assert.ok(res.body.equals(frame.subarray(100, 1100)));
});

// ---------------------------------------------------------------------------------------------
// Caches when an instance changes or is deleted

test("caches never serve an instance's old pixels after it is overwritten (frames and rendered)", async (t) => {
  if (!need(t)) return;
  const s = await startInProcess(t, { duplicatePolicy: "overwrite", codecThreads: 2 });
  const uids = {
    studyUid: "1.2.826.0.1.3680043.10.543.71",
    seriesUid: "1.2.826.0.1.3680043.10.543.72",
    sopUid: "1.2.826.0.1.3680043.10.543.73",
  };
  const versions = [syntheticInstance({ ...uids, seed: 0 }), syntheticInstance({ ...uids, seed: 91 })];
  const asFixture = (bytes: Buffer): Fixture => ({
    name: "synthetic",
    path: "",
    bytes,
    sop: uids.sopUid,
    study: uids.studyUid,
    series: uids.seriesUid,
    ts: TS.ELE,
    frames: [bytes.subarray(bytes.length - 64 * 64)],
  });
  const url = `${s.dicomweb}/studies/${uids.studyUid}/series/${uids.seriesUid}/instances/${uids.sopUid}`;
  const seen: Buffer[] = [];
  for (const bytes of versions) {
    const { body, contentType } = multipartBody([bytes]);
    const stored = await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
    assert.equal(stored.status, 200, stored.text().slice(0, 300));
    const f = asFixture(bytes);
    const part = await onePart(await httpRequest(`${url}/frames/1`, { headers: { accept: 'multipart/related; type="image/jls"' } }), "jls");
    assert.ok((await decodeIndependently(f, [part.bytes], TS.JLS)).equals(f.frames[0] as Buffer), "the frame is the stored version's");
    const png = await httpRequest(`${url}/rendered`, { headers: { accept: "image/png" } });
    assert.equal(png.status, 200);
    seen.push(png.body);
  }
  assert.ok(!(seen[0] as Buffer).equals(seen[1] as Buffer), "the rendered image changed with the pixels");
});

test("deleting an instance drops its cache files (native and rendered): no deleted patient pixels left under <data>/cache", async (t) => {
  if (!need(t)) return;
  // No memory tier: rendered images, kept in memory until evicted otherwise, go straight to disk.
  const s = await startInProcess(t, { allowDelete: true, codecThreads: 2, pixelMemoryCacheBytes: 0 });
  const uids = {
    studyUid: "1.2.826.0.1.3680043.10.543.81",
    seriesUid: "1.2.826.0.1.3680043.10.543.82",
    sopUid: "1.2.826.0.1.3680043.10.543.83",
  };
  const { body, contentType } = multipartBody([syntheticInstance({ ...uids, seed: 5 })]);
  assert.equal(
    (await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body })).status,
    200,
  );
  const url = `${s.dicomweb}/studies/${uids.studyUid}/series/${uids.seriesUid}/instances/${uids.sopUid}`;
  await onePart(await httpRequest(`${url}/frames/1`, { headers: { accept: 'multipart/related; type="image/jls"' } }), "jls");
  assert.equal((await httpRequest(`${url}/rendered`)).status, 200);
  assert.equal((await cacheFilesSettle(s, "native", 1)).length, 1);
  assert.equal((await cacheFilesSettle(s, "rendered", 1)).length, 1);
  const deleted = await httpRequest(url, { method: "DELETE" });
  assert.ok(deleted.status === 200 || deleted.status === 204, `DELETE: ${deleted.status} ${deleted.text().slice(0, 200)}`);
  assert.equal((await httpRequest(`${url}/frames/1`)).status, 404);
  assert.deepEqual(cacheFiles(s, "native"), [], "no transcoded frame of the deleted instance is left");
  assert.deepEqual(cacheFiles(s, "rendered"), [], "no rendered image of the deleted instance is left");
});
