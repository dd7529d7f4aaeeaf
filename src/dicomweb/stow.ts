/**
 * STOW-RS (PS3.18 §10.5): store the parts of a request and build the response dataset.
 *
 * - `application/dicom` parts are streamed straight into ingest (bounded memory).
 * - `application/dicom+json` requests (PS3.18 §10.5.1.2.2): JSON datasets whose BulkDataURIs
 *   name other parts by Content-Location; bulk parts (including compressed frames, with the
 *   transfer syntax in their media type) are collected, each dataset is encoded to Part 10 and
 *   ingested like any other instance.
 *
 * Status (PS3.18 §10.5.3): 200 all stored, 202 some failed or warned, 409 none stored.
 */
import { Readable } from "node:stream";
import {
  type DicomJsonDataset,
  encapsulateFrames,
  jsonToDataset,
  lookupTransferSyntax,
  Tags,
  TransferSyntaxUids,
  writePart10,
} from "../dicom/index.js";
import type { Archive, IngestOptions, PendingInstance } from "../store/archive.js";
import { FailureReason, type IngestResult, WarningReason } from "../store/ingest-result.js";
import { DICOM, DICOM_JSON, OCTET_STREAM, syntaxesForMediaType } from "./media-types.js";

/** One part of a STOW request, as the HTTP layer hands it over. */
export interface StowPart {
  /** Media type without parameters, lower case. */
  mediaType: string;
  /** Media type parameters (e.g. transfer-syntax), lower-case names. */
  params: Record<string, string>;
  contentLocation?: string;
  stream: Readable;
}

export interface StowOutcome {
  status: 200 | 202 | 409;
  response: DicomJsonDataset;
  results: IngestResult[];
}

/** Largest total of bulk data parts buffered for one dicom+json request. */
export const MAX_JSON_STOW_BULK_BYTES = 512 * 1024 * 1024;

export class StowRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Stages every application/dicom part in turn, and commits them only once the whole request was
 * read: a truncated or malformed request stores nothing. Parts of other types fail with a reason.
 */
export async function storeDicomParts(
  archive: Archive,
  parts: AsyncIterable<StowPart>,
  options: IngestOptions = {},
): Promise<IngestResult[]> {
  const staged: Array<PendingInstance | IngestResult> = [];
  try {
    for await (const part of parts) {
      if (part.mediaType !== DICOM) {
        part.stream.resume();
        staged.push({
          ok: false,
          failureReason: FailureReason.cannotUnderstand,
          reason: `part ${staged.length + 1} has media type ${part.mediaType || "(none)"}; this request declared type="application/dicom", so every part must be application/dicom`,
        });
        continue;
      }
      staged.push(await archive.prepareStream(part.stream, options));
    }
  } catch (err) {
    await Promise.all(staged.map((p) => ("commit" in p ? p.discard() : undefined)));
    throw err;
  }
  const pending = staged.filter((p): p is PendingInstance => "commit" in p);
  const committed = await archive.commitAll(pending);
  let next = 0;
  return staged.map((p) => ("commit" in p ? (committed[next++] as IngestResult) : p));
}

async function collect(stream: Readable, budget: { left: number }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    budget.left -= b.length;
    if (budget.left < 0) {
      throw new StowRequestError(
        413,
        `bulk data parts of an application/dicom+json request may total at most ${MAX_JSON_STOW_BULK_BYTES} bytes; send large instances as application/dicom`,
      );
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

interface BulkPart {
  bytes: Buffer[];
  mediaType: string;
  transferSyntax?: string;
}

/** Stores a `type="application/dicom+json"` request: metadata parts plus bulk data parts. */
export async function storeJsonParts(
  archive: Archive,
  parts: AsyncIterable<StowPart>,
  options: IngestOptions = {},
): Promise<IngestResult[]> {
  const budget = { left: MAX_JSON_STOW_BULK_BYTES };
  const datasets: unknown[] = [];
  const bulk = new Map<string, BulkPart>();
  const results: IngestResult[] = [];
  for await (const part of parts) {
    const bytes = await collect(part.stream, budget);
    if (part.mediaType === DICOM_JSON || part.mediaType === "application/json") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(bytes.toString("utf8"));
      } catch (err) {
        throw new StowRequestError(400, `a metadata part is not valid JSON: ${(err as Error).message}`);
      }
      if (Array.isArray(parsed)) datasets.push(...parsed);
      else datasets.push(parsed);
      continue;
    }
    if (!part.contentLocation) {
      throw new StowRequestError(
        400,
        `a bulk data part (${part.mediaType}) has no Content-Location header; BulkDataURIs in the metadata must name each bulk part by its Content-Location`,
      );
    }
    const entry = bulk.get(part.contentLocation) ?? {
      bytes: [],
      mediaType: part.mediaType,
      transferSyntax: part.params["transfer-syntax"],
    };
    entry.bytes.push(bytes);
    bulk.set(part.contentLocation, entry);
  }
  for (const json of datasets) results.push(await storeJsonDataset(archive, json, bulk, options));
  return results;
}

