/**
 * A bounded on-disk cache of derived bytes (transcoded frames, rendered images): files under one
 * folder, evicted oldest-used first when over the byte budget, and a stampede of identical
 * requests computes once (the others wait for the same promise). Entries are never stale: keys
 * carry the instance's content hash, so a changed instance simply misses.
 *
 * A small memory tier in front keeps the most recently used small entries (a viewer asks for the
 * same thumbnail or frame again and again): a hit there costs no system call at all, while a disk
 * hit is open + read + close on the thread pool. Storing happens after the answer is sent; with
 * `writeOnEviction` an entry the memory tier keeps is written only when it leaves memory.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { open, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** The file name an entry's bytes are kept under (the key can be long and hold any character). */
export const cacheFileName = (key: string): string => createHash("sha256").update(key).digest("hex");

export interface DiskCacheOptions {
  /** Memory for recently used entries (0: none). Entries above 1/16 of it stay on disk only. */
  memoryBytes?: number;
  /**
   * Write an entry to disk only when it leaves the memory tier (or is too big for it), not as soon
   * as it is made. For small entries that are cheap to make (rendered images): writing each one
   * costs about as much as rendering it, and most are asked for again while still in memory.
   */
  writeOnEviction?: boolean;
  onLookup?: (hit: boolean) => void;
}

