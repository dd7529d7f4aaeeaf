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
import { FailureReason, type IngestResult } from "./ingest-result.js";
import { SqliteIndex } from "./sqlite-index.js";
import type { BlobStore, CommitOutcome, DuplicatePolicy, Index, InstanceRecord, Scope } from "./types.js";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/** Largest single instance accepted (the file is parsed in memory once at ingest). */
export const DEFAULT_MAX_INSTANCE_BYTES = 1024 * 1024 * 1024;

export interface FileArchiveOptions extends ArchiveOptions {
  maxInstanceBytes?: number;
}

/** An instance staged by prepareStream: its record, or the failure that stopped it. */
class StagedInstance implements PendingInstance {
  settled = false;
  constructor(
    private readonly archive: FileArchive,
    readonly stagingPath: string,
    readonly outcome: { record: InstanceRecord } | { failure: IngestResult },
  ) {}
  async commit(): Promise<IngestResult> {
    return (await this.archive.commitAll([this]))[0] as IngestResult;
  }
  async discard(): Promise<void> {
    this.settled = true;
    await this.archive.blobs.discard(this.stagingPath);
  }
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
    try {
      const staged = await stageStream(stream, path, this.maxInstanceBytes);
      return await this.prepareStaged(staged, options);
    } catch (err) {
      await this.blobs.discard(path);
      return new StagedInstance(this, path, { failure: failureResult(err) });
    }
  }

  private async prepareStaged(staged: StagedFile, options: IngestOptions): Promise<StagedInstance> {
    try {
      const record = await materialize(staged, blobKeyFor(staged.sha256), options.expectedStudyUid, options.authorize);
      return new StagedInstance(this, staged.path, { record });
    } catch (err) {
      await this.blobs.discard(staged.path);
      return new StagedInstance(this, staged.path, { failure: failureResult(err) });
    }
  }

  /**
   * Makes staged instances visible together: files first (fsync + rename, in parallel), then one
   * index transaction, so an indexed instance always has its file and a request pays for one
   * index sync, not one per instance.
   */
  async commitAll(pending: PendingInstance[]): Promise<IngestResult[]> {
    const staged = pending.map((p) => {
      if (!(p instanceof StagedInstance)) throw new Error("commitAll takes instances prepared by this archive");
      if (p.settled) throw new Error("instance already committed or discarded");
      p.settled = true;
      return p;
    });
    // Group commit: requests that arrive while a commit is running share the next one, so
    // concurrent small STOWs pay one round of syncs together instead of one each.
    return new Promise<IngestResult[]>((resolve) => {
      this.commitQueue.push({ staged, resolve });
      if (!this.committing) void this.drainCommits();
    });
  }

  private readonly commitQueue: Array<{ staged: StagedInstance[]; resolve: (results: IngestResult[]) => void }> = [];
  private committing = false;

  private async drainCommits(): Promise<void> {
    this.committing = true;
    try {
      while (this.commitQueue.length > 0) {
        const group = this.commitQueue.splice(0);
        const all = group.flatMap((g) => g.staged);
        const results = await this.commitBatch(all).catch((err: unknown) => all.map(() => failureResult(err)));
        let offset = 0;
        for (const g of group) {
          g.resolve(results.slice(offset, offset + g.staged.length));
          offset += g.staged.length;
        }
      }
    } finally {
      this.committing = false;
    }
  }

  private async commitBatch(staged: StagedInstance[]): Promise<IngestResult[]> {
    const results: IngestResult[] = new Array<IngestResult>(staged.length);
    const toCommit: Array<{ index: number; record: InstanceRecord; path: string }> = [];
    staged.forEach((p, index) => {
      if ("failure" in p.outcome) results[index] = p.outcome.failure;
      else toCommit.push({ index, record: p.outcome.record, path: p.stagingPath });
    });
    try {
      // Intent first (one index sync): a crash after a rename but before the index commit leaves a
      // file that start-up recognizes and removes.
      this.index.addBlobIntents(toCommit.map((c) => c.record.blobKey));
      await this.blobs.commitMany(toCommit.map((c) => ({ stagingPath: c.path, key: c.record.blobKey })));
      const outcomes = this.index.commitInstances(
        toCommit.map((c) => c.record),
        this.policy,
      );
      const kept = new Set<string>();
      const dropped: string[] = [];
      toCommit.forEach((c, i) => {
        const outcome = outcomes[i] as CommitOutcome;
        const r = c.record;
        const ids = { studyUid: r.studyUid, seriesUid: r.seriesUid, sopUid: r.sopUid, sopClassUid: r.sopClassUid };
        switch (outcome.status) {
          case "stored":
            kept.add(r.blobKey);
            results[c.index] = { ok: true, status: "stored", ...ids, warnings: r.warnings ?? [] };
            break;
          case "identical":
            kept.add(r.blobKey);
            results[c.index] = { ok: true, status: "identical", ...ids, warnings: ["already stored with identical content"] };
            break;
          case "overwritten":
            kept.add(r.blobKey);
            dropped.push(outcome.oldBlobKey);
            results[c.index] = { ok: true, status: "overwritten", ...ids, warnings: r.warnings ?? [] };
            break;
          case "ignored":
            dropped.push(r.blobKey);
            results[c.index] = {
              ok: true,
              status: "ignored",
              ...ids,
              warnings: [
                "an instance with this SOP Instance UID is already stored with other content; kept the stored one (duplicate policy: ignore)",
              ],
            };
            break;
          case "conflict":
            dropped.push(r.blobKey);
            results[c.index] = {
              ok: false,
              failureReason: FailureReason.duplicateSopInstance,
              reason: outcome.reason,
              sopUid: r.sopUid,
              sopClassUid: r.sopClassUid,
              studyUid: r.studyUid,
            };
            break;
        }
      });
      const toDelete = [...new Set(dropped)].filter((key) => !kept.has(key));
      for (const key of toDelete) await this.blobs.delete(key);
      this.index.clearBlobIntents([...new Set(dropped)]);
    } catch (err) {
      const failure = failureResult(err);
      for (const c of toCommit) results[c.index] = failure;
    } finally {
      await Promise.all(toCommit.map((c) => this.blobs.discard(c.path)));
    }
    return results;
  }

  async ingestStream(stream: Readable, options: IngestOptions = {}): Promise<IngestResult> {
    return (await this.prepareStream(stream, options)).commit();
  }

  async ingestFile(file: string, options: IngestOptions = {}): Promise<IngestResult> {
    const path = this.blobs.stagingPath();
    try {
      const size = await fileSize(file);
      if (size > this.maxInstanceBytes) return await this.ingestStream(createReadStream(file), options);
      await copyFile(file, path);
      const sha256 = await hashFile(path);
      return await (await this.prepareStaged({ path, size, sha256 }, options)).commit();
    } catch (err) {
      await this.blobs.discard(path);
      return failureResult(err);
    }
  }

  async delete(scope: Scope): Promise<number> {
    const keys = this.index.delete(scope);
    const unique = [...new Set(keys)];
    for (const key of unique) await this.blobs.delete(key);
    this.index.clearBlobIntents(unique);
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
  await recoverBlobs(index, blobs);
  return new FileArchive(dataDir, index, blobs, options);
}

/** Settles what a crash interrupted: files no instance uses are removed, files in use are kept. */
async function recoverBlobs(index: Index, blobs: BlobStore): Promise<void> {
  const intents = index.blobIntents();
  for (const { key, referenced } of intents) if (!referenced) await blobs.delete(key);
  index.clearBlobIntents(intents.map((i) => i.key));
}
