/**
 * Hostile-input fuzzing of the DICOM core: thousands of mutated and truncated files (real ones from
 * Debian's pydicom test data, and files built in memory so part of the run needs no tool), plus
 * handcrafted bombs (10,000 nested sequences, deflate bombs, huge lengths, frame-count bombs) and
 * degenerate inputs. For every case: readDicom returns (it never throws), its error is a typed
 * DicomError, and datasetToJson, locateFrames and writePart10 on what was read either succeed or
 * throw a DicomError.
 *
 * The cases run in a worker thread with a small heap: a hang is caught by a watchdog (a synchronous
 * loop cannot time itself out), an unbounded allocation ends the worker instead of the test
 * process, and either way the failure names the case and leaves its bytes in a file. The run is
 * deterministic: FUZZ_SEED (default 0x5eed) picks the cases, FUZZ_ITERATIONS (mutations per seed
 * file) how many there are.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TestContext, test } from "node:test";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { deflateRawSync } from "node:zlib";
import {
  Dataset,
  DicomError,
  type DicomErrorCode,
  type DicomJsonAttribute,
  type DicomJsonDataset,
  datasetToJson,
  encapsulateFrames,
  frameBytes,
  jsonToDataset,
  locateFrames,
  lookupTransferSyntax,
  type ReadOptions,
  type ReadResult,
  readDicom,
  Tags,
  TransferSyntaxUids,
  writeDataset,
  writePart10,
} from "../../src/dicom/index.js";
import { VRS, type Vr } from "../../src/dicom/vr.js";
import { PYDICOM_DATA, requireTools, TOOLS } from "../helpers/tools.js";

// ---------------------------------------------------------------------------------------------
// Knobs
// ---------------------------------------------------------------------------------------------

const parseIntEnv = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return n;
};

/** PRNG seed of the whole run. */
const FUZZ_SEED = parseIntEnv("FUZZ_SEED", 0x5eed) >>> 0;
/** Mutated cases per seed file (each seed is also run once unmutated). */
const FUZZ_ITERATIONS = parseIntEnv("FUZZ_ITERATIONS", 1000);
/** Hang guard for one case, measured in the worker; not a benchmark. */
const CASE_LIMIT_MS = 2000;
/** A worker silent for this long is stuck in a case: it is ended and the case reported as a hang. */
const HANG_MS = 15_000;
/** Heap of the worker running the cases: far above what any case here needs, far below 4 GB. */
const WORKER_HEAP_MB = 96;
/** ArrayBuffer memory a case may leave behind over the worker's baseline. */
const CASE_ARRAY_BUFFER_LIMIT = 256 * 1024 * 1024;
/** Growth of the process's peak RSS over the whole test file. */
const RSS_GROWTH_LIMIT = 512 * 1024 * 1024;
/** Crashed or hung workers tolerated per group before the group stops (each is a reported failure). */
const MAX_CRASHES = 5;

const EXPLICIT_LE = TransferSyntaxUids.ExplicitVRLittleEndian;
const IMPLICIT_LE = TransferSyntaxUids.ImplicitVRLittleEndian;
const EXPLICIT_BE = TransferSyntaxUids.ExplicitVRBigEndian;
const DEFLATED = TransferSyntaxUids.DeflatedExplicitVRLittleEndian;
const JPEG_BASELINE = TransferSyntaxUids.JPEGBaseline8Bit;

/** Every DicomErrorCode: the compiler fails here when the union gains a code the test does not know. */
const CODES: Record<DicomErrorCode, true> = {
  NOT_DICOM: true,
  TRUNCATED: true,
  INVALID_LENGTH: true,
  INVALID_VR: true,
  INVALID_ITEM: true,
  TOO_DEEP: true,
  UNSUPPORTED_TRANSFER_SYNTAX: true,
  DEFLATE_ERROR: true,
  DEFLATE_LIMIT: true,
  INVALID_JSON: true,
  MISSING_BULK_DATA: true,
  CANNOT_ENCODE: true,
};
const isKnownCode = (code: unknown): code is DicomErrorCode => typeof code === "string" && Object.hasOwn(CODES, code);

// ---------------------------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence on every platform. */
class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(list: readonly T[]): T {
    if (list.length === 0) throw new Error("pick from an empty list");
    return list[this.int(list.length)] as T;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** FNV-1a of a string: one independent PRNG stream per (run seed, seed file, case). */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------------------

const concat = (...parts: Uint8Array[]): Uint8Array => Buffer.concat(parts);
/** For long lists: spreading tens of thousands of arguments overflows the stack. */
const concatAll = (parts: readonly Uint8Array[]): Uint8Array => Buffer.concat(parts);
const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v));

function u16(v: number, le: boolean): Uint8Array {
  const b = Buffer.alloc(2);
  if (le) b.writeUInt16LE(v & 0xffff);
  else b.writeUInt16BE(v & 0xffff);
  return b;
}

function u32(v: number, le: boolean): Uint8Array {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(v >>> 0);
  else b.writeUInt32BE(v >>> 0);
  return b;
}

const tagBytes = (group: number, element: number, le: boolean): Uint8Array => concat(u16(group, le), u16(element, le));
const ascii = (s: string): Uint8Array => Buffer.from(s, "latin1");
const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);

/** One element in explicit VR encoding (the value is used as given, no padding). */
function explicitElement(group: number, element: number, vr: string, value: Uint8Array, le = true, length = value.length): Uint8Array {
  const head = LONG_VRS.has(vr)
    ? concat(tagBytes(group, element, le), ascii(vr), new Uint8Array(2), u32(length, le))
    : concat(tagBytes(group, element, le), ascii(vr), u16(length, le));
  return concat(head, value);
}

const itemTag = (element: number, length: number, le = true): Uint8Array => concat(tagBytes(0xfffe, element, le), u32(length, le));

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/** What a case must give besides "no crash": a given error code, or no error at all. */
type Expect = DicomErrorCode | "no-error";

interface Case {
  label: string;
  bytes: Uint8Array;
  options?: ReadOptions;
  expect?: Expect;
}

type GroupName = "memory" | "pydicom" | "hostile";

interface Plan {
  total: number;
  build(index: number): Case;
}

/** Where things are in an encoded dataset: the offsets mutations aim at. */
interface Layout {
  /** Header starts, length fields, VRs, value starts and ends, item tags, fragments. */
  offsets: number[];
  lengths: Array<{ at: number; size: 2 | 4; le: boolean }>;
  /** Offsets of explicit VR bytes. */
  vrs: number[];
}

interface Seed {
  name: string;
  bytes: Uint8Array;
  layout: Layout;
  le: boolean;
  transferSyntaxUid: string;
  /** The Transfer Syntax UID value in the file meta (a retargeting mutation overwrites it). */
  ts?: { at: number; length: number };
  /** Deflated files: the meta part as is, and the inflated dataset with its own layout. */
  deflated?: { head: Uint8Array; inflated: Uint8Array; layout: Layout };
  /** The dataset has SOP Class/Instance UIDs: dataset-level edits can be written back as Part 10. */
  rewritable: boolean;
}

const isUpper = (c: number | undefined): boolean => c !== undefined && c >= 0x41 && c <= 0x5a;

