/**
 * Ingest does the work once (DESIGN.md): the upload is streamed to a staging file while it is
 * hashed, parsed once, validated, and materialized into an InstanceRecord (index keys, instance
 * DICOM JSON with BulkDataURIs, frame and bulk data byte ranges). The file is committed
 * (fsync + rename) before the index transaction, so an acknowledged instance is always whole.
 */
import { createHash } from "node:crypto";
import { open, readFile, stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { constants as zlibConstants, crc32, deflateRawSync } from "node:zlib";
import {
  type BulkDataContext,
  type Dataset,
  type DicomJsonDataset,
  datasetToJson,
  firstString,
  locateFrames,
  lookupTransferSyntax,
  readDicom,
  Tags,
  tagToHex,
  uidProblem,
} from "../dicom/index.js";
import { BASE_URL_TOKEN, type IngestOptions } from "./archive.js";
import { FailureReason, type IngestResult } from "./ingest-result.js";
import type { BulkDataEntry, FrameRanges, InstanceRecord } from "./types.js";

/** MPEG-2, MPEG-4 AVC/H.264 and HEVC/H.265 video transfer syntaxes (PS3.5 §8.2.5–8.2.8). */
const VIDEO_SYNTAXES = new Set(Array.from({ length: 9 }, (_, i) => `1.2.840.10008.1.2.4.${100 + i}`));

/** Binary values above this size are BulkDataURIs in metadata; smaller ones are inline. */
export const BULK_DATA_THRESHOLD = 1024;

export class IngestFailure extends Error {
  constructor(
    readonly failureReason: number,
    message: string,
    readonly uids: { sopUid?: string; sopClassUid?: string; studyUid?: string } = {},
  ) {
    super(message);
  }
}

export interface StagedFile {
  path: string;
  size: number;
  sha256: string;
  /** The bytes, when small enough to have been kept while staging (saves reading the file back). */
  bytes?: Buffer;
}

/** Uploads up to this size are also kept in memory while staged, so parsing does not read them back. */
const KEEP_IN_MEMORY_BYTES = 64 * 1024 * 1024;

/** Written to disk in slices of this size at most (bounded memory for large uploads). */
const WRITE_SLICE_BYTES = 4 * 1024 * 1024;

/** Streams an upload into a staging file, hashing it on the way; refuses more than `maxBytes`. */
export async function stageStream(source: AsyncIterable<Buffer | string> & Readable, path: string, maxBytes: number): Promise<StagedFile> {
  const hash = createHash("sha256");
  let size = 0;
  let kept: Buffer[] | undefined = [];
  let slice: Buffer[] = [];
  let sliceBytes = 0;
  // Plain handle writes: a stream pipeline costs ~1 ms of hops per small file, more than the write.
  const handle = await open(path, "w");
  try {
    for await (const data of source) {
      const chunk = typeof data === "string" ? Buffer.from(data) : data;
      size += chunk.length;
      if (size > maxBytes)
        throw new IngestFailure(FailureReason.outOfResources, `instance is larger than the ${maxBytes}-byte limit (maxInstanceBytes)`);
      hash.update(chunk);
      if (kept) {
        if (size <= KEEP_IN_MEMORY_BYTES) kept.push(chunk);
        else kept = undefined;
      }
      slice.push(chunk);
      sliceBytes += chunk.length;
      if (sliceBytes >= WRITE_SLICE_BYTES) {
        await handle.writev(slice);
        slice = [];
        sliceBytes = 0;
      }
    }
    if (slice.length > 0) await handle.writev(slice);
  } finally {
    await handle.close();
  }
  return { path, size, sha256: hash.digest("hex"), bytes: kept ? Buffer.concat(kept, size) : undefined };
}

/** One directory level (256 folders): a batch's files share few folders, so few directory syncs. */
export const blobKeyFor = (sha256: string): string => `${sha256.slice(0, 2)}/${sha256}.dcm`;

const uidPath = (studyUid: string, seriesUid: string, sopUid: string): string =>
  `/studies/${studyUid}/series/${seriesUid}/instances/${sopUid}`;

/** "00540016/0/00181074": the bulk data path of a value inside sequences. */
const bulkPathOf = (context: BulkDataContext): string => context.path.map((p, i) => (i % 2 === 1 ? String(p) : tagToHex(p))).join("/");

function requireUid(ds: Dataset, tag: number, name: string, uids: IngestFailure["uids"]): string {
  const value = firstString(ds, tag);
  if (value === undefined || value === "") throw new IngestFailure(FailureReason.cannotUnderstand, `the instance has no ${name}`, uids);
  const problem = uidProblem(value);
  if (problem)
    throw new IngestFailure(FailureReason.cannotUnderstand, `${name} ${JSON.stringify(value)} is not a valid UID: ${problem}`, uids);
  return value;
}

/** Parses a staged file and builds everything the index stores about it. */
export async function materialize(
  staged: StagedFile,
  blobKey: string,
  expectedStudyUid?: string,
  authorize?: IngestOptions["authorize"],
): Promise<InstanceRecord> {
  const bytes = staged.bytes ?? (await readFile(staged.path));
  const read = readDicom(bytes);
  const ds = read.dataset;
  const uids: IngestFailure["uids"] = {
    sopUid: firstString(ds, Tags.SOPInstanceUID),
    sopClassUid: firstString(ds, Tags.SOPClassUID),
    studyUid: firstString(ds, Tags.StudyInstanceUID),
  };
  if (read.error) {
    const what = read.error.code === "NOT_DICOM" ? "the part is not a DICOM file" : "the DICOM file cannot be read";
    throw new IngestFailure(FailureReason.cannotUnderstand, `${what}: ${read.error.message}`, uids);
  }
  const sopUid = requireUid(ds, Tags.SOPInstanceUID, "SOP Instance UID (0008,0018)", uids);
  const sopClassUid = requireUid(ds, Tags.SOPClassUID, "SOP Class UID (0008,0016)", uids);
  const studyUid = requireUid(ds, Tags.StudyInstanceUID, "Study Instance UID (0020,000D)", uids);
  const seriesUid = requireUid(ds, Tags.SeriesInstanceUID, "Series Instance UID (0020,000E)", uids);
  const warnings: string[] = [];
  const metaSop = firstString(read.meta, Tags.MediaStorageSOPInstanceUID);
  if (metaSop !== undefined && metaSop !== sopUid) {
    // Real files do this (pydicom's rtplan.dcm, rtdose.dcm): the dataset is authoritative, the file is kept as sent.
    warnings.push(`the file meta names Media Storage SOP Instance UID ${metaSop}, the dataset ${sopUid}: indexed under the dataset's UID`);
  }
  if (expectedStudyUid !== undefined && studyUid !== expectedStudyUid) {
    throw new IngestFailure(
      FailureReason.studyInstanceUidMismatch,
      `the instance belongs to study ${studyUid}, not to study ${expectedStudyUid} named in the request URL`,
      uids,
    );
  }
  const syntax = lookupTransferSyntax(read.transferSyntaxUid);
  if (!syntax) {
    throw new IngestFailure(
      FailureReason.transferSyntaxNotSupported,
      `transfer syntax ${read.transferSyntaxUid} is not known to this server`,
      uids,
    );
  }

  const base = `${BASE_URL_TOKEN}${uidPath(studyUid, seriesUid, sopUid)}/bulk/`;
  const bulk: BulkDataEntry[] = [];
  const json: DicomJsonDataset = datasetToJson(ds, {
    bulkData: (context) => {
      const isPixels = context.path.length === 1 && context.element.tag === Tags.PixelData;
      if (!isPixels && context.length <= BULK_DATA_THRESHOLD) return undefined;
      const path = bulkPathOf(context);
      const el = context.element;
      bulk.push({ path, offset: el.position, length: context.length, vr: el.vr });
      return base + path;
    },
  });
  // The stored transfer syntax, as QIDO and metadata clients (OHIF) read it.
  json["00083002"] = { vr: "UI", Value: [read.transferSyntaxUid] };

  // Byte ranges are file positions only when the file is not deflated; native frames are served
  // straight from the file only when little endian and byte aligned (else they are re-read and fixed).
  let rangesInFile = !syntax.deflated;
  const frames: FrameRanges[] = [];
  if (ds.has(Tags.PixelData) || ds.has(Tags.FloatPixelData) || ds.has(Tags.DoubleFloatPixelData)) {
    const pixelElement = ds.get(Tags.PixelData);
    if (VIDEO_SYNTAXES.has(read.transferSyntaxUid) && pixelElement?.encapsulated) {
      // A video object is one stream over all fragments, whatever its Number of Frames says.
      frames.push(pixelElement.encapsulated.fragments.map((f) => ({ start: f.position, end: f.position + f.bytes.length })));
    } else {
      try {
        const located = locateFrames(ds);
        for (const frame of located.frames) {
          if (frame.kind === "native") {
            if (frame.bitOffset !== 0 || !ds.littleEndian) rangesInFile = false;
            frames.push([{ start: frame.position, end: frame.position + Math.ceil(frame.bits / 8) }]);
          } else {
            frames.push(frame.fragments.map((f) => ({ start: f.position, end: f.position + f.bytes.length })));
          }
        }
      } catch (err) {
        throw new IngestFailure(
          FailureReason.cannotUnderstand,
          `the pixel data cannot be split into frames: ${(err as Error).message}`,
          uids,
        );
      }
    }
  }
  if (!ds.littleEndian) rangesInFile = false;

  const refused = authorize?.({ studyUid, seriesUid, sopUid, metadata: json });
  if (refused !== undefined) throw new IngestFailure(FailureReason.notAuthorized, refused, uids);

  const text = Buffer.from(JSON.stringify(json));
  return {
    studyUid,
    seriesUid,
    sopUid,
    sopClassUid,
    transferSyntaxUid: read.transferSyntaxUid,
    blobKey,
    fileSize: staged.size,
    sha256: staged.sha256,
    metadata: json,
    // Copied to its own size: zlib's output of a small input is a view of a 16 KiB buffer, and a
    // STOW request holds every record until its commit.
    metadataChunk: Buffer.from(deflateRawSync(text, { finishFlush: zlibConstants.Z_FULL_FLUSH, level: 3 })),
    metadataLength: text.length,
    metadataCrc32: crc32(text),
    frames,
    bulk,
    rangesInFile,
    warnings,
  };
}

export function failureResult(err: unknown): IngestResult {
  if (err instanceof IngestFailure) return { ok: false, failureReason: err.failureReason, reason: err.message, ...err.uids };
  const e = err as NodeJS.ErrnoException;
  if (e.code === "ENOSPC") return { ok: false, failureReason: FailureReason.outOfResources, reason: "the server's disk is full" };
  return { ok: false, failureReason: FailureReason.processingFailure, reason: `the server failed to store the instance: ${e.message}` };
}

export const fileSize = async (path: string): Promise<number> => (await stat(path)).size;
