/**
 * Which patient a study belongs to, for audit records: routes note the UIDs they touched, the
 * audit fills in the patient (ID, issuer, name) from the index after the response is sent.
 * Cached (bounded LRU): a viewer asks for the same study hundreds of times.
 */
import type { DicomJsonDataset, PersonNameJson } from "../../dicom/index.js";
import type { SearchQuery } from "../../store/query.js";
import type { Index } from "../../store/types.js";

export interface StudyPatient {
  patientId?: string;
  patientIdIssuer?: string;
  patientName?: string;
}

const firstString = (ds: DicomJsonDataset | undefined, tag: string): string | undefined => {
  const v = ds?.[tag]?.Value?.[0];
  if (typeof v === "string" && v !== "") return v;
  if (v && typeof v === "object" && "Alphabetic" in v) return (v as PersonNameJson).Alphabetic || undefined;
  return undefined;
};

/** Patient attributes of a DICOM JSON dataset (a QIDO match or instance metadata). */
export function patientOfDataset(ds: DicomJsonDataset): StudyPatient {
  return {
    patientId: firstString(ds, "00100020"),
    patientIdIssuer: firstString(ds, "00100021"),
    patientName: firstString(ds, "00100010"),
  };
}

export class PatientLookup {
  readonly #cache = new Map<string, StudyPatient>();

  constructor(
    private readonly index: Pick<Index, "search">,
    private readonly capacity = 10_000,
  ) {}

  /** The patient of a stored study; an empty object when the study is unknown (not cached then, it may arrive). */
  get(studyUid: string): StudyPatient {
    const hit = this.#cache.get(studyUid);
    if (hit) {
      // Refresh its place: Map keeps insertion order, the oldest key goes first.
      this.#cache.delete(studyUid);
      this.#cache.set(studyUid, hit);
      return hit;
    }
    const query: SearchQuery = {
      level: "study",
      conditions: [{ tag: "0020000D", name: "StudyInstanceUID", vr: "UI", level: "study", matcher: { kind: "single", value: studyUid } }],
      includeAll: false,
      includeTags: ["00100010", "00100020", "00100021"],
      fuzzy: false,
      limit: 1,
      offset: 0,
    };
    let match: DicomJsonDataset | undefined;
    try {
      match = this.index.search(query).matches[0];
    } catch {
      return {}; // the index is failing: readiness reports it; the record keeps the UIDs
    }
    if (!match) return {};
    const patient = patientOfDataset(match);
    this.#cache.set(studyUid, patient);
    if (this.#cache.size > this.capacity) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    return patient;
  }

  /** Forgets a study (its patient may change when it is stored again). */
  forget(studyUid: string): void {
    this.#cache.delete(studyUid);
  }
}