/** Finds headers from element positions (explicit long, explicit short or implicit, by what precedes the value). */
function layoutOf(datasets: Array<{ ds: Dataset; src: Uint8Array }>): Layout {
  const out: Layout = { offsets: [], lengths: [], vrs: [] };
  const walk = (ds: Dataset, src: Uint8Array): number => {
    const le = ds.littleEndian;
    let firstHeader = -1;
    for (const el of ds.elements()) {
      const p = el.position;
      if (p < 0) continue;
      let header: number;
      if (p >= 12 && isUpper(src[p - 8]) && isUpper(src[p - 7]) && src[p - 6] === 0 && src[p - 5] === 0) {
        header = p - 12;
        out.vrs.push(p - 8);
        out.lengths.push({ at: p - 4, size: 4, le });
      } else if (p >= 8 && isUpper(src[p - 4]) && isUpper(src[p - 3])) {
        header = p - 8;
        out.vrs.push(p - 4);
        out.lengths.push({ at: p - 2, size: 2, le });
      } else {
        header = Math.max(0, p - 8);
        out.lengths.push({ at: Math.max(0, p - 4), size: 4, le });
      }
      if (firstHeader < 0) firstHeader = header;
      out.offsets.push(header, header + 4, p);
      if (el.bytes) out.offsets.push(p + el.bytes.length, p + (el.bytes.length >> 1));
      if (el.items) {
        for (const item of el.items) {
          const first = walk(item, src);
          if (first >= 8) {
            // The item tag and its length, just before the item's first element.
            out.offsets.push(first - 8, first - 4);
            out.lengths.push({ at: first - 4, size: 4, le });
          }
        }
        out.offsets.push(p, p + 4);
      }
      if (el.encapsulated) {
        out.offsets.push(p, p + 4);
        out.lengths.push({ at: p + 4, size: 4, le });
        for (const f of el.encapsulated.fragments) {
          out.offsets.push(f.position - 8, f.position - 4, f.position, f.position + (f.bytes.length >> 1), f.position + f.bytes.length);
          out.lengths.push({ at: f.position - 4, size: 4, le });
        }
      }
    }
    return firstHeader;
  };
  let limit = 0;
  for (const { ds, src } of datasets) {
    walk(ds, src);
    limit = Math.max(limit, src.length);
  }
  out.offsets = [...new Set(out.offsets.filter((o) => o >= 0 && o <= limit))].sort((a, b) => a - b);
  out.lengths = out.lengths.filter((l) => l.at >= 0 && l.at + l.size <= limit);
  return out;
}

function makeSeed(name: string, bytes: Uint8Array): Seed {
  const r = readDicom(bytes);
  const tsEl = r.meta.get(Tags.TransferSyntaxUID);
  const seed: Seed = {
    name,
    bytes,
    le: r.dataset.littleEndian,
    transferSyntaxUid: r.transferSyntaxUid,
    layout: layoutOf([{ ds: r.meta, src: bytes }]),
    rewritable: r.dataset.has(Tags.SOPClassUID) && r.dataset.has(Tags.SOPInstanceUID),
  };
  if (tsEl?.bytes) seed.ts = { at: tsEl.position, length: tsEl.bytes.length };
  if (lookupTransferSyntax(r.transferSyntaxUid)?.deflated && r.source !== bytes) {
    const group = r.meta.get(Tags.FileMetaInformationGroupLength);
    const metaEnd = group?.bytes ? group.position + 4 + Buffer.from(group.bytes).readUInt32LE(0) : 0;
    seed.deflated = { head: bytes.subarray(0, metaEnd), inflated: r.source, layout: layoutOf([{ ds: r.dataset, src: r.source }]) };
  } else {
    seed.layout = layoutOf([
      { ds: r.meta, src: bytes },
      { ds: r.dataset, src: r.source },
    ]);
  }
  return seed;
}

// ---------------------------------------------------------------------------------------------
// Seeds built in memory (no tool needed)
// ---------------------------------------------------------------------------------------------

const SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7";
const SOP_INSTANCE = "1.2.826.0.1.3680043.8.498.4242";

function richJson(): DicomJsonDataset {
  const text = (vr: Vr, ...values: string[]): DicomJsonAttribute => ({ vr, Value: values });
  const contentItem = (depth: number): DicomJsonDataset => ({
    "0040A010": text("CS", "CONTAINS"),
    "0040A040": text("CS", depth === 0 ? "TEXT" : "CONTAINER"),
    "0040A160": text("UT", `level ${depth} \\ text with a backslash`),
    ...(depth > 0 ? { "0040A730": { vr: "SQ", Value: [contentItem(depth - 1), contentItem(0)] } } : {}),
  });
  return {
    "00080005": text("CS", "ISO_IR 192"),
    "00080008": text("CS", "ORIGINAL", "PRIMARY"),
    "00080016": text("UI", SOP_CLASS),
    "00080018": text("UI", SOP_INSTANCE),
    "00080020": text("DA", "20240229"),
    "00081115": {
      vr: "SQ",
      Value: [
        {
          "0020000E": text("UI", "1.2.3.4.5"),
          "0008114A": {
            vr: "SQ",
            Value: [{ "00081150": text("UI", SOP_CLASS), "00081155": text("UI", "1.2.3.4.5.6") }, {}],
          },
        },
      ],
    },
    "00091010": text("LO", "VOXELGATE FUZZ"),
    "00091001": { vr: "UN", InlineBinary: toBase64(Uint8Array.of(1, 2, 3, 4, 5, 6)) },
    "00091002": { vr: "SQ", Value: [{ "00100020": text("LO", "PRIVATE-ITEM") }] },
    "00100010": { vr: "PN", Value: [{ Alphabetic: "Müller^Jürgen", Ideographic: "ミュラー^ユルゲン" }] },
    "00100020": text("LO", "ID-0001"),
    "00181050": { vr: "DS", Value: [0.5] },
    "00189087": { vr: "FD", Value: [1000.5] },
    "00200013": { vr: "IS", Value: [7] },
    "00209165": text("AT", "00200032"),
    "00280002": { vr: "US", Value: [1] },
    "00280004": text("CS", "MONOCHROME2"),
    "00280008": { vr: "IS", Value: [2] },
    "00280010": { vr: "US", Value: [4] },
    "00280011": { vr: "US", Value: [4] },
    "00280100": { vr: "US", Value: [16] },
    "00280101": { vr: "US", Value: [12] },
    "00280102": { vr: "US", Value: [11] },
    "00280103": { vr: "US", Value: [0] },
    "0040A730": { vr: "SQ", Value: [contentItem(4)] },
    "7FE00010": { vr: "OW", InlineBinary: toBase64(Uint8Array.from({ length: 64 }, (_, i) => (i * 37) & 0xff)) },
  };
}

function richDataset(): Dataset {
  return jsonToDataset(richJson()).dataset;
}

/** Two "JPEG" frames (SOI … EOI) of odd lengths, as encapsulated pixel data. */
function withEncapsulatedPixels(ds: Dataset): Dataset {
  const frame = (n: number, fill: number) =>
    concat(Uint8Array.of(0xff, 0xd8, 0xff, 0xe0), new Uint8Array(n).fill(fill), Uint8Array.of(0xff, 0xd9));
  ds.set({ tag: Tags.PixelData, vr: "OB", encapsulated: encapsulateFrames([frame(41, 0x11), frame(23, 0x22)]), position: -1 });
  ds.set({ tag: Tags.BitsAllocated, vr: "US", bytes: u16(8, true), position: -1 });
  return ds;
}

function memorySeeds(): Seed[] {
  return [
    makeSeed("mem-explicit-le", writePart10(richDataset(), { transferSyntaxUid: EXPLICIT_LE })),
    makeSeed("mem-implicit-le", writePart10(richDataset(), { transferSyntaxUid: IMPLICIT_LE })),
    makeSeed("mem-explicit-be", writePart10(richDataset(), { transferSyntaxUid: EXPLICIT_BE })),
    makeSeed("mem-deflated", writePart10(richDataset(), { transferSyntaxUid: DEFLATED })),
    makeSeed("mem-jpeg-encapsulated", writePart10(withEncapsulatedPixels(richDataset()), { transferSyntaxUid: JPEG_BASELINE })),
    makeSeed("mem-bare-implicit", writeDataset(richDataset(), IMPLICIT_LE)),
  ];
}

