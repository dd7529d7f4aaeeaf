/**
 * FHIR AuditEvent resources (IHE BALP, R4) as NDJSON files, one per UTC day:
 * `<dir>/auditevent-YYYY-MM-DD.ndjson` — the bulk-data format a FHIR server imports
 * ($import) once Voxelgate has one; `readFhirAuditEvents` searches them meanwhile.
 */
import { DailyFile, readDailyFiles } from "./daily-file.js";
import { type FhirAuditEvent, toFhirAuditEvents } from "./fhir-audit-event.js";
import type { AuditRecord } from "./record.js";
import type { AuditSink } from "./sink.js";

export class FhirSink implements AuditSink {
  readonly name = "fhir";
  readonly description: string;
  readonly #file: DailyFile;

  constructor(dir: string) {
    this.#file = new DailyFile(dir, "auditevent", "ndjson");
    this.description = `FHIR AuditEvent NDJSON files in ${dir}`;
  }

  async write(records: readonly AuditRecord[]): Promise<void> {
    await this.#file.append(records.flatMap((r) => toFhirAuditEvents(r).map((e) => ({ time: r.time, line: JSON.stringify(e) }))));
  }

  close(): Promise<void> {
    return this.#file.close();
  }
}

export interface FhirAuditSearch {
  /** Patient ID as recorded (entity with role Patient). */
  patient?: string;
  /** Study Instance UID (bare, or as urn:oid:). */
  study?: string;
  /** Recorded on or after this instant (ISO 8601). */
  since?: string;
  /** The DICOM or restful-interaction code in type/subtype, e.g. "110112" or "read". */
  code?: string;
}

/** AuditEvents of an NDJSON folder that match every given criterion, oldest first. */
export async function readFhirAuditEvents(dir: string, search: FhirAuditSearch = {}): Promise<FhirAuditEvent[]> {
  const all = (await readDailyFiles(dir, "auditevent", "ndjson")) as FhirAuditEvent[];
  const study = search.study && !search.study.startsWith("urn:oid:") ? `urn:oid:${search.study}` : search.study;
  return all.filter((e) => {
    const values = (e.entity ?? []).map((x) => x.what?.identifier?.value);
    if (search.patient && !(e.entity ?? []).some((x) => x.role?.code === "1" && x.what?.identifier?.value === search.patient)) return false;
    if (study && !values.includes(study)) return false;
    if (search.since && e.recorded < search.since) return false;
    if (search.code && e.type.code !== search.code && !(e.subtype ?? []).some((s) => s.code === search.code)) return false;
    return true;
  });
}
