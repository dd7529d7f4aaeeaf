/**
 * Append-only files named by UTC day (`audit-2025-01-31.jsonl`): one write and one fsync per
 * batch, so a burst of requests costs one disk flush, and an acknowledged record survives a crash.
 */
import { mkdir, open, readdir, readFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";

export class DailyFile {
  #day: string | undefined;
  #handle: FileHandle | undefined;

  constructor(
    readonly dir: string,
    readonly prefix: string,
    readonly extension: string,
  ) {}

  fileName(day: string): string {
    return `${this.prefix}-${day}.${this.extension}`;
  }

  /** Appends lines grouped by their UTC day (ISO time → YYYY-MM-DD), each group written and fsynced once. */
  async append(lines: ReadonlyArray<{ time: string; line: string }>): Promise<void> {
    const days = new Map<string, string[]>();
    for (const { time, line } of lines) {
      const day = time.slice(0, 10);
      let group = days.get(day);
      if (!group) days.set(day, (group = []));
      group.push(line);
    }
    for (const [day, group] of days) {
      const fh = await this.#open(day);
      await fh.write(group.join("\n") + "\n");
      await fh.datasync();
    }
  }

  async close(): Promise<void> {
    const fh = this.#handle;
    this.#handle = undefined;
    this.#day = undefined;
    await fh?.close();
  }

  async #open(day: string): Promise<FileHandle> {
    if (this.#handle && this.#day === day) return this.#handle;
    await this.close();
    await mkdir(this.dir, { recursive: true });
    this.#handle = await open(join(this.dir, this.fileName(day)), "a", 0o640);
    this.#day = day;
    return this.#handle;
  }
}

/** Every JSON line of the files `<prefix>-*.<ext>` in a folder, oldest day first (for readers and tests). */
export async function readDailyFiles(dir: string, prefix: string, extension: string): Promise<unknown[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const pattern = new RegExp(`^${prefix}-\\d{4}-\\d{2}-\\d{2}\\.${extension}$`);
  const out: unknown[] = [];
  for (const name of names.filter((n) => pattern.test(n)).sort()) {
    for (const line of (await readFile(join(dir, name), "utf8")).split("\n")) {
      if (line.trim() !== "") out.push(JSON.parse(line));
    }
  }
  return out;
}