// ---------------------------------------------------------------------------------------------
// Seeds from Debian's pydicom test data
// ---------------------------------------------------------------------------------------------

const PYDICOM_SEEDS = [
  "test_files/CT_small.dcm",
  "test_files/MR_small.dcm",
  "test_files/MR_small_implicit.dcm",
  "test_files/MR_small_bigendian.dcm",
  "test_files/image_dfl.dcm",
  "test_files/rtplan.dcm",
  "test_files/rtdose.dcm",
  "test_files/JPEG2000.dcm",
  "test_files/SC_rgb_rle_2frame.dcm",
  "test_files/test-SR.dcm",
  "test_files/priv_SQ.dcm",
  "test_files/nested_priv_SQ.dcm",
  "test_files/UN_sequence.dcm",
  "test_files/no_meta_group_length.dcm",
  "test_files/ExplVR_BigEndNoMeta.dcm",
  "charset_files/chrH31.dcm",
  "charset_files/chrSQEncoding.dcm",
];

function pydicomSeeds(): Seed[] {
  return PYDICOM_SEEDS.map((p) => makeSeed(p.split("/").pop() ?? p, new Uint8Array(readFileSync(join(PYDICOM_DATA, p)))));
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

interface Mutated {
  bytes: Uint8Array;
  note: string;
}

type Mutator = (b: Uint8Array, rng: Rng, layout: Layout, seed: Seed, all: readonly Seed[]) => Mutated;

/** An offset near a structure boundary most of the time, anywhere otherwise. */
function spot(rng: Rng, layout: Layout, length: number): number {
  if (layout.offsets.length > 0 && rng.chance(0.75)) return clamp(rng.pick(layout.offsets) + rng.int(9) - 4, 0, length);
  return rng.int(length + 1);
}

const HUGE_LENGTHS = [0xffffffff, 0x7fffffff, 0xfffffffe, 0x80000000, 0xfffffff0, 0x7ffffffe];
const VR_REPLACEMENTS = [
  "ZZ",
  "\0\0",
  "  ",
  "ob",
  "SQ",
  "UN",
  "OB",
  "OW",
  "UT",
  "US",
  "UL",
  "AT",
  "FD",
  "SV",
  "UV",
  "PN",
  "UI",
  "LO",
  "XX",
];

const truncate: Mutator = (b, rng, layout) => {
  const at = spot(rng, layout, b.length);
  return { bytes: b.subarray(0, at), note: `truncate@${at}` };
};

const bitFlips: Mutator = (b, rng, layout) => {
  const out = new Uint8Array(b);
  const n = 1 + rng.int(8);
  const at: number[] = [];
  for (let i = 0; i < n && out.length > 0; i++) {
    const p = clamp(spot(rng, layout, out.length - 1), 0, out.length - 1);
    out[p] = (out[p] ?? 0) ^ (1 << rng.int(8));
    at.push(p);
  }
  return { bytes: out, note: `bitflip@${at.join("/")}` };
};

const overwrite: Mutator = (b, rng, layout) => {
  const out = new Uint8Array(b);
  if (out.length === 0) return { bytes: out, note: "overwrite(empty)" };
  const at = clamp(spot(rng, layout, out.length - 1), 0, out.length - 1);
  const run = rng.chance(0.3) ? new Uint8Array(1 + rng.int(32)).fill(rng.pick([0x00, 0xff, 0x20])) : rng.bytes(1 + rng.int(16));
  out.set(run.subarray(0, out.length - at), at);
  return { bytes: out, note: `overwrite@${at}+${run.length}` };
};

const hugeLength: Mutator = (b, rng, layout) => {
  const out = new Uint8Array(b);
  const field =
    layout.lengths.length > 0 ? rng.pick(layout.lengths) : { at: rng.int(Math.max(1, b.length - 4)), size: 4 as const, le: true };
  if (field.at + field.size > out.length) return { bytes: out, note: "length(out of range)" };
  const le = rng.chance(0.9) ? field.le : !field.le;
  let value: number;
  if (field.size === 2) value = rng.pick([0xffff, 0xfffe, 0, 1, 3, rng.int(0x10000)]);
  else {
    const near = b.length - field.at + rng.int(17) - 8;
    value = rng.pick([...HUGE_LENGTHS, Math.max(0, near), b.length + rng.int(9), 0, 1, 3, rng.u32()]);
  }
  out.set(field.size === 2 ? u16(value, le) : u32(value, le), field.at);
  return { bytes: out, note: `length@${field.at}(${field.size})=0x${value.toString(16)}${le ? "" : "BE"}` };
};

const vrSwap: Mutator = (b, rng, layout) => {
  const out = new Uint8Array(b);
  const at = layout.vrs.length > 0 ? rng.pick(layout.vrs) : rng.int(Math.max(1, b.length - 2));
  if (at + 2 > out.length) return { bytes: out, note: "vr(out of range)" };
  const vr = rng.chance(0.25) ? rng.bytes(2) : ascii(rng.pick(VR_REPLACEMENTS));
  out.set(vr, at);
  return { bytes: out, note: `vr@${at}=${JSON.stringify(Buffer.from(vr).toString("latin1"))}` };
};

const insertDelimiter: Mutator = (b, rng, layout, seed) => {
  const at = spot(rng, layout, b.length);
  const le = rng.chance(0.85) ? seed.le : !seed.le;
  const kind = rng.pick(["item", "item-undefined", "item-delimiter", "sequence-delimiter"] as const);
  const tag =
    kind === "item"
      ? itemTag(0xe000, rng.pick([0, 8, 16, 0x7fffffff, 0xfffffffe, rng.int(4096)]), le)
      : kind === "item-undefined"
        ? itemTag(0xe000, 0xffffffff, le)
        : kind === "item-delimiter"
          ? itemTag(0xe00d, rng.chance(0.8) ? 0 : rng.u32(), le)
          : itemTag(0xe0dd, rng.chance(0.8) ? 0 : rng.u32(), le);
  if (rng.chance(0.3) && at + 8 <= b.length) {
    const out = new Uint8Array(b);
    out.set(tag, at);
    return { bytes: out, note: `${kind}-over@${at}` };
  }
  return { bytes: concat(b.subarray(0, at), tag, b.subarray(at)), note: `${kind}-insert@${at}` };
};

const deleteRange: Mutator = (b, rng, layout) => {
  const at = spot(rng, layout, b.length);
  const n = 1 + rng.int(rng.chance(0.5) ? 8 : 256);
  return { bytes: concat(b.subarray(0, at), b.subarray(at + n)), note: `delete@${at}+${n}` };
};

const duplicateRange: Mutator = (b, rng, layout) => {
  const from = spot(rng, layout, b.length);
  const chunk = b.subarray(from, from + 1 + rng.int(512));
  const to = spot(rng, layout, b.length);
  return { bytes: concat(b.subarray(0, to), chunk, b.subarray(to)), note: `duplicate@${from}+${chunk.length}->${to}` };
};

const garbageEnds: Mutator = (b, rng) => {
  const n = 1 + rng.int(rng.chance(0.5) ? 16 : 600);
  const garbage = rng.chance(0.6) ? rng.bytes(n) : new Uint8Array(n).fill(rng.pick([0x00, 0xff]));
  if (rng.chance(0.5)) return { bytes: concat(garbage, b), note: `prefix+${n}` };
  return { bytes: concat(b, garbage), note: `suffix+${n}` };
};

const RETARGET_UIDS = [
  IMPLICIT_LE,
  EXPLICIT_LE,
  EXPLICIT_BE,
  DEFLATED,
  JPEG_BASELINE,
  "1.2.840.10008.1.2.5",
  "1.2.840.10008.1.2.4.90",
  "1.2.3",
  "1.2.840.10008.1.2.1.98",
  "9",
];

const retargetSyntax: Mutator = (b, rng, _layout, seed) => {
  const out = new Uint8Array(b);
  if (!seed.ts || seed.ts.at + seed.ts.length > out.length) return { bytes: out, note: "retarget(no ts)" };
  const fitting = RETARGET_UIDS.filter((u) => u.length <= (seed.ts?.length ?? 0));
  const uid = rng.pick(fitting.length > 0 ? fitting : ["1"]);
  const value = new Uint8Array(seed.ts.length);
  value.set(ascii(uid).subarray(0, value.length));
  out.set(value, seed.ts.at);
  return { bytes: out, note: `retarget=${uid}` };
};

const crossover: Mutator = (b, rng, layout, _seed, all) => {
  const other = rng.pick(all).bytes;
  const from = rng.int(other.length);
  const chunk = other.subarray(from, from + 1 + rng.int(1024));
  const at = spot(rng, layout, b.length);
  const replace = rng.chance(0.5) ? chunk.length : 0;
  return {
    bytes: concat(b.subarray(0, at), chunk, b.subarray(at + replace)),
    note: `crossover@${at}+${chunk.length}${replace ? "(over)" : ""}`,
  };
};

const MUTATORS: ReadonlyArray<[Mutator, number]> = [
  [truncate, 5],
  [bitFlips, 4],
  [overwrite, 3],
  [hugeLength, 5],
  [vrSwap, 3],
  [insertDelimiter, 3],
  [deleteRange, 2],
  [duplicateRange, 2],
  [garbageEnds, 1],
  [retargetSyntax, 1],
  [crossover, 1],
];
const MUTATOR_WEIGHT = MUTATORS.reduce((s, [, w]) => s + w, 0);

function pickMutator(rng: Rng): Mutator {
  let r = rng.int(MUTATOR_WEIGHT);
  for (const [m, w] of MUTATORS) {
    if (r < w) return m;
    r -= w;
  }
  return truncate;
}

// Dataset-level edits: well-formed files with hostile values, written by our writer.

const US_TARGETS = [
  Tags.Rows,
  Tags.Columns,
  Tags.BitsAllocated,
  Tags.SamplesPerPixel,
  Tags.PixelRepresentation,
  Tags.BitsStored,
  Tags.PlanarConfiguration,
];
const FRAME_COUNTS = ["0", "-1", "1", "3", "65535", "1.5", "NaN", "", "2147483647", "4294967296", "1e9", "99999999999999999999"];
const CHARSETS = [
  "ISO 2022 IR 87\\ISO 2022 IR 159",
  "ISO_IR 192",
  "GB18030",
  "\\ISO 2022 IR 149",
  "ISO_IR 13",
  "bogus",
  "\\\\\\",
  "ISO 2022 IR 6\\ISO 2022 IR 87",
  "",
];

type Edit = (ds: Dataset, rng: Rng) => string;

const setBytes = (ds: Dataset, tag: number, vr: Vr, bytes: Uint8Array): void => ds.set({ tag, vr, bytes, position: -1 });

const EDITS: readonly Edit[] = [
  (ds, rng) => {
    const tag = rng.pick(US_TARGETS);
    const v = rng.pick([0, 1, 3, 7, 8, 0x8000, 0xffff]);
    setBytes(ds, tag, "US", u16(v, ds.littleEndian));
    return `US(${tag.toString(16)})=${v}`;
  },
  (ds, rng) => {
    const v = rng.pick(FRAME_COUNTS);
    setBytes(ds, Tags.NumberOfFrames, "IS", ascii(v.length % 2 ? `${v} ` : v));
    return `frames=${JSON.stringify(v)}`;
  },
  (ds, rng) => {
    // Pixel attributes in a VR they never have: a binary number of any size.
    const tag = rng.pick([Tags.NumberOfFrames, Tags.Rows, Tags.Columns, Tags.BitsAllocated]);
    const b = Buffer.alloc(8);
    const choice = rng.int(4);
    if (choice === 0) {
      const v = rng.pick([Number.POSITIVE_INFINITY, Number.NaN, -1, 1e300, 0.5]);
      if (ds.littleEndian) b.writeDoubleLE(v);
      else b.writeDoubleBE(v);
      setBytes(ds, tag, "FD", b);
      return `FD(${tag.toString(16)})=${v}`;
    }
    if (choice === 1) {
      setBytes(ds, tag, "UL", u32(0xffffffff, ds.littleEndian));
      return `UL(${tag.toString(16)})=0xffffffff`;
    }
    if (choice === 2) {
      if (ds.littleEndian) b.writeBigInt64LE(-(2n ** 62n));
      else b.writeBigInt64BE(-(2n ** 62n));
      setBytes(ds, tag, "SV", b);
      return `SV(${tag.toString(16)})=-2^62`;
    }
    setBytes(ds, tag, rng.pick(["US", "IS", "FD"] as const), new Uint8Array(0));
    return `empty(${tag.toString(16)})`;
  },
  (ds, rng) => {
    const cs = rng.pick(CHARSETS);
    setBytes(ds, Tags.SpecificCharacterSet, "CS", ascii(cs.length % 2 ? `${cs} ` : cs));
    // Text with escape sequences and high bytes for the character set decoder.
    const esc = [
      Uint8Array.of(0x1b, 0x24, 0x42),
      Uint8Array.of(0x1b, 0x28, 0x42),
      Uint8Array.of(0x1b, 0x24, 0x29, 0x43),
      Uint8Array.of(0x1b),
    ];
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 1 + rng.int(8); i++) parts.push(rng.chance(0.4) ? rng.pick(esc) : rng.bytes(1 + rng.int(6)));
    const text = concatAll(parts);
    setBytes(ds, 0x00100010, rng.pick(["PN", "LO", "UT", "SH"] as const), text.length % 2 ? concat(text, ascii(" ")) : text);
    return `charset=${JSON.stringify(cs)}+text`;
  },
  (ds, rng) => {
    const choice = rng.int(4);
    if (choice === 0) {
      ds.delete(Tags.PixelData);
      return "pixels-removed";
    }
    if (choice === 1) {
      setBytes(ds, Tags.PixelData, rng.pick(["OB", "OW"] as const), rng.bytes(rng.pick([0, 1, 7, 33])));
      return "pixels-native-short";
    }
    const fragments = Array.from({ length: rng.int(4) }, () => rng.bytes(rng.int(24)));
    const enc = encapsulateFrames(fragments);
    if (choice === 3) enc.basicOffsetTable = Array.from({ length: rng.int(4) }, () => rng.pick([0, 8, rng.u32(), 0xffffffff]));
    ds.set({ tag: Tags.PixelData, vr: "OB", encapsulated: enc, position: -1 });
    return `pixels-encapsulated(${fragments.length},bot=${enc.basicOffsetTable.length})`;
  },
  (ds, rng) => {
    const table = Buffer.alloc(8 * (1 + rng.int(4)));
    for (let i = 0; i < table.length; i += 8) table.writeBigUInt64LE(rng.pick([0n, 8n, 2n ** 63n, 2n ** 64n - 1n, BigInt(rng.u32())]), i);
    setBytes(ds, Tags.ExtendedOffsetTable, "OV", table);
    return "extended-offset-table";
  },
  (ds, rng) => {
    const tag = ((rng.int(0x7fe0) << 16) | rng.int(0x10000)) >>> 0;
    const vr = rng.pick(VRS);
    if (vr === "SQ") ds.set({ tag, vr, items: rng.chance(0.5) ? [] : [new Dataset()], position: -1 });
    else setBytes(ds, tag, vr, rng.bytes(rng.int(33)));
    return `random(${tag.toString(16)},${vr})`;
  },
  (ds, rng) => {
    const victims = ds.elements().filter((e) => e.bytes);
    if (victims.length === 0) return "wrong-vr(none)";
    const el = rng.pick(victims);
    const vr = rng.pick(VRS);
    ds.set({ ...el, vr, position: -1 });
    return `wrong-vr(${el.tag.toString(16)},${el.vr}->${vr})`;
  },
  (ds, rng) => {
    // Sequences nested around the default depth limit.
    const depth = rng.pick([2, 63, 64, 65, 200]);
    const blank = () => new Dataset();
    let inner = blank();
    for (let i = 0; i < depth; i++) {
      const item = inner;
      inner = blank();
      inner.set({ tag: 0x0040a730, vr: "SQ", items: [item], position: -1 });
    }
    const outer = inner.get(0x0040a730);
    if (outer) ds.set(outer);
    return `nested-sq(${depth})`;
  },
];

