/** Audit records as JSON lines, one file per UTC day: `<dir>/audit-YYYY-MM-DD.jsonl`. */
import { DailyFile, readDailyFiles } from "./daily-file.js";
import type { AuditRecord } from "./record.js";
import type { AuditSink } from "./sink.js";

export class JsonlSink implements AuditSink {
  readonly name = "jsonl";
  readonly description: string;
  readonly #file: DailyFile;

  constructor(dir: string) {
    this.#file = new DailyFile(dir, "audit", "jsonl");
    this.description = `JSON-lines files in ${dir}`;
  }

  async write(records: readonly AuditRecord[]): Promise<void> {
    await this.#file.append(records.map((r) => ({ time: r.time, line: JSON.stringify(r) })));
  }

  close(): Promise<void> {
    return this.#file.close();
  }
}

/** The records of a JSON-lines audit folder, oldest first. */
export async function readJsonlAudit(dir: string): Promise<AuditRecord[]> {
  return (await readDailyFiles(dir, "audit", "jsonl")) as AuditRecord[];
}
