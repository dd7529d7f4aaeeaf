/**
 * A bounded on-disk cache of derived bytes (transcoded frames, rendered images): files under one
 * folder, evicted oldest-used first when over the byte budget, and a stampede of identical
 * requests computes once (the others wait for the same promise). Entries are never stale: keys
 * carry the instance's content hash, so a changed instance simply misses.
 *
 * A small memory tier in front keeps the most recently used small entries (a viewer asks for the
 * same thumbnail or frame again and again): a hit there costs no system call at all, while a disk
 * hit is open + read + close on the thread pool. Storing happens after the answer is sent, or is
 * done by the worker thread that computed the entry (`getWrittenBy`).
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
  /** Key → the computation and its storing, until the file is written (forget waits for them). */
  private readonly storing = new Map<string, Promise<void>>();
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
    if (inMemory === undefined) return undefined;
    this.memory.delete(key);
    this.memory.set(key, inMemory);
    this.touch(key);
    return this.hit(inMemory);
  }

  /** True when `key` is cached (in memory or on disk) or being computed. */
  holds(key: string): boolean {
    return this.memory.has(key) || this.entries.has(key) || this.inFlight.has(key);
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
    return this.computing(key, compute(), false);
  }

  /**
   * Like `get`, but `compute` writes the entry's file itself, at the path it is given (atomically:
   * a temporary name in the same folder, then a rename), before it resolves. A worker thread does
   * that with blocking calls, which spares the event loop four round trips to the thread pool.
   */
  async getWrittenBy(key: string, compute: (file: string) => Promise<Buffer>): Promise<Buffer> {
    // A hit, or the same entry being computed: as `get` (which writes the file when it cannot read it).
    if (this.holds(key)) return this.get(key, () => compute(this.fileOf(key)));
    this.misses++;
    this.options.onLookup?.(false);
    return this.computing(key, compute(this.fileOf(key)), true);
  }

  private computing(key: string, work: Promise<Buffer>, written: boolean): Promise<Buffer> {
    this.inFlight.set(key, work);
    // The answer goes out as soon as it is computed; the file is written meanwhile. The promise
    // stays in flight until then, so nobody computes the same entry again in between.
    const stored = work
      .then(async (bytes) => {
        this.remember(key, bytes);
        if (written) await this.account(key, bytes.length);
        else await this.store(key, bytes).catch(() => undefined);
      })
      .catch(() => undefined)
      .finally(() => {
        this.inFlight.delete(key);
        this.storing.delete(key);
      });
    this.storing.set(key, stored);
    return work;
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

  private remember(key: string, bytes: Buffer): void {
    if (bytes.length * 16 > this.memoryBytes || this.memory.has(key)) return;
    this.memory.set(key, bytes);
    this.memoryUsed += bytes.length;
    for (const [oldKey, old] of this.memory) {
      if (this.memoryUsed <= this.memoryBytes) break;
      this.memory.delete(oldKey);
      this.memoryUsed -= old.length;
    }
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
    await this.account(key, bytes.length);
  }

  /** Counts a file now on disk, and evicts the oldest-used entries over the budget. */
  private async account(key: string, size: number): Promise<void> {
    this.entries.set(key, size);
    this.bytes += size;
    for (const oldKey of this.entries.keys()) {
      if (this.bytes <= this.maxBytes) break;
      this.drop(oldKey);
      await unlink(this.fileOf(oldKey)).catch(() => undefined);
    }
  }

  /** The cached bytes for `key` without computing anything (proxy mode revalidates before it replaces). */
  async peek(key: string): Promise<Buffer | undefined> {
    const inMemory = this.memory.get(key);
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
    this.drop(key);
    this.remember(key, bytes);
    await this.store(key, bytes).catch(() => undefined);
  }

  /** Drops every entry whose key starts with `prefix` (an instance's content hash when it is deleted). */
  async forget(prefix: string): Promise<number> {
    // An entry being written now would otherwise land on disk after we looked.
    await Promise.all([...this.storing].filter(([k]) => k.startsWith(prefix)).map(([, p]) => p));
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