function editDataset(seed: Seed, rng: Rng): Mutated | undefined {
  const { dataset } = readDicom(seed.bytes);
  const notes: string[] = [];
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) notes.push(rng.pick(EDITS)(dataset, rng));
  const targets = [rng.pick([seed.transferSyntaxUid, EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED, JPEG_BASELINE]), EXPLICIT_LE];
  for (const transferSyntaxUid of targets) {
    try {
      return { bytes: writePart10(dataset, { transferSyntaxUid }), note: `edit[${notes.join(";")}]->${transferSyntaxUid}` };
    } catch (e) {
      // A DicomError (e.g. encapsulated pixels to a native syntax): try the next target. Anything else is a finding.
      if (!(e instanceof DicomError)) throw e;
    }
  }
  return undefined;
}

function mutate(seed: Seed, rng: Rng, all: readonly Seed[]): Case {
  const notes: string[] = [];
  let bytes = seed.bytes;
  let layout = seed.layout;
  const options: ReadOptions = {};
  if (seed.rewritable && rng.chance(0.12)) {
    const edited = editDataset(seed, rng);
    if (edited) {
      bytes = edited.bytes;
      notes.push(edited.note);
      const r = readDicom(bytes);
      layout = layoutOf([
        { ds: r.meta, src: bytes },
        { ds: r.dataset, src: r.source },
      ]);
    }
  }
  const rounds = rng.chance(0.55) ? 1 : 2 + rng.int(3);
  if (seed.deflated && notes.length === 0 && rng.chance(0.7)) {
    // Mutate the inflated dataset and deflate it again, so the damage reaches the dataset reader.
    let inner = seed.deflated.inflated;
    for (let i = 0; i < rounds; i++) {
      const m = pickMutator(rng)(inner, rng, seed.deflated.layout, seed, all);
      inner = m.bytes;
      notes.push(`inflated:${m.note}`);
    }
    bytes = concat(seed.deflated.head, deflateRawSync(inner));
    if (rng.chance(0.3)) options.maxInflatedBytes = Math.max(16, inner.length - rng.int(64));
  } else {
    for (let i = 0; i < rounds; i++) {
      const m = pickMutator(rng)(bytes, rng, layout, seed, all);
      bytes = m.bytes;
      notes.push(m.note);
    }
  }
  if (rng.chance(0.1)) options.maxDepth = rng.pick([0, 1, 2, 8]);
  return { label: `${seed.name}: ${notes.join(", ")}`, bytes, options };
}

