/**
 * The embedded archive: SqliteIndex + FileBlobStore in one data folder.
 *   <data>/index.sqlite   the index (WAL)
 *   <data>/blobs/…        instance files, named by content hash
 *   <data>/staging/…      uploads in progress (swept at start: nothing acknowledged lives there)
 */
import { copyFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Readable } from "node:stream";
import type { Archive, ArchiveOptions, IngestOptions, PendingInstance } from "./archive.js";
import { FileBlobStore } from "./file-blob-store.js";
import { blobKeyFor, failureResult, fileSize, materialize, type StagedFile, stageStream } from "./ingest.js";
import type { IngestResult } from "./ingest-result.js";
import { SqliteIndex } from "./sqlite-index.js";
import type { BlobStore, DuplicatePolicy, Index, InstanceRecord, Scope } from "./types.js";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/** Largest single instance accepted (the file is parsed in memory once at ingest). */
export const DEFAULT_MAX_INSTANCE_BYTES = 1024 * 1024 * 1024;

export interface FileArchiveOptions extends ArchiveOptions {
  maxInstanceBytes?: number;
}

class FileArchive implements Archive {
  private readonly policy: DuplicatePolicy;
  private readonly maxInstanceBytes: number;

  constructor(
    readonly dataDir: string,
    readonly index: Index,
    readonly blobs: BlobStore,
    options: FileArchiveOptions,
  ) {
    this.policy = options.duplicatePolicy ?? "reject";
    this.maxInstanceBytes = options.maxInstanceBytes ?? DEFAULT_MAX_INSTANCE_BYTES;
  }

  async prepareStream(stream: Readable, options: IngestOptions = {}): Promise<PendingInstance> {
    const path = this.blobs.stagingPath();
    const discard = () => this.blobs.discard(path);
    try {
      const staged = await stageStream(stream, path, this.maxInstanceBytes);
      const record = await materialize(staged, blobKeyFor(staged.sha256), options.expectedStudyUid);
      let done = false;
      return {
        commit: async () => {
          if (done) throw new Error("instance already committed or discarded");
          done = true;
          try {
            return await this.commitRecord(path, record);
          } catch (err) {
            return failureResult(err);
          } finally {
            await discard();
          }
        },
        discard: async () => {
          done = true;
          await discard();
        },
      };
    } catch (err) {
      await discard();
      const failure = failureResult(err);
      return { commit: async () => failure, discard: async () => undefined };
    }
  }

  async ingestStream(stream: Readable, options: IngestOptions = {}): Promise<IngestResult> {
    return (await this.prepareStream(stream, options)).commit();
  }

  async ingestFile(file: string, options: IngestOptions = {}): Promise<IngestResult> {
    const path = this.blobs.stagingPath();
    try {
      const size = await fileSize(file);
      if (size > this.maxInstanceBytes) return this.ingestStream(createReadStream(file), options);
      await copyFile(file, path);
      const sha256 = await hashFile(path);
      return await this.ingestStaged({ path, size, sha256 }, options);
    } catch (err) {
      return failureResult(err);
    } finally {
      await this.blobs.discard(path);
    }
  }

  private async ingestStaged(staged: StagedFile, options: IngestOptions): Promise<IngestResult> {
    const record = await materialize(staged, blobKeyFor(staged.sha256), options.expectedStudyUid);
    return this.commitRecord(staged.path, record);
  }

  /** File first (fsync + rename), then the index transaction: an indexed instance always has its file. */
  private async commitRecord(stagingPath: string, record: InstanceRecord): Promise<IngestResult> {
    const blobKey = record.blobKey;
    await this.blobs.commit(stagingPath, blobKey);
    const outcome = this.index.commitInstance(record, this.policy);
    const ids = { studyUid: record.studyUid, seriesUid: record.seriesUid, sopUid: record.sopUid, sopClassUid: record.sopClassUid };
    switch (outcome.status) {
      case "stored":
      case "identical":
        return { ok: true, status: outcome.status, ...ids, warnings: [] };
      case "overwritten":
        if (outcome.oldBlobKey !== blobKey) await this.blobs.delete(outcome.oldBlobKey);
        return { ok: true, status: "overwritten", ...ids, warnings: [] };
      case "ignored":
        await this.blobs.delete(blobKey);
        return { ok: true, status: "ignored", ...ids, warnings: [`an instance with this SOP Instance UID is already stored; kept the stored one`] };
      case "conflict":
        await this.blobs.delete(blobKey);
        return { ok: false, failureReason: 0x0111, reason: outcome.reason, sopUid: record.sopUid, sopClassUid: record.sopClassUid, studyUid: record.studyUid };
    }
  }

  async delete(scope: Scope): Promise<number> {
    const keys = this.index.delete(scope);
    const seen = new Set<string>();
    for (const key of keys) {
      if (seen.has(key)) continue;
      seen.add(key);
      await this.blobs.delete(key);
    }
    return keys.length;
  }

  async close(): Promise<void> {
    this.index.close();
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export async function openArchive(options: FileArchiveOptions): Promise<Archive> {
  const dataDir = resolve(options.dataDir);
  const blobs = new FileBlobStore(dataDir);
  await blobs.sweepStaging();
  const index = new SqliteIndex(join(dataDir, "index.sqlite"));
  return new FileArchive(dataDir, index, blobs, options);
}