function pixelSyntaxOf(part: BulkPart): string | undefined {
  if (part.mediaType === OCTET_STREAM) return undefined;
  const allowed = syntaxesForMediaType(part.mediaType);
  if (part.transferSyntax) {
    if (!lookupTransferSyntax(part.transferSyntax))
      throw new Error(`unknown transfer syntax ${part.transferSyntax} on a ${part.mediaType} part`);
    return part.transferSyntax;
  }
  const first = allowed[0];
  if (!first)
    throw new Error(
      `bulk data media type ${part.mediaType} is not supported; use application/octet-stream or a frame media type such as image/jpeg`,
    );
  return first;
}

async function storeJsonDataset(
  archive: Archive,
  json: unknown,
  bulk: Map<string, BulkPart>,
  options: IngestOptions,
): Promise<IngestResult> {
  let pixelSyntax: string | undefined;
  let pixelFrames: Buffer[] | undefined;
  let converted;
  try {
    converted = jsonToDataset(json, {
      resolveBulkData: (uri, tag) => {
        const part = bulk.get(uri);
        if (!part) return undefined;
        if (tag === Tags.PixelData) {
          pixelSyntax = pixelSyntaxOf(part);
          if (pixelSyntax !== undefined) pixelFrames = part.bytes;
        }
        return part.bytes.length === 1 ? part.bytes[0] : Buffer.concat(part.bytes);
      },
    });
  } catch (err) {
    return {
      ok: false,
      failureReason: FailureReason.cannotUnderstand,
      reason: `the metadata cannot be encoded as DICOM: ${(err as Error).message}`,
    };
  }
  const ds = converted.dataset;
  if (pixelSyntax !== undefined && pixelFrames) {
    const old = ds.get(Tags.PixelData);
    ds.set({ tag: Tags.PixelData, vr: "OB", encapsulated: encapsulateFrames(pixelFrames), position: old?.position ?? -1 });
  }
  let bytes: Buffer;
  try {
    bytes = writePart10(ds, { transferSyntaxUid: pixelSyntax ?? TransferSyntaxUids.ExplicitVRLittleEndian });
  } catch (err) {
    return {
      ok: false,
      failureReason: FailureReason.cannotUnderstand,
      reason: `the metadata cannot be encoded as DICOM: ${(err as Error).message}`,
    };
  }
  const result = await archive.ingestStream(Readable.from([bytes]), options);
  if (result.ok && converted.warnings.length > 0) {
    return { ...result, warnings: [...result.warnings, ...converted.warnings], warningReason: WarningReason.coercionOfDataElements };
  }
  return result;
}

/** The STOW-RS response dataset (PS3.18 Table 10.5.3-1) and status for a set of results. */
export function stowResponse(results: IngestResult[], base: string): StowOutcome {
  const referenced: DicomJsonDataset[] = [];
  const failed: DicomJsonDataset[] = [];
  const studies = new Set<string>();
  let warned = false;
  for (const r of results) {
    if (r.ok) {
      studies.add(r.studyUid);
      const item: DicomJsonDataset = {
        "00081150": { vr: "UI", Value: [r.sopClassUid] },
        "00081155": { vr: "UI", Value: [r.sopUid] },
        "00081190": { vr: "UR", Value: [`${base}/studies/${r.studyUid}/series/${r.seriesUid}/instances/${r.sopUid}`] },
      };
      if (r.warningReason !== undefined) {
        warned = true;
        item["00081196"] = { vr: "US", Value: [r.warningReason] };
      }
      if (r.warnings.length > 0) item["00000902"] = { vr: "LO", Value: [r.warnings.join("; ")] };
      referenced.push(item);
    } else {
      const item: DicomJsonDataset = { "00081197": { vr: "US", Value: [r.failureReason] } };
      item["00081150"] = r.sopClassUid ? { vr: "UI", Value: [r.sopClassUid] } : { vr: "UI" };
      item["00081155"] = r.sopUid ? { vr: "UI", Value: [r.sopUid] } : { vr: "UI" };
      // Error Comment: the reason in words, so a person can act on it.
      item["00000902"] = { vr: "LO", Value: [r.reason] };
      failed.push(item);
    }
  }
  const response: DicomJsonDataset = {};
  if (studies.size === 1) response["00081190"] = { vr: "UR", Value: [`${base}/studies/${[...studies][0]}`] };
  if (failed.length > 0) response["00081198"] = { vr: "SQ", Value: failed };
  if (referenced.length > 0) response["00081199"] = { vr: "SQ", Value: referenced };
  const status = referenced.length === 0 ? 409 : failed.length > 0 || warned ? 202 : 200;
  return { status, response, results };
}
