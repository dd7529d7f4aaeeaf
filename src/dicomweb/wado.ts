/**
 * WADO-RS retrieve (PS3.18 §10.4): instances as Part 10 with transfer-syntax negotiation, frames
 * and bulk data as byte ranges of the stored file. No HTTP types here: routes adapt these.
 *
 * Transfer syntax rules (PS3.18 §8.7.3.5.2): no parameter → Explicit VR Little Endian; `*` → as
 * stored; a named syntax → that one. Native syntaxes convert into each other (re-encoding the
 * dataset); anything needing a codec is refused with 406 until transcoding exists.
 */
import { Readable } from "node:stream";
import {
  frameBytes,
  isValidUid,
  locateFrames,
  lookupTransferSyntax,
  readDicom,
  swapBytesForVr,
  Tags,
  TransferSyntaxUids,
  writePart10,
} from "../dicom/index.js";
import { type CodecPool, canTranscode, transcodeDataset } from "../codec/index.js";
import type { Archive } from "../store/archive.js";
import type { BulkDataEntry, FrameRanges, InstanceRow, Scope } from "../store/types.js";
import { NATIVE_SYNTAXES } from "./media-types.js";

export class DicomwebError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The syntax requested: undefined (no parameter), "*" or a UID. */
export type RequestedSyntax = string | undefined;

/**
 * The syntax an instance will be sent in, or undefined when it cannot be produced. A named syntax
 * is honoured when a codec can make it (lossy included: the client named it).
 */
export function targetSyntax(stored: string, requested: RequestedSyntax): string | undefined {
  if (requested === "*") return stored;
  const wanted = requested ?? TransferSyntaxUids.ExplicitVRLittleEndian;
  if (wanted === stored) return stored;
  const storedSyntax = lookupTransferSyntax(stored);
  const wantedSyntax = lookupTransferSyntax(wanted);
  if (!storedSyntax || !wantedSyntax) return undefined;
  const nativeBoth = NATIVE_SYNTAXES.has(stored) && NATIVE_SYNTAXES.has(wanted) && !storedSyntax.encapsulated && !wantedSyntax.encapsulated;
  if (nativeBoth) return wanted;
  return canTranscode(NATIVE_SYNTAXES.has(stored) ? TransferSyntaxUids.ExplicitVRLittleEndian : stored, wanted) ? wanted : undefined;
}

/** Instances of a scope, or 404 with what was not found. */
export function scopeInstances(archive: Archive, scope: Scope): InstanceRow[] {
  const rows = archive.index.instances(scope);
  if (rows.length === 0) throw new DicomwebError(404, notFoundReason(scope));
  return rows;
}

/** UIDs as they come in a URL path. */
export interface ScopeParams {
  study: string;
  series?: string;
  instance?: string;
}

/** The scope a URL names; 400 for a malformed UID (which also stops path tricks). */
export function scopeFromPath(params: ScopeParams): Scope {
  const uids: Array<[string, string | undefined]> = [
    ["study", params.study],
    ["series", params.series],
    ["instance", params.instance],
  ];
  for (const [name, uid] of uids) {
    if (uid !== undefined && !isValidUid(uid)) {
      throw new DicomwebError(
        400,
        `${name} UID ${JSON.stringify(uid).slice(0, 80)} in the URL is not a valid DICOM UID (digits and dots, at most 64 characters)`,
      );
    }
  }
  return { studyUid: params.study, seriesUid: params.series, sopUid: params.instance };
}

export function notFoundReason(scope: Scope): string {
  if (scope.sopUid !== undefined) return `instance ${scope.sopUid} is not stored in series ${scope.seriesUid} of study ${scope.studyUid}`;
  if (scope.seriesUid !== undefined) return `series ${scope.seriesUid} is not stored in study ${scope.studyUid}`;
  return `study ${scope.studyUid} is not stored`;
}

/** Checks every instance can be sent in the requested syntax; 406 names the first that cannot. */
export function planSyntaxes(rows: InstanceRow[], requested: RequestedSyntax): string[] {
  return rows.map((row) => {
    const target = targetSyntax(row.transferSyntaxUid, requested);
    if (target === undefined) {
      throw new DicomwebError(
        406,
        `instance ${row.sopUid} is stored as ${row.transferSyntaxUid} and cannot be sent as ${requested ?? "Explicit VR Little Endian (the default)"} ` +
          `(no codec here can); ask with transfer-syntax=* to receive it as stored`,
      );
    }
    return target;
  });
}

export interface InstancePayload {
  transferSyntaxUid: string;
  size: number;
  body(): Readable;
}

/** The Part 10 bytes of an instance in the target syntax: the stored file itself when they match. */
export async function instancePayload(archive: Archive, row: InstanceRow, target: string, pool?: CodecPool): Promise<InstancePayload> {
  if (target === row.transferSyntaxUid) {
    return { transferSyntaxUid: target, size: row.fileSize, body: () => archive.blobs.read(row.blobKey) };
  }
  const bytes = await archive.blobs.readBytes(row.blobKey, { start: 0, end: row.fileSize });
  const read = readDicom(bytes);
  if (read.error) throw new DicomwebError(500, `stored instance ${row.sopUid} cannot be read: ${read.error.message}`);
  const nativeBoth = NATIVE_SYNTAXES.has(row.transferSyntaxUid) && NATIVE_SYNTAXES.has(target);
  let ds = read.dataset;
  if (!nativeBoth && ds.has(Tags.PixelData)) {
    try {
      // A deflated file's pixels are already inflated here: they are Explicit VR Little Endian.
      const fromSyntax =
        row.transferSyntaxUid === TransferSyntaxUids.DeflatedExplicitVRLittleEndian
          ? TransferSyntaxUids.ExplicitVRLittleEndian
          : row.transferSyntaxUid;
      ds = await transcodeDataset(ds, target, { fromSyntax, transcodeFrame: pool?.transcodeFrame });
    } catch (err) {
      throw new DicomwebError(
        406,
        `instance ${row.sopUid} cannot be transcoded from ${row.transferSyntaxUid} to ${target}: ${(err as Error).message}`,
      );
    }
  }
  const out = writePart10(ds, { transferSyntaxUid: target });
  return { transferSyntaxUid: target, size: out.length, body: () => Readable.from([out]) };
}

