/**
 * A bounded on-disk cache of derived bytes (transcoded frames, rendered images): files under one
 * folder, evicted oldest-used first when over the byte budget, and a stampede of identical
 * requests computes once (the others wait for the same promise). Entries are never stale: keys
 * carry the instance's content hash, so a changed instance simply misses.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

export class DiskCache {
  private readonly entries = new Map<string, number>();
  private bytes = 0;
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly onLookup?: (hit: boolean) => void,
  ) {
    // Start empty: what a previous run cached is not accounted for, so it is dropped.
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }

  private fileOf(key: string): string {
    return join(this.dir, createHash("sha256").update(key).digest("hex"));
  }

  /** The cached bytes for `key`, or `compute()`'s, stored for next time. */
  async get(key: string, compute: () => Promise<Buffer>): Promise<Buffer> {
    if (this.entries.has(key)) {
      const size = this.entries.get(key) as number;
      this.entries.delete(key);
      this.entries.set(key, size);
      try {
        const bytes = await readFile(this.fileOf(key));
        this.hits++;
        this.onLookup?.(true);
        return bytes;
      } catch {
        this.entries.delete(key);
        this.bytes -= size;
      }
    }
    const running = this.inFlight.get(key);
    if (running) return running;
    this.misses++;
    this.onLookup?.(false);
    const work = (async () => {
      const bytes = await compute();
      await this.store(key, bytes).catch(() => undefined);
      return bytes;
    })();
    this.inFlight.set(key, work);
    try {
      return await work;
    } finally {
      this.inFlight.delete(key);
    }
  }

  private async store(key: string, bytes: Buffer): Promise<void> {
    if (bytes.length > this.maxBytes) return;
    const file = this.fileOf(key);
    const temp = join(this.dir, `.${randomUUID()}`);
    await writeFile(temp, bytes);
    await rename(temp, file);
    this.entries.set(key, bytes.length);
    this.bytes += bytes.length;
    for (const [oldKey, size] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldKey);
      this.bytes -= size;
      await unlink(this.fileOf(oldKey)).catch(() => undefined);
    }
  }

  /** The cached bytes for `key` without computing anything (proxy mode revalidates before it replaces). */
  async peek(key: string): Promise<Buffer | undefined> {
    const size = this.entries.get(key);
    if (size === undefined) return undefined;
    try {
      const bytes = await readFile(this.fileOf(key));
      this.entries.delete(key);
      this.entries.set(key, size);
      return bytes;
    } catch {
      this.entries.delete(key);
      this.bytes -= size;
      return undefined;
    }
  }

  /** Stores (or replaces) the bytes for `key`. */
  async put(key: string, bytes: Buffer): Promise<void> {
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.bytes -= old;
    }
    await this.store(key, bytes).catch(() => undefined);
  }

  /** Drops every entry whose key starts with `prefix` (an instance's content hash when it is deleted). */
  async forget(prefix: string): Promise<number> {
    const doomed = [...this.entries.keys()].filter((k) => k.startsWith(prefix));
    for (const key of doomed) {
      this.bytes -= this.entries.get(key) ?? 0;
      this.entries.delete(key);
      await unlink(this.fileOf(key)).catch(() => undefined);
    }
    return doomed.length;
  }

  /** Bytes held (for metrics and tests). */
  get size(): number {
    return this.bytes;
  }

  /** Files on disk (tests). */
  fileCount(): number {
    return readdirSync(this.dir).filter((n) => !n.startsWith(".")).length;
  }
}