function fuzzPlan(seeds: Seed[], fuzzSeed: number, iterations: number): Plan {
  const per = iterations + 1;
  return {
    total: seeds.length * per,
    build(index) {
      const seed = seeds[Math.floor(index / per)];
      if (!seed) throw new Error(`no case ${index}`);
      const k = index % per;
      if (k === 0) return { label: `${seed.name}: unmutated`, bytes: seed.bytes, expect: "no-error" };
      const c = mutate(seed, new Rng(hash32(`${fuzzSeed}:${seed.name}:${k}`)), seeds);
      return { ...c, label: `${c.label} [case ${index}]` };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Handcrafted hostile inputs
// ---------------------------------------------------------------------------------------------

const sopOnly = (): Dataset =>
  jsonToDataset({ "00080016": { vr: "UI", Value: [SOP_CLASS] }, "00080018": { vr: "UI", Value: [SOP_INSTANCE] } }).dataset;

/** Preamble, DICM and file meta for the transfer syntax, then (for the caller to append) the dataset. */
function part10Head(transferSyntaxUid: string): Uint8Array {
  const file = writePart10(sopOnly(), { transferSyntaxUid });
  const metaEnd = 132 + 12 + file.readUInt32LE(140);
  return file.subarray(0, metaEnd);
}

type NestForm = "explicit-le" | "explicit-be" | "implicit" | "un" | "defined-length" | "unclosed";

/** `levels` sequences each holding one item that holds the next sequence. */
function nestingBomb(levels: number, form: NestForm): Uint8Array {
  const parts: Uint8Array[] = [];
  if (form === "defined-length") {
    // Lengths from the outside in: each level is a 12-byte SQ header plus an 8-byte item header.
    for (let k = 0; k < levels; k++) {
      const inner = 20 * (levels - 1 - k);
      parts.push(explicitElement(0x0040, 0xa730, "SQ", new Uint8Array(0), true, inner + 8), itemTag(0xe000, inner));
    }
    return concatAll(parts);
  }
  const le = form !== "explicit-be";
  for (let k = 0; k < levels; k++) {
    if (form === "implicit") parts.push(tagBytes(0x0040, 0xa730, true), u32(0xffffffff, true));
    else if (form === "un" && k > 0) parts.push(tagBytes(0x0009, 0x1010, true), u32(0xffffffff, true));
    else if (form === "un") parts.push(explicitElement(0x0009, 0x1010, "UN", new Uint8Array(0), true, 0xffffffff));
    else parts.push(explicitElement(0x0040, 0xa730, "SQ", new Uint8Array(0), le, 0xffffffff));
    parts.push(itemTag(0xe000, 0xffffffff, le));
  }
  if (form !== "unclosed") for (let k = 0; k < levels; k++) parts.push(itemTag(0xe00d, 0, le), itemTag(0xe0dd, 0, le));
  return concatAll(parts);
}

/** A dataset with the given pixel description, Part 10 explicit VR little endian. */
function pixelFile(attrs: DicomJsonDataset, pixels: Uint8Array): Uint8Array {
  const ds = jsonToDataset({
    "00080016": { vr: "UI", Value: [SOP_CLASS] },
    "00080018": { vr: "UI", Value: [SOP_INSTANCE] },
    ...attrs,
  }).dataset;
  ds.set({ tag: Tags.PixelData, vr: "OB", bytes: pixels, position: -1 });
  return writePart10(ds, { transferSyntaxUid: EXPLICIT_LE });
}

const us = (v: number): DicomJsonAttribute => ({ vr: "US", Value: [v] });

function hostileCases(fuzzSeed: number): Array<() => Case> {
  const noise = (n: number, salt: string) => new Rng(hash32(`${fuzzSeed}:noise:${salt}`)).bytes(n);
  const explicitHead = part10Head(EXPLICIT_LE);
  const deflatedHead = part10Head(DEFLATED);
  const c =
    (label: string, bytes: Uint8Array, expect?: Expect, options?: ReadOptions): (() => Case) =>
    () => ({ label, bytes, expect, options });
  const lazy =
    (label: string, make: () => Uint8Array, expect?: Expect, options?: ReadOptions): (() => Case) =>
    () => ({ label, bytes: make(), expect, options });
  const sq = (value: Uint8Array) => explicitElement(0x0040, 0xa730, "SQ", value, true, 0xffffffff);
  const encapsulated = (...items: Uint8Array[]) => explicitElement(0x7fe0, 0x0010, "OB", concatAll(items), true, 0xffffffff);
  const frameBomb = (rows: number, columns: number, bits: number, frames: string, pixels: number) => () =>
    pixelFile(
      { "00280010": us(rows), "00280011": us(columns), "00280100": us(bits), "00280002": us(1), "00280008": { vr: "IS", Value: [frames] } },
      new Uint8Array(pixels),
    );

  return [
    // Degenerate inputs.
    c("empty input", new Uint8Array(0), "NOT_DICOM"),
    c("1 byte 0x00", Uint8Array.of(0), "NOT_DICOM"),
    c("1 byte 0xFF", Uint8Array.of(0xff), "NOT_DICOM"),
    c("7 bytes", Uint8Array.of(0x08, 0x00, 0x16, 0x00, 0x55, 0x49, 0x02), "NOT_DICOM"),
    c("DICM + 3 bytes", ascii("DICMDIC")),
    c("DICM alone", ascii("DICM")),
    c("8 zero bytes", new Uint8Array(8)),
    c("all 0xFF x 8", new Uint8Array(8).fill(0xff)),
    c("all 0xFF x 132", new Uint8Array(132).fill(0xff)),
    c("all 0xFF x 4096", new Uint8Array(4096).fill(0xff)),
    c("all 0xFF x 1 MiB", new Uint8Array(1 << 20).fill(0xff)),
    c("all 0x00 x 4096", new Uint8Array(4096)),
    c("preamble + DICM only", concat(new Uint8Array(128), ascii("DICM"))),
    c("preamble + DICM + 0xFF x 512", concat(new Uint8Array(128), ascii("DICM"), new Uint8Array(512).fill(0xff))),
    c("preamble + DICM + noise", concat(new Uint8Array(128), ascii("DICM"), noise(2048, "after-dicm"))),
    c("meta group tag then noise", concat(Uint8Array.of(2, 0, 0, 0), noise(300, "meta"))),
    ...[1, 9, 100, 4096, 65536].map((n) => c(`noise x ${n}`, noise(n, `n${n}`))),
    c("meta only", explicitHead, "no-error"),
    c(
      "meta with group length 0xFFFFFFFF",
      (() => {
        const b = new Uint8Array(explicitHead);
        b.set(u32(0xffffffff, true), 140);
        return b;
      })(),
    ),
    c(
      "meta element with length 0xFFFFFFF0",
      concat(explicitHead.subarray(0, 144), explicitElement(0x0002, 0x0001, "OB", new Uint8Array(4), true, 0xfffffff0)),
      "TRUNCATED",
    ),

    // Nesting bombs: a typed TOO_DEEP, never a stack overflow.
    ...(["explicit-le", "explicit-be", "implicit", "un", "defined-length", "unclosed"] as const).map((form) =>
      lazy(`10,000 nested sequences (${form})`, () => nestingBomb(10_000, form), "TOO_DEEP"),
    ),
    lazy("10,000 nested sequences in a Part 10 file", () => concat(explicitHead, nestingBomb(10_000, "explicit-le")), "TOO_DEEP"),
    lazy("100,000 nested sequences", () => nestingBomb(100_000, "explicit-le"), "TOO_DEEP"),
    lazy("10,000 nested sequences, deflated", () => concat(deflatedHead, deflateRawSync(nestingBomb(10_000, "explicit-le"))), "TOO_DEEP"),
    lazy("9 nested sequences, maxDepth 8", () => nestingBomb(9, "explicit-le"), "TOO_DEEP", { maxDepth: 8 }),
    // A caller's large maxDepth must not turn a stack overflow into a misleading TRUNCATED.
    lazy("100,000 nested sequences, maxDepth 1,000,000", () => nestingBomb(100_000, "explicit-le"), "TOO_DEEP", { maxDepth: 1_000_000 }),
    lazy("8 nested sequences, maxDepth 8", () => nestingBomb(8, "explicit-le"), "no-error", { maxDepth: 8 }),
    c(
      "10,000 item tags in one sequence",
      sq(concatAll([...Array.from({ length: 10_000 }, () => itemTag(0xe000, 0)), itemTag(0xe0dd, 0)])),
      "no-error",
    ),
    c("10,000 stray delimiters", concatAll(Array.from({ length: 10_000 }, (_, i) => itemTag(i % 2 ? 0xe00d : 0xe0dd, 0)))),

    // Deflate bombs: a typed DEFLATE_LIMIT under the caller's bound, never the inflated size in memory.
    lazy("1 MiB of zeros deflated, limit 64 KiB", () => concat(deflatedHead, deflateRawSync(new Uint8Array(1 << 20))), "DEFLATE_LIMIT", {
      maxInflatedBytes: 64 * 1024,
    }),
    lazy(
      "dataset with a 1 MiB OB deflated, limit 64 KiB",
      () => concat(deflatedHead, deflateRawSync(explicitElement(0x0009, 0x1001, "OB", new Uint8Array(1 << 20)))),
      "DEFLATE_LIMIT",
      { maxInflatedBytes: 64 * 1024 },
    ),
    lazy(
      "64 MiB of zeros deflated, limit 64 KiB",
      () => concat(deflatedHead, deflateRawSync(Buffer.alloc(64 << 20), { level: 9 })),
      "DEFLATE_LIMIT",
      {
        maxInflatedBytes: 64 * 1024,
      },
    ),
    lazy("deflated stream of noise", () => concat(deflatedHead, noise(4096, "deflate")), "DEFLATE_ERROR"),
    lazy("deflated stream cut in half", () => {
      const z = deflateRawSync(writeDataset(richDataset(), EXPLICIT_LE));
      return concat(deflatedHead, z.subarray(0, z.length >> 1));
    }),
    lazy("deflated, nothing after the meta", () => deflatedHead),

    // Lengths that point far beyond the input.
    c(
      "OB length 0xFFFFFFFE",
      concat(explicitHead, explicitElement(0x0009, 0x1001, "OB", new Uint8Array(16), true, 0xfffffffe)),
      "TRUNCATED",
    ),
    c(
      "OB length 0x7FFFFFFF",
      concat(explicitHead, explicitElement(0x0009, 0x1001, "OB", new Uint8Array(16), true, 0x7fffffff)),
      "TRUNCATED",
    ),
    c(
      "UT length 0xFFFFFFFF",
      concat(explicitHead, explicitElement(0x0010, 0x4000, "UT", new Uint8Array(16), true, 0xffffffff)),
      "INVALID_LENGTH",
    ),
    c("LO length 0xFFFF", concat(explicitHead, explicitElement(0x0010, 0x0020, "LO", ascii("ID"), true, 0xffff)), "TRUNCATED"),
    c("implicit length 0xFFFFFFF0", concat(tagBytes(0x0010, 0x0020, true), u32(0xfffffff0, true), ascii("ID")), "TRUNCATED"),
    c("item length 0xFFFFFFF0", concat(explicitHead, sq(concat(itemTag(0xe000, 0xfffffff0), itemTag(0xe0dd, 0)))), "TRUNCATED"),
    c(
      "item length = file length + 1",
      (() => {
        const body = sq(concat(itemTag(0xe000, 0), itemTag(0xe0dd, 0)));
        const file = concat(explicitHead, body);
        Buffer.from(file.buffer, file.byteOffset, file.length).writeUInt32LE(file.length + 1, explicitHead.length + 16);
        return file;
      })(),
      "TRUNCATED",
    ),
    c("offset table length 0x7FFFFFFC", concat(explicitHead, encapsulated(itemTag(0xe000, 0x7ffffffc), itemTag(0xe0dd, 0))), "TRUNCATED"),
    c(
      "offset table length 3",
      concat(explicitHead, encapsulated(itemTag(0xe000, 3), new Uint8Array(3), itemTag(0xe0dd, 0))),
      "INVALID_LENGTH",
    ),
    c(
      "fragment of undefined length",
      concat(explicitHead, encapsulated(itemTag(0xe000, 0), itemTag(0xe000, 0xffffffff), itemTag(0xe0dd, 0))),
      "INVALID_LENGTH",
    ),
    c(
      "fragment length 0xFFFFFFF0",
      concat(explicitHead, encapsulated(itemTag(0xe000, 0), itemTag(0xe000, 0xfffffff0), new Uint8Array(8))),
      "TRUNCATED",
    ),
    c(
      "encapsulated pixels without a delimiter",
      concat(explicitHead, encapsulated(itemTag(0xe000, 0), itemTag(0xe000, 4), new Uint8Array(4))),
      "TRUNCATED",
    ),
    c(
      "100,000 empty fragments",
      concat(
        explicitHead,
        explicitElement(
          0x7fe0,
          0x0010,
          "OB",
          concatAll([...Array.from({ length: 100_001 }, () => itemTag(0xe000, 0)), itemTag(0xe0dd, 0)]),
          true,
          0xffffffff,
        ),
      ),
      "no-error",
    ),

    // Frame counts that the pixel data cannot hold: locateFrames must refuse or stay bounded.
    lazy("Rows 0, NumberOfFrames 2147483647", frameBomb(0, 4, 16, "2147483647", 0)),
    lazy("Columns 0, NumberOfFrames 1e9", frameBomb(4, 0, 16, "1e9", 2)),
    lazy("1x1 pixels of 1 bit, 8,388,608 frames in 1 MiB", frameBomb(1, 1, 1, String(8 << 20), 1 << 20)),
  ];
}

function hostilePlan(fuzzSeed: number): Plan {
  const cases = hostileCases(fuzzSeed);
  return {
    total: cases.length,
    build(index) {
      const make = cases[index];
      if (!make) throw new Error(`no case ${index}`);
      return make();
    },
  };
}

function planFor(group: GroupName, fuzzSeed: number, iterations: number): Plan {
  if (group === "hostile") return hostilePlan(fuzzSeed);
  return fuzzPlan(group === "memory" ? memorySeeds() : pydicomSeeds(), fuzzSeed, iterations);
}

// ---------------------------------------------------------------------------------------------
// Running one case (in the worker)
// ---------------------------------------------------------------------------------------------

interface CaseOutcome {
  index: number;
  label: string;
  /** readDicom's error code, "ok", or "threw". */
  read: string;
  /** How the later steps ended, as "step:ok" or "step:CODE" (a DicomError they threw). */
  steps: string[];
  ms: number;
  problems: string[];
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const frames = (e.stack ?? "").split("\n").slice(1, 6).join(" | ");
    return `${e.constructor.name}: ${e.message.slice(0, 300)} @ ${frames}`;
  }
  return `non-Error ${typeof e}: ${String(e).slice(0, 200)}`;
}

/** Why `e` is not a proper DicomError, or undefined when it is one. */
function untyped(e: unknown, sourceLength: number): string | undefined {
  if (!(e instanceof DicomError)) return describe(e);
  if (!isKnownCode(e.code)) return `DicomError with unknown code ${JSON.stringify(e.code)}: ${e.message}`;
  if (typeof e.message !== "string" || e.message.length === 0) return `DicomError ${e.code} without a message`;
  if (e.offset !== undefined && (!Number.isInteger(e.offset) || e.offset < 0 || e.offset > sourceLength)) {
    return `DicomError ${e.code} with offset ${e.offset} outside the input (${sourceLength} bytes): ${e.message}`;
  }
  return undefined;
}

/** Reads the case and puts what was read through every consumer; collects what went wrong. */
function exercise(index: number, c: Case): CaseOutcome {
  const started = performance.now();
  const outcome: CaseOutcome = { index, label: c.label, read: "threw", steps: [], ms: 0, problems: [] };
  const step = <T>(name: string, sourceLength: number, f: () => T): T | undefined => {
    try {
      const value = f();
      outcome.steps.push(`${name}:ok`);
      return value;
    } catch (e) {
      const why = untyped(e, sourceLength);
      if (why) outcome.problems.push(`${name} threw ${why}`);
      else outcome.steps.push(`${name}:${(e as DicomError).code}`);
      return undefined;
    }
  };
  const read = (options: ReadOptions | undefined, name: string): ReadResult | undefined => {
    let result: ReadResult;
    try {
      result = readDicom(c.bytes, options);
    } catch (e) {
      outcome.problems.push(`${name} threw instead of returning an error: ${describe(e)}`);
      return undefined;
    }
    if (result.error !== undefined) {
      const why = untyped(result.error, Math.max(c.bytes.length, result.source.length));
      if (why) outcome.problems.push(`${name} returned a bad error: ${why}`);
    }
    return result;
  };

  const result = read(c.options, "readDicom");
  if (result) {
    outcome.read = result.error?.code ?? "ok";
    const got = result.error?.code ?? "no-error";
    if (c.expect && got !== c.expect) {
      outcome.problems.push(`expected ${c.expect}, got ${got}${result.error ? `: ${result.error.message.slice(0, 300)}` : ""}`);
    }
    const { dataset, meta } = result;
    const n = result.source.length;
    step("datasetToJson", n, () => JSON.stringify(datasetToJson(dataset)));
    step("metaToJson", n, () => JSON.stringify(datasetToJson(meta, { skipFileMeta: false })));
    const frames = step("locateFrames", n, () => locateFrames(dataset));
    if (frames) step("frameBytes", n, () => frames.frames.slice(0, 4).map(frameBytes));
    const written = step("writePart10", n, () => writePart10(dataset, { transferSyntaxUid: EXPLICIT_LE }));
    if (written) {
      // Whatever was read, the writer's output of it must read back cleanly.
      const again = readDicom(written);
      if (again.error) outcome.problems.push(`what writePart10 wrote from the read dataset does not read back: ${again.error.message}`);
    }
    // In the syntax it was read in too: big endian, implicit, deflated and encapsulated writing.
    if (result.transferSyntaxUid !== EXPLICIT_LE) {
      step("writePart10(same syntax)", n, () => writePart10(dataset, { transferSyntaxUid: result.transferSyntaxUid }));
    }
  }
  read({ ...c.options, untilTag: Tags.PixelData }, "readDicom(untilTag)");

  outcome.ms = performance.now() - started;
  if (outcome.ms > CASE_LIMIT_MS) outcome.problems.push(`took ${outcome.ms.toFixed(0)} ms (limit ${CASE_LIMIT_MS} ms)`);
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// Worker side
// ---------------------------------------------------------------------------------------------

interface Job {
  group: GroupName;
  fuzzSeed: number;
  iterations: number;
  startAt: number;
}

type FromWorker =
  { type: "total"; total: number } | { type: "start"; index: number } | { type: "case"; outcome: CaseOutcome } | { type: "done" };

function workerMain(job: Job): void {
  const port = parentPort;
  if (!port) throw new Error("not in a worker");
  const send = (m: FromWorker) => port.postMessage(m);
  const plan = planFor(job.group, job.fuzzSeed, job.iterations);
  send({ type: "total", total: plan.total });
  const baseline = process.memoryUsage().arrayBuffers;
  for (let index = job.startAt; index < plan.total; index++) {
    send({ type: "start", index });
    let c: Case;
    try {
      c = plan.build(index);
    } catch (e) {
      const problem = `building the case threw ${describe(e)}`;
      send({ type: "case", outcome: { index, label: `case ${index}`, read: "not built", steps: [], ms: 0, problems: [problem] } });
      continue;
    }
    const outcome = exercise(index, c);
    const held = process.memoryUsage().arrayBuffers - baseline;
    if (held > CASE_ARRAY_BUFFER_LIMIT)
      outcome.problems.push(`${Math.round(held / 2 ** 20)} MiB of ArrayBuffers over the baseline after the case`);
    send({ type: "case", outcome });
  }
  send({ type: "done" });
}

// ---------------------------------------------------------------------------------------------
// Main side
// ---------------------------------------------------------------------------------------------

interface Problem {
  index: number;
  label: string;
  problem: string;
}

interface GroupReport {
  total: number;
  cases: number;
  read: Record<string, number>;
  steps: Record<string, number>;
  slowest: { ms: number; label: string };
  problems: Problem[];
  wallMs: number;
}

const bump = (counts: Record<string, number>, key: string): void => {
  counts[key] = (counts[key] ?? 0) + 1;
};

type WorkerEnd = { kind: "done" } | { kind: "died"; index: number; reason: string };

/** Runs the group's cases from `job.startAt` in a worker until they are done or the worker dies or hangs. */
function runWorker(job: Job, onMessage: (m: FromWorker) => void): Promise<WorkerEnd> {
  return new Promise((resolve) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: job,
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB, maxYoungGenerationSizeMb: 16 },
    });
    let current = -1;
    let lastHeard = Date.now();
    let done = false;
    let failure: string | undefined;
    const watchdog = setInterval(() => {
      if (Date.now() - lastHeard > HANG_MS) {
        failure = `hang: the case ran for more than ${HANG_MS} ms, the worker was ended`;
        clearInterval(watchdog);
        void worker.terminate();
      }
    }, 250);
    worker.on("message", (m: FromWorker) => {
      lastHeard = Date.now();
      if (m.type === "start") current = m.index;
      if (m.type === "done") done = true;
      onMessage(m);
    });
    worker.on("error", (e) => {
      failure ??= `the worker died: ${describe(e)}`;
    });
    worker.on("exit", (code) => {
      clearInterval(watchdog);
      resolve(done ? { kind: "done" } : { kind: "died", index: current, reason: failure ?? `the worker exited with code ${code}` });
    });
  });
}

