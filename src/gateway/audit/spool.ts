/**
 * On-disk buffer of audit records a sink could not take: NDJSON segment files under
 * `<spoolDir>/<sink>/`, appended and fsynced per batch, drained oldest first, bounded in bytes.
 * It survives restarts: records spooled before a crash are delivered by the next process.
 */
import { mkdir, open, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { AuditRecord } from "./record.js";

/** Segments rotate at this size, so a drain reads a bounded amount at a time. */
const SEGMENT_BYTES = 1024 * 1024;

interface Segment {
  seq: number;
  path: string;
  count: number;
  bytes: number;
}

export class SpoolFullError extends Error {}

export class Spool {
  #segments: Segment[] = [];
  #count = 0;
  #bytes = 0;

  private constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {}

  /** Opens (creating) a spool folder and counts what an earlier run left there. */
  static async open(dir: string, maxBytes: number): Promise<Spool> {
    await mkdir(dir, { recursive: true });
    const spool = new Spool(dir, maxBytes);
    const names = (await readdir(dir)).filter((n) => /^\d{9}\.ndjson$/.test(n)).sort();
    for (const name of names) {
      const path = join(dir, name);
      const text = await readFile(path, "utf8");
      const count = text.split("\n").filter((l) => l.trim() !== "").length;
      const bytes = (await stat(path)).size;
      spool.#segments.push({ seq: Number(name.slice(0, 9)), path, count, bytes });
      spool.#count += count;
      spool.#bytes += bytes;
    }
    return spool;
  }

  get count(): number {
    return this.#count;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Appends records durably (write + fsync). Throws SpoolFullError when the bound would be passed. */
  async append(records: readonly AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    const text = records.map((r) => JSON.stringify(r)).join("\n") + "\n";
    const size = Buffer.byteLength(text);
    if (this.#bytes + size > this.maxBytes) {
      throw new SpoolFullError(`the audit spool ${this.dir} is full (${this.#bytes} of ${this.maxBytes} bytes)`);
    }
    let last = this.#segments[this.#segments.length - 1];
    if (!last || last.bytes >= SEGMENT_BYTES) {
      const seq = (last?.seq ?? 0) + 1;
      last = { seq, path: join(this.dir, `${String(seq).padStart(9, "0")}.ndjson`), count: 0, bytes: 0 };
      this.#segments.push(last);
    }
    const fh = await open(last.path, "a");
    try {
      await fh.write(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    last.count += records.length;
    last.bytes += size;
    this.#count += records.length;
    this.#bytes += size;
  }

  /** The oldest segment's records (a torn last line from a crash is skipped), or undefined when empty. */
  async oldest(): Promise<{ seq: number; records: AuditRecord[] } | undefined> {
    const first = this.#segments[0];
    if (!first) return undefined;
    const text = await readFile(first.path, "utf8");
    const records: AuditRecord[] = [];
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        records.push(JSON.parse(line) as AuditRecord);
      } catch {
        // a line cut by a crash mid-write: nothing was acknowledged for it
      }
    }
    return { seq: first.seq, records };
  }

  /** Removes a segment once its records are delivered. */
  async remove(seq: number): Promise<void> {
    const i = this.#segments.findIndex((s) => s.seq === seq);
    const segment = this.#segments[i];
    if (!segment) return;
    await rm(segment.path, { force: true });
    this.#segments.splice(i, 1);
    this.#count -= segment.count;
    this.#bytes -= segment.bytes;
  }
}
