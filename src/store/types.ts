/**
 * The two storage interfaces every service talks to. The embedded default is SqliteIndex +
 * FileBlobStore; PostgreSQL and S3 implementations plug in behind the same interfaces.
 */
import type { Readable } from "node:stream";
import type { DicomJsonDataset } from "../dicom/index.js";
import type { AccessFilter } from "./access.js";
import type { SearchQuery, SearchResult } from "./query.js";

/** Byte range, inclusive start, exclusive end. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Where instance files live. Keys are opaque, safe strings chosen by the ingest pipeline. */
export interface BlobStore {
  /** A fresh local path for an upload to be written to (same file system as the store for an atomic rename). */
  stagingPath(): string;
  /** Moves finished staging files under their keys, durably (fsync), atomically per blob: readers see a whole blob or none. */
  commitMany(items: Array<{ stagingPath: string; key: string }>): Promise<void>;
  /** Removes a staging file that will not be committed (never throws). */
  discard(stagingPath: string): Promise<void>;
  /** Streams a blob, or a range of it. */
  read(key: string, range?: ByteRange): Readable;
  /** Reads a range into memory (for small ranges: frames, bulk data, headers). */
  readBytes(key: string, range: ByteRange): Promise<Buffer>;
  /** Local path when the store is on this machine's disk (lets the server use sendfile-like paths), else undefined. */
  localPath(key: string): string | undefined;
  delete(key: string): Promise<void>;
  /** Throws when the store cannot be written (readiness). */
  check(): Promise<void>;
}

/** One binary value of an instance, served as bulk data. */
export interface BulkDataEntry {
  /** The URI path below the instance: e.g. "7FE00010" or "00540016/0/00181074". */
  path: string;
  /** Byte range of the value in the stored file (positions in the file; not used for deflated files). */
  offset: number;
  length: number;
  vr: string;
}

/** Byte ranges of one frame in the stored file: one range for native pixels, one per fragment for encapsulated. */
export type FrameRanges = ByteRange[];

/** Everything the index keeps about an instance, produced once at ingest. */
export interface InstanceRecord {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  blobKey: string;
  fileSize: number;
  sha256: string;
  /** Full instance DICOM JSON with BulkDataURIs (for matching and materialized metadata). */
  metadata: DicomJsonDataset;
  /** Serialized metadata JSON, raw-deflated with a full flush (concatenable, see metadata-doc.ts). */
  metadataChunk: Buffer;
  metadataLength: number;
  metadataCrc32: number;
  frames: FrameRanges[];
  bulk: BulkDataEntry[];
  /** True when byte ranges are positions in the file (false for deflated transfer syntaxes). */
  rangesInFile: boolean;
  /** What was odd but tolerated (reported in the STOW response). */
  warnings?: string[];
}

/** A stored instance as the index returns it. */
export interface InstanceRow {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  blobKey: string;
  fileSize: number;
  sha256: string;
  instanceNumber: number | null;
  numberOfFrames: number | null;
  storedAt: number;
}

export type DuplicatePolicy = "reject" | "ignore" | "overwrite";

export type CommitOutcome =
  | { status: "stored" }
  /** Same SOP Instance UID, identical bytes: nothing to do. */
  | { status: "identical" }
  /** Same SOP Instance UID, different bytes, policy ignore: kept the old one. */
  | { status: "ignored" }
  /** Same SOP Instance UID, different bytes, policy overwrite: replaced; the old blob key must be deleted. */
  | { status: "overwritten"; oldBlobKey: string }
  /** Same SOP Instance UID, different bytes, policy reject. */
  | { status: "conflict"; reason: string };

/** Scope of a retrieve or delete: a study, a series in it, or an instance in that. */
export interface Scope {
  studyUid: string;
  seriesUid?: string;
  sopUid?: string;
}

/** Materialized metadata chunks for a scope, in presentation order (series number, instance number). */
export interface MetadataChunks {
  /** Raw-deflate chunks (full flush) of each instance's JSON. */
  chunks: Buffer[];
  lengths: number[];
  crcs: number[];
  /** Changes whenever anything in the scope changes: the ETag. */
  version: string;
}

export interface IndexStats {
  studies: number;
  series: number;
  instances: number;
}

export interface Index {
  /** Adds instances (creating studies and series), applying the duplicate policy, all in one transaction. */
  commitInstances(records: InstanceRecord[], policy: DuplicatePolicy): CommitOutcome[];
  /** One instance: `commitInstances([record])[0]`. */
  commitInstance(record: InstanceRecord, policy: DuplicatePolicy): CommitOutcome;
  instance(sopUid: string): InstanceRow | undefined;
  /** Instances in a scope, presentation order; empty when the scope does not exist. */
  instances(scope: Scope): InstanceRow[];
  /** True when the scope exists (the study, the series in that study, the instance in that series). */
  exists(scope: Scope): boolean;
  frames(sopUid: string): { frames: FrameRanges[]; rangesInFile: boolean } | undefined;
  bulkData(sopUid: string): BulkDataEntry[] | undefined;
  metadata(scope: Scope): MetadataChunks | undefined;
  /** The version `metadata(scope).version` would have, without reading the chunks (cache lookups). */
  metadataVersion(scope: Scope): string | undefined;
  /** Durably notes blob keys whose files are about to appear or disappear (crash recovery). */
  addBlobIntents(keys: string[]): void;
  /** Forgets intents once their files are settled. */
  clearBlobIntents(keys: string[]): void;
  /** Intents left by a crash, with whether an instance still uses each key. */
  blobIntents(): Array<{ key: string; referenced: boolean }>;
  /** Removes a scope's rows; returns the blob keys to delete afterwards (noted as intents in the same transaction). */
  delete(scope: Scope): string[];
  search(query: SearchQuery): SearchResult;
  /**
   * True when the study (the series in it) is stored and the filter lets it through: a series
   * restriction of a rule applies to the series given (give rulesForScope's filter for whole scopes).
   */
  allows(scope: { studyUid: string; seriesUid?: string }, access: AccessFilter): boolean;
  stats(): IndexStats;
  /** Throws when the index cannot be read (readiness). */
  check(): void;
  close(): void;
}