async function runGroup(group: GroupName): Promise<GroupReport> {
  const started = performance.now();
  const report: GroupReport = { total: 0, cases: 0, read: {}, steps: {}, slowest: { ms: 0, label: "" }, problems: [], wallMs: 0 };
  const onMessage = (m: FromWorker) => {
    if (m.type === "total") report.total = m.total;
    if (m.type !== "case") return;
    const o = m.outcome;
    report.cases++;
    bump(report.read, o.read);
    for (const s of o.steps) bump(report.steps, s);
    if (o.ms > report.slowest.ms) report.slowest = { ms: o.ms, label: o.label };
    for (const problem of o.problems) report.problems.push({ index: o.index, label: o.label, problem });
  };
  let startAt = 0;
  let deaths = 0;
  for (;;) {
    const end = await runWorker({ group, fuzzSeed: FUZZ_SEED, iterations: FUZZ_ITERATIONS, startAt }, onMessage);
    if (end.kind === "done") break;
    // The case that was running crashed the worker or hung: report it, then go on after it.
    report.problems.push({ index: end.index, label: "", problem: end.reason });
    if (end.index >= 0) {
      report.cases++;
      bump(report.read, "worker died");
    }
    if (++deaths >= MAX_CRASHES || end.index < 0) {
      report.problems.push({
        index: -1,
        label: "",
        problem: `gave up after ${deaths} dead worker(s); cases after ${end.index} did not run`,
      });
      break;
    }
    startAt = end.index + 1;
  }
  report.wallMs = performance.now() - started;
  return report;
}