/** Parses "1,3,5" into frame numbers (1-based); 400 on anything else. */
export function parseFrameList(text: string): number[] {
  const parts = text.split(",");
  const frames: number[] = [];
  for (const p of parts) {
    if (!/^\s*[1-9][0-9]{0,8}\s*$/.test(p)) {
      throw new DicomwebError(
        400,
        `frame list ${JSON.stringify(text)} is not valid: frame numbers are positive integers separated by commas, e.g. 1,3,5`,
      );
    }
    frames.push(Number(p));
  }
  return frames;
}

export interface FramePayload {
  frame: number;
  /** The frame's bytes as stored: uncompressed pixels, or one compressed frame. */
  bytes: Buffer;
}

/** Reads the requested frames of an instance (1-based numbers); 404 for a frame out of range. */
export async function readFrames(
  archive: Archive,
  row: InstanceRow,
  numbers: number[],
  known?: { frames: FrameRanges[]; rangesInFile: boolean },
): Promise<FramePayload[]> {
  const table = known ?? archive.index.frames(row.sopUid);
  if (!table || table.frames.length === 0) throw new DicomwebError(404, `instance ${row.sopUid} has no pixel data, so it has no frames`);
  const count = table.frames.length;
  const bad = numbers.find((n) => n > count);
  if (bad !== undefined) {
    throw new DicomwebError(404, `instance ${row.sopUid} has ${count} frame${count === 1 ? "" : "s"}; frame ${bad} does not exist`);
  }
  if (table.rangesInFile) {
    return Promise.all(
      numbers.map(async (frame) => {
        const ranges = table.frames[frame - 1] ?? [];
        const parts = await Promise.all(ranges.map((r) => archive.blobs.readBytes(row.blobKey, r)));
        return { frame, bytes: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts) };
      }),
    );
  }
  // Deflated, big endian or bit-packed frames: re-read the instance and cut the frames out.
  const read = readDicom(await archive.blobs.readBytes(row.blobKey, { start: 0, end: row.fileSize }));
  const located = locateFrames(read.dataset);
  const pixelVr = (read.dataset.get(Tags.PixelData) ?? read.dataset.get(Tags.FloatPixelData) ?? read.dataset.get(Tags.DoubleFloatPixelData))
    ?.vr;
  return numbers.map((frame) => {
    const location = located.frames[frame - 1];
    if (!location) throw new DicomwebError(404, `frame ${frame} of instance ${row.sopUid} cannot be located`);
    let bytes = frameBytes(location);
    if (location.kind === "native" && !read.dataset.littleEndian && pixelVr !== undefined) {
      // Big endian swaps by the element's VR (OW: 16-bit words even for 32-bit pixels; OF/OD by 4/8), like the encoding did.
      bytes = swapBytesForVr(bytes, pixelVr);
    }
    return { frame, bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
  });
}

/** The bulk data entry behind a BulkDataURI path ("7FE00010", "00540016/0/00181074"). */
export function findBulkData(archive: Archive, row: InstanceRow, path: string): BulkDataEntry {
  const entries = archive.index.bulkData(row.sopUid) ?? [];
  const entry = entries.find((e) => e.path.toUpperCase() === path.toUpperCase());
  if (!entry) throw new DicomwebError(404, `instance ${row.sopUid} has no bulk data at ${path}`);
  return entry;
}

/** Bulk data bytes, little endian (PS3.18 §8.7.3.1); a Range narrows it. */
export async function readBulkData(archive: Archive, row: InstanceRow, entry: BulkDataEntry): Promise<Buffer> {
  const table = archive.index.frames(row.sopUid);
  if (table?.rangesInFile !== false && entry.offset >= 0) {
    return archive.blobs.readBytes(row.blobKey, { start: entry.offset, end: entry.offset + entry.length });
  }
  // Not addressable in the file (deflated or big endian): re-read and find the element.
  const read = readDicom(await archive.blobs.readBytes(row.blobKey, { start: 0, end: row.fileSize }));
  let ds = read.dataset;
  const steps = entry.path.split("/");
  for (let i = 0; i < steps.length; i += 2) {
    const tag = Number.parseInt(steps[i] ?? "", 16);
    const el = ds.get(tag);
    if (!el) break;
    if (i === steps.length - 1) {
      const raw = el.encapsulated?.encoded ?? el.bytes ?? new Uint8Array();
      const le = ds.littleEndian || el.encapsulated ? raw : swapBytesForVr(raw, el.vr);
      return Buffer.from(le.buffer, le.byteOffset, le.byteLength);
    }
    const item = el.items?.[Number(steps[i + 1])];
    if (!item) break;
    ds = item;
  }
  throw new DicomwebError(500, `bulk data ${entry.path} of instance ${row.sopUid} cannot be found in the stored file`);
}