export class DiskCache {
  /** Key → size of the entries on disk, oldest used first. */
  private readonly entries = new Map<string, number>();
  private bytes = 0;
  /** Key → bytes of the memory tier, oldest used first. */
  private readonly memory = new Map<string, Buffer>();
  private memoryUsed = 0;
  private readonly memoryBytes: number;
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  /** Entries that left memory and whose files are being written (still served from here). */
  private readonly spilling = new Map<string, Buffer>();
  /** Computations and file writes under way, with their keys (forget and put wait for them). */
  private readonly writes = new Map<Promise<void>, string>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly options: DiskCacheOptions = {},
  ) {
    this.memoryBytes = options.memoryBytes ?? 0;
    // Start empty: what a previous run cached is not accounted for, so it is dropped.
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }

  private fileOf(key: string): string {
    return join(this.dir, cacheFileName(key));
  }

  private hit(bytes: Buffer): Buffer {
    this.hits++;
    this.options.onLookup?.(true);
    return bytes;
  }

  /**
   * The bytes for `key` when the memory tier holds them (counted as a hit), else undefined.
   * Synchronous on purpose: a hot entry (a thumbnail or image a viewer asks for again and again)
   * then costs no promise and no system call, so a route can answer it in the same tick.
   */
  cached(key: string): Buffer | undefined {
    const inMemory = this.memory.get(key);
    if (inMemory === undefined) {
      const leaving = this.spilling.get(key);
      return leaving === undefined ? undefined : this.hit(leaving);
    }
    this.memory.delete(key);
    this.memory.set(key, inMemory);
    this.touch(key);
    return this.hit(inMemory);
  }

  /** True when `key` is cached (in memory or on disk) or being computed. */
  holds(key: string): boolean {
    return this.memory.has(key) || this.spilling.has(key) || this.entries.has(key) || this.inFlight.has(key);
  }

  /** The cached bytes for `key`, or `compute()`'s, stored for next time. */
  async get(key: string, compute: () => Promise<Buffer>): Promise<Buffer> {
    const inMemory = this.cached(key);
    if (inMemory !== undefined) return inMemory;
    const size = this.entries.get(key);
    if (size !== undefined) {
      this.touch(key);
      try {
        const bytes = await this.readEntry(key, size);
        this.remember(key, bytes);
        return this.hit(bytes);
      } catch {
        this.drop(key);
      }
    }
    const running = this.inFlight.get(key);
    if (running) return running;
    this.misses++;
    this.options.onLookup?.(false);
    const work = compute();
    this.inFlight.set(key, work);
    // The answer goes out as soon as it is computed; the file is written meanwhile. The promise
    // stays in flight until the entry is in memory or on disk, so nobody computes it again.
    this.track(
      key,
      work
        .then(async (bytes) => {
          if (this.remember(key, bytes) && this.options.writeOnEviction) return;
          await this.store(key, bytes).catch(() => undefined);
        })
        .catch(() => undefined)
        .finally(() => this.inFlight.delete(key)),
    );
    return work;
  }

  private track(key: string, write: Promise<void>): void {
    const settled = write.finally(() => this.writes.delete(settled));
    this.writes.set(settled, key);
  }

  private writesOf(match: (key: string) => boolean): Array<Promise<void>> {
    return [...this.writes].filter(([, k]) => match(k)).map(([p]) => p);
  }

  private touch(key: string): void {
    const size = this.entries.get(key);
    if (size === undefined) return;
    this.entries.delete(key);
    this.entries.set(key, size);
  }

  private async readEntry(key: string, size: number): Promise<Buffer> {
    const handle = await open(this.fileOf(key), "r");
    try {
      const bytes = Buffer.allocUnsafe(size);
      const { bytesRead } = await handle.read(bytes, 0, size, 0);
      if (bytesRead !== size) throw new Error(`cache file of ${key} is truncated`);
      return bytes;
    } finally {
      await handle.close();
    }
  }

  /** Keeps the entry in the memory tier if it fits (true), evicting the oldest-used ones. */
  private remember(key: string, bytes: Buffer): boolean {
    if (bytes.length * 16 > this.memoryBytes) return false;
    if (this.memory.has(key)) return true;
    this.memory.set(key, bytes);
    this.memoryUsed += bytes.length;
    for (const [oldKey, old] of this.memory) {
      if (this.memoryUsed <= this.memoryBytes) break;
      this.memory.delete(oldKey);
      this.memoryUsed -= old.length;
      if (this.options.writeOnEviction && !this.entries.has(oldKey)) this.spill(oldKey, old);
    }
    return true;
  }

  /** Writes an entry that leaves memory to disk; until it is written it is still served. */
  private spill(key: string, bytes: Buffer): void {
    this.spilling.set(key, bytes);
    this.track(
      key,
      this.store(key, bytes)
        .catch(() => undefined)
        .finally(() => this.spilling.delete(key)),
    );
  }

  private drop(key: string): void {
    const size = this.entries.get(key);
    if (size !== undefined) {
      this.entries.delete(key);
      this.bytes -= size;
    }
    const inMemory = this.memory.get(key);
    if (inMemory !== undefined) {
      this.memory.delete(key);
      this.memoryUsed -= inMemory.length;
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
    for (const oldKey of this.entries.keys()) {
      if (this.bytes <= this.maxBytes) break;
      this.drop(oldKey);
      await unlink(this.fileOf(oldKey)).catch(() => undefined);
    }
  }

  /** The cached bytes for `key` without computing anything (proxy mode revalidates before it replaces). */
  async peek(key: string): Promise<Buffer | undefined> {
    const inMemory = this.memory.get(key) ?? this.spilling.get(key);
    if (inMemory !== undefined) {
      this.touch(key);
      return inMemory;
    }
    const size = this.entries.get(key);
    if (size === undefined) return undefined;
    try {
      const bytes = await this.readEntry(key, size);
      this.touch(key);
      this.remember(key, bytes);
      return bytes;
    } catch {
      this.drop(key);
      return undefined;
    }
  }

  /** Stores (or replaces) the bytes for `key`. */
  async put(key: string, bytes: Buffer): Promise<void> {
    // An older write of the same key must not land after (and over) this one.
    await Promise.all(this.writesOf((k) => k === key));
    const onDisk = this.entries.has(key);
    this.drop(key);
    if (this.remember(key, bytes) && this.options.writeOnEviction) {
      if (onDisk) await unlink(this.fileOf(key)).catch(() => undefined);
      return;
    }
    await this.store(key, bytes).catch(() => undefined);
  }

  /** Drops every entry whose key starts with `prefix` (an instance's content hash when it is deleted). */
  async forget(prefix: string): Promise<number> {
    // An entry being written now would otherwise land on disk after we looked.
    await Promise.all(this.writesOf((k) => k.startsWith(prefix)));
    const doomed = [...new Set([...this.entries.keys(), ...this.memory.keys()])].filter((k) => k.startsWith(prefix));
    for (const key of doomed) {
      const onDisk = this.entries.has(key);
      this.drop(key);
      if (onDisk) await unlink(this.fileOf(key)).catch(() => undefined);
    }
    return doomed.length;
  }

  /** Bytes held on disk (for metrics and tests). */
  get size(): number {
    return this.bytes;
  }

  /** Bytes held in memory (for metrics and tests). */
  get memorySize(): number {
    return this.memoryUsed;
  }

  /** Files on disk (tests). */
  fileCount(): number {
    return readdirSync(this.dir).filter((n) => !n.startsWith(".")).length;
  }
}