let reproDir: string | undefined;

/** Rebuilds failing cases here (generation is deterministic), saves their bytes, and formats the failures. */
function describeProblems(group: GroupName, problems: Problem[]): string {
  let plan: Plan | undefined;
  const lines: string[] = [];
  for (const p of problems.slice(0, 12)) {
    let what = p.label;
    if (p.index >= 0) {
      try {
        plan ??= planFor(group, FUZZ_SEED, FUZZ_ITERATIONS);
        const c = plan.build(p.index);
        reproDir ??= mkdtempSync(join(tmpdir(), "voxelgate-fuzz-"));
        const file = join(reproDir, `${group}-${FUZZ_SEED}-${p.index}.dcm`);
        writeFileSync(file, c.bytes);
        const options = c.options && Object.keys(c.options).length > 0 ? `, read options ${JSON.stringify(c.options)}` : "";
        const inline = c.bytes.length <= 1024 ? `, base64 ${toBase64(c.bytes)}` : "";
        what = `${c.label} (${c.bytes.length} bytes saved in ${file}${options}${inline})`;
      } catch (e) {
        what = `${p.label} (could not rebuild the case: ${describe(e)})`;
      }
    }
    lines.push(`- case ${p.index}: ${what}\n    ${p.problem}`);
  }
  if (problems.length > 12) lines.push(`… and ${problems.length - 12} more`);
  return `${problems.length} problem(s) with FUZZ_SEED=${FUZZ_SEED} FUZZ_ITERATIONS=${FUZZ_ITERATIONS}, group ${group}:\n${lines.join("\n")}`;
}

