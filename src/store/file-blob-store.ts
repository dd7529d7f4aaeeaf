/**
 * The embedded BlobStore: files under `<data>/blobs`, staged under `<data>/staging` on the same
 * file system so commit is fsync + rename (atomic: a reader sees the whole file or none).
 */
import { randomUUID } from "node:crypto";
import { createReadStream, mkdirSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, unlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import type { BlobStore, ByteRange } from "./types.js";

/** Keys are made by the ingest pipeline from hex digests; anything else is refused (no path tricks). */
const SAFE_KEY = /^[0-9a-f]{2}\/[0-9a-f]{16,128}\.dcm$/;

const READ_CHUNK_BYTES = 1024 * 1024;

/** fsyncs run on libuv's thread pool: a few at once overlap the disk's latency. */
const PARALLEL_SYNCS = 8;

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class FileBlobStore implements BlobStore {
  private readonly blobDir: string;
  private readonly stagingDir: string;

  constructor(root: string) {
    this.blobDir = join(root, "blobs");
    this.stagingDir = join(root, "staging");
    mkdirSync(this.blobDir, { recursive: true });
    mkdirSync(this.stagingDir, { recursive: true });
  }

  /** Staging files left by a crash are garbage: nothing acknowledged points at them. */
  async sweepStaging(): Promise<number> {
    const names = await readdir(this.stagingDir);
    await Promise.all(names.map((n) => rm(join(this.stagingDir, n), { force: true })));
    return names.length;
  }

  stagingPath(): string {
    return join(this.stagingDir, `${randomUUID()}.part`);
  }

  private pathOf(key: string): string {
    if (!SAFE_KEY.test(key)) throw new Error(`invalid blob key ${JSON.stringify(key)}`);
    return join(this.blobDir, key);
  }

  async commitMany(items: Array<{ stagingPath: string; key: string }>): Promise<void> {
    const targets = items.map((item) => ({ from: item.stagingPath, to: this.pathOf(item.key) }));
    const dirs = [...new Set(targets.map((t) => dirname(t.to)))];
    await Promise.all(dirs.map((d) => mkdir(d, { recursive: true })));
    await inParallel(targets, PARALLEL_SYNCS, async (t) => {
      await fsyncPath(t.from);
      await rename(t.from, t.to);
    });
    // The renames themselves must reach the disk before the index points at the files.
    await inParallel(dirs, PARALLEL_SYNCS, fsyncPath);
  }

  async discard(stagingPath: string): Promise<void> {
    await rm(stagingPath, { force: true }).catch(() => undefined);
  }

  read(key: string, range?: ByteRange): Readable {
    const path = this.pathOf(key);
    // 1 MiB reads: whole instances stream to multipart and zip responses in few, large chunks.
    if (!range) return createReadStream(path, { highWaterMark: READ_CHUNK_BYTES });
    if (range.end <= range.start) return Readable.from([]);
    return createReadStream(path, { start: range.start, end: range.end - 1, highWaterMark: READ_CHUNK_BYTES });
  }

  async readBytes(key: string, range: ByteRange): Promise<Buffer> {
    const handle = await open(this.pathOf(key), "r");
    try {
      const length = Math.max(0, range.end - range.start);
      const out = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, range.start + done);
        if (bytesRead === 0) throw new Error(`blob ${key} is shorter than expected (wanted bytes ${range.start}-${range.end})`);
        done += bytesRead;
      }
      return out;
    } finally {
      await handle.close();
    }
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  async delete(key: string): Promise<void> {
    await unlink(this.pathOf(key)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }

  async check(): Promise<void> {
    const probe = join(this.stagingDir, `.ready-${randomUUID()}`);
    await writeFile(probe, "ok");
    await unlink(probe);
  }
}
