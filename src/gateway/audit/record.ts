/**
 * The one audit record every sink starts from: the JSON-lines sink writes it as is, the FHIR
 * and DICOM (syslog) sinks translate it. Kept free of HTTP framework types so it can be spooled
 * to disk and read back unchanged.
 */
import type { Behaviour, Principal } from "../request-state.js";

/**
 * What kind of event: an access to patient data over DICOMweb, a refused request (401/403),
 * or the application starting/stopping (DICOM Application Activity).
 */
export type AuditCategory = "dicomweb" | "security-alert" | "application";

/** PS3.15 A.5.1 EventOutcomeIndicator / FHIR R4 AuditEvent.outcome. */
export type OutcomeCode = 0 | 4 | 8 | 12;

export type Outcome = "success" | "minor-failure" | "serious-failure" | "major-failure";

const OUTCOMES: Record<OutcomeCode, Outcome> = { 0: "success", 4: "minor-failure", 8: "serious-failure", 12: "major-failure" };

/** One piece of patient data in a record: a study, series or instance, with its patient when known. */
export interface AuditEntity {
  patientId?: string;
  patientIdIssuer?: string;
  /** Patient's Name (DICOM PN, `^`-separated) when the archive knows it: the DICOM audit message wants it. */
  patientName?: string;
  studyUid?: string;
  seriesUid?: string;
  sopUid?: string;
}

export interface AuditRecord {
  /** Unique id of the record (UUID): FHIR AuditEvent.id and the key for de-duplication. */
  id: string;
  /** When the event happened (the response finished), ISO 8601 UTC with milliseconds. */
  time: string;
  category: AuditCategory;
  /** DICOMweb behaviour; absent for application events and alerts outside DICOMweb. */
  transaction?: Behaviour;
  /** For application events: "start" or "stop". */
  activity?: "start" | "stop";
  requestId?: string;
  method?: string;
  /** Path as requested, without the query string. */
  path?: string;
  /** Raw query string (without "?"), as sent: the audit keeps malformed or hostile input verbatim. */
  query?: string;
  principal?: Pick<Principal, "kind" | "subject" | "clientId" | "issuer" | "name" | "roles" | "patient">;
  /** Where the request came from: client address (trusted proxies honoured) and User-Agent. */
  client?: { ip: string; userAgent?: string };
  /** This server as the client addressed it (Host) and the application name. */
  server: { app: string; host?: string };
  /** What the URL names. */
  target?: { studyUid?: string; seriesUid?: string; sopUid?: string };
  /** Patient data the request read, stored or deleted (capped; see entitiesOmitted). */
  entities: AuditEntity[];
  /** Entities left out of `entities` because of the cap. */
  entitiesOmitted?: number;
  status?: number;
  outcome: Outcome;
  outcomeCode: OutcomeCode;
  /** Why it failed, from the error reply (`{error: reason}`). */
  reason?: string;
  bytesSent?: number;
  bytesReceived?: number;
  durationMs?: number;
}

/** HTTP status → PS3.15 outcome: 2xx/3xx success, 4xx minor failure (the client may retry), 5xx serious failure. */
export function outcomeOfStatus(status: number): { outcome: Outcome; outcomeCode: OutcomeCode } {
  const outcomeCode: OutcomeCode = status >= 500 ? 8 : status >= 400 ? 4 : 0;
  return { outcome: OUTCOMES[outcomeCode], outcomeCode };
}

/** Entities grouped per patient (a record touching several patients becomes one FHIR/DICOM event per patient, as BALP asks). */
export function byPatient(entities: readonly AuditEntity[]): Array<{ patientId?: string; entities: AuditEntity[] }> {
  const groups = new Map<string, { patientId?: string; entities: AuditEntity[] }>();
  for (const e of entities) {
    const key = e.patientId === undefined ? "\u0000" : `${e.patientIdIssuer ?? ""}\u0001${e.patientId}`;
    let group = groups.get(key);
    if (!group) {
      group = { patientId: e.patientId, entities: [] };
      groups.set(key, group);
    }
    group.entities.push(e);
  }
  return [...groups.values()];
}

/** Distinct studies of some entities, each with its series and instances (first seen order). */
export function studiesOf(entities: readonly AuditEntity[]): Array<{ studyUid: string; series: Set<string>; instances: Set<string> }> {
  const studies = new Map<string, { studyUid: string; series: Set<string>; instances: Set<string> }>();
  for (const e of entities) {
    if (!e.studyUid) continue;
    let s = studies.get(e.studyUid);
    if (!s) {
      s = { studyUid: e.studyUid, series: new Set(), instances: new Set() };
      studies.set(e.studyUid, s);
    }
    if (e.seriesUid) s.series.add(e.seriesUid);
    if (e.sopUid) s.instances.add(e.sopUid);
  }
  return [...studies.values()];
}