function summarize(t: TestContext, group: GroupName, r: GroupReport): void {
  const sorted = (o: Record<string, number>) =>
    Object.entries(o)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
  t.diagnostic(
    `${group}: ${r.cases}/${r.total} cases in ${(r.wallMs / 1000).toFixed(1)} s (FUZZ_SEED ${FUZZ_SEED}, FUZZ_ITERATIONS ${FUZZ_ITERATIONS})`,
  );
  t.diagnostic(`${group} readDicom outcomes: ${sorted(r.read)}`);
  t.diagnostic(`${group} later steps (ok or the DicomError thrown): ${sorted(r.steps) || "none"}`);
  t.diagnostic(`${group} slowest case: ${r.slowest.ms.toFixed(1)} ms (${r.slowest.label})`);
}

async function runChecked(t: TestContext, group: GroupName): Promise<void> {
  const report = await runGroup(group);
  summarize(t, group, report);
  assert.equal(report.problems.length, 0, describeProblems(group, report.problems));
  assert.equal(report.cases, report.total, "every case ran");
}

if (isMainThread) {
  const peakRss = (): number => process.resourceUsage().maxRSS * 1024;
  const rssBefore = peakRss();

  test("fuzz: mutated and truncated files built in memory never crash, hang or blow up; every failure is a DicomError", async (t) => {
    await runChecked(t, "memory");
  });

  test("fuzz: mutated and truncated pydicom test files never crash, hang or blow up; every failure is a DicomError", async (t) => {
    if (!requireTools(t, TOOLS.pydicom)) return;
    await runChecked(t, "pydicom");
  });

  test("hostile inputs: nesting, deflate, length and frame-count bombs and degenerate files give typed errors", async (t) => {
    await runChecked(t, "hostile");
  });

  test("memory stayed bounded over the whole run", (t) => {
    const growth = peakRss() - rssBefore;
    t.diagnostic(`peak RSS grew by ${Math.round(growth / 2 ** 20)} MiB`);
    assert.ok(growth < RSS_GROWTH_LIMIT, `peak RSS grew by ${Math.round(growth / 2 ** 20)} MiB (limit ${RSS_GROWTH_LIMIT / 2 ** 20} MiB)`);
  });
} else {
  workerMain(workerData as Job);
}
