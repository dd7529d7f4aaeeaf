/**
 * The archive facade: an Index and a BlobStore opened on a data folder, plus the ingest
 * pipeline. Services (dicomweb, CLI import) take an Archive; they never touch SQL or paths.
 */
import type { Readable } from "node:stream";
import type { DicomJsonDataset } from "../dicom/index.js";
import type { IngestResult } from "./ingest-result.js";
import type { BlobStore, DuplicatePolicy, Index, Scope } from "./types.js";

export interface ArchiveOptions {
  /** Data folder: index, files and staging area live under it (created when missing). */
  dataDir: string;
  duplicatePolicy?: DuplicatePolicy;
}

export interface IngestOptions {
  /** Study-targeted STOW: an instance of another study is refused. */
  expectedStudyUid?: string;
  /**
   * The caller's store grant (gateway policy): given the parsed instance, a reason to refuse it
   * (FailureReason 0124), or undefined to store it. Runs before anything becomes visible.
   */
  authorize?: (instance: StoreCandidate) => string | undefined;
}

/** What a store authorization looks at: the instance's UIDs and its DICOM JSON (top level). */
export interface StoreCandidate {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  metadata: DicomJsonDataset;
}

/** Placeholder for the public DICOMweb root inside materialized metadata; replaced when served. */
export const BASE_URL_TOKEN = "@@VOXELGATE_BASE@@";

/**
 * An instance parsed, validated and staged but not yet visible: a request can stage all its
 * instances and commit them only when the whole request was read (a truncated upload stores nothing).
 */
export interface PendingInstance {
  /** Makes the instance visible (file commit, then index transaction). A failed preparation returns its failure. */
  commit(): Promise<IngestResult>;
  /** Drops the staged file (never throws). */
  discard(): Promise<void>;
}

export interface Archive {
  readonly index: Index;
  readonly blobs: BlobStore;
  readonly dataDir: string;
  /** Stages and validates a DICOM file from a stream; nothing is visible until `commit()`. */
  prepareStream(stream: Readable, options?: IngestOptions): Promise<PendingInstance>;
  /** Commits prepared instances together (one index transaction); results in the same order. */
  commitAll(pending: PendingInstance[]): Promise<IngestResult[]>;
  /** Ingests a DICOM file from a readable stream (a STOW part, an upload): prepare + commit. */
  ingestStream(stream: Readable, options?: IngestOptions): Promise<IngestResult>;
  /** Ingests a DICOM file already on disk (import). The file is copied, never moved. */
  ingestFile(path: string, options?: IngestOptions): Promise<IngestResult>;
  /** Deletes a scope: index rows first (readers stop seeing it), then files. Returns instances removed. */
  delete(scope: Scope): Promise<number>;
  close(): Promise<void>;
}
