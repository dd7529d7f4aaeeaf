/**
 * FHIR R4 AuditEvent resources following IHE Basic Audit Log Patterns (BALP):
 * search → Query / PatientQuery, retrieve and render → Read / PatientRead, store → Create /
 * PatientCreate, delete → Delete / PatientDelete; one AuditEvent per patient touched (BALP
 * "one event per patient"), without a patient when none is known (e.g. an empty search).
 * Refused requests and application start/stop use the DICOM event codes (no BALP profile).
 */
import { byPatient, type AuditEntity, type AuditRecord, studiesOf } from "./record.js";
import { type Code, DCM, dicomEventOf, rawRequest, ROLE, STUDY_UID } from "./codes.js";

export interface Coding {
  system?: string;
  code: string;
  display?: string;
}
interface Identifier {
  type?: { coding: Coding[] };
  system?: string;
  value: string;
  assigner?: { display: string };
}
interface Reference {
  identifier?: Identifier;
  display?: string;
}
export interface AuditEventAgent {
  type: { coding: Coding[] };
  role?: Array<{ text: string }>;
  who?: Reference;
  altId?: string;
  name?: string;
  requestor: boolean;
  network?: { address: string; type: "1" | "2" | "5" };
}
export interface AuditEventEntity {
  what?: Reference;
  type?: Coding;
  role?: Coding;
  description?: string;
  query?: string;
  detail?: Array<{ type: string; valueString: string }>;
}
export interface FhirAuditEvent {
  resourceType: "AuditEvent";
  id: string;
  meta?: { profile: string[] };
  type: Coding;
  subtype?: Coding[];
  action: "C" | "R" | "U" | "D" | "E";
  recorded: string;
  outcome: "0" | "4" | "8" | "12";
  outcomeDesc?: string;
  agent: AuditEventAgent[];
  source: { site?: string; observer: Reference; type: Coding[] };
  entity?: AuditEventEntity[];
}

const BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.";
const BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role";
const INTERACTION = "http://hl7.org/fhir/restful-interaction";
const dcm = (c: Code): Coding => ({ system: DCM, code: c.code, display: c.display });

/** At most this many series/instance UIDs per study entity (the JSON-lines record has the full list). */
const MAX_DETAILS = 100;

const REST: Record<string, { interaction: string; profile: string }> = {
  search: { interaction: "search-type", profile: "Query" },
  retrieve: { interaction: "read", profile: "Read" },
  render: { interaction: "read", profile: "Read" },
  store: { interaction: "create", profile: "Create" },
  delete: { interaction: "delete", profile: "Delete" },
};

function agents(record: AuditRecord): AuditEventAgent[] {
  const out: AuditEventAgent[] = [];
  const p = record.principal;
  if (record.client) {
    // BALP: the client (source of the REST request) and the server (destination), both with their network address.
    out.push({
      type: { coding: [dcm(ROLE.source)] },
      who: p?.clientId
        ? { identifier: { value: p.clientId }, display: record.client.userAgent }
        : { display: record.client.userAgent ?? record.client.ip },
      requestor: false,
      network: { address: record.client.ip, type: "2" },
    });
  }
  out.push({
    type: { coding: [dcm(record.category === "application" ? ROLE.application : ROLE.destination)] },
    who: { display: record.server.app },
    requestor: false,
    ...(record.server.host ? { network: { address: record.server.host.replace(/:\d+$/, ""), type: "1" as const } } : {}),
  });
  if (p) {
    out.push({
      type: {
        coding: [{ system: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", code: "IRCP", display: "information recipient" }],
      },
      who: { identifier: { ...(p.issuer ? { system: p.issuer } : {}), value: p.subject }, ...(p.name ? { display: p.name } : {}) },
      ...(p.name ? { name: p.name } : {}),
      ...(p.roles.length > 0 ? { role: p.roles.map((text) => ({ text })) } : {}),
      requestor: true,
    });
  }
  return out;
}

function studyEntity(study: { studyUid: string; series: Set<string>; instances: Set<string> }): AuditEventEntity {
  const detail = [
    ...[...study.series].map((uid) => ({ type: "Series Instance UID", valueString: uid })),
    ...[...study.instances].map((uid) => ({ type: "SOP Instance UID", valueString: uid })),
  ].slice(0, MAX_DETAILS);
  return {
    what: {
      identifier: { type: { coding: [dcm(STUDY_UID)] }, system: "urn:dicom:uid", value: `urn:oid:${study.studyUid}` },
    },
    type: { system: ENTITY_TYPE, code: "2", display: "System Object" },
    role: { system: OBJECT_ROLE, code: "3", display: "Report" },
    ...(detail.length > 0 ? { detail } : {}),
  };
}

function patientEntity(entity: AuditEntity): AuditEventEntity {
  return {
    what: {
      identifier: {
        value: entity.patientId ?? "",
        ...(entity.patientIdIssuer ? { assigner: { display: entity.patientIdIssuer } } : {}),
      },
    },
    type: { system: ENTITY_TYPE, code: "1", display: "Person" },
    role: { system: OBJECT_ROLE, code: "1", display: "Patient" },
  };
}

function baseEntities(record: AuditRecord): AuditEventEntity[] {
  const out: AuditEventEntity[] = [];
  if (record.requestId) {
    out.push({
      what: { identifier: { value: record.requestId } },
      type: { system: BALP_ENTITY_TYPE, code: "XrequestId", display: "X-Request-Id" },
    });
  }
  if (record.transaction === "search" || record.category === "security-alert") {
    // BALP: the raw request base64-encoded (kept exactly, hostile input included), the decoded one as description.
    out.push({
      type: { system: ENTITY_TYPE, code: "2", display: "System Object" },
      role: { system: OBJECT_ROLE, code: "24", display: "Query" },
      query: Buffer.from(rawRequest(record), "utf8").toString("base64"),
      description: safeDecode(rawRequest(record)),
    });
  }
  return out;
}

const safeDecode = (s: string): string => {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
};

/** The AuditEvents for one record (one per patient for DICOMweb access). */
export function toFhirAuditEvents(record: AuditRecord): FhirAuditEvent[] {
  const event = dicomEventOf(record);
  const common = {
    recorded: record.time,
    outcome: String(record.outcomeCode) as FhirAuditEvent["outcome"],
    ...(record.reason ? { outcomeDesc: record.reason } : {}),
    agent: agents(record),
    source: {
      ...(record.server.host ? { site: record.server.host } : {}),
      observer: { display: record.server.app },
      type: [{ system: "http://terminology.hl7.org/CodeSystem/security-source-type", code: "4", display: "Application Server" }],
    },
  };
  if (record.category !== "dicomweb" || !record.transaction) {
    const entities = [...baseEntities(record), ...studiesOf(record.entities).map(studyEntity)];
    return [
      {
        resourceType: "AuditEvent",
        id: record.id,
        ...common,
        type: dcm(event.id),
        ...(event.type ? { subtype: [dcm(event.type)] } : {}),
        action: event.action,
        ...(entities.length > 0 ? { entity: entities } : {}),
      },
    ];
  }
  const rest = REST[record.transaction] ?? { interaction: "read", profile: "Read" };
  const groups = byPatient(record.entities);
  if (groups.length === 0) groups.push({ entities: [] });
  return groups.map((group, i) => {
    const patient = group.patientId !== undefined ? group.entities[0] : undefined;
    return {
      resourceType: "AuditEvent",
      id: groups.length === 1 ? record.id : `${record.id}-${i + 1}`,
      meta: { profile: [`${BALP}${patient ? `Patient${rest.profile}` : rest.profile}`] },
      ...common,
      type: { system: "http://terminology.hl7.org/CodeSystem/audit-event-type", code: "rest", display: "Restful Operation" },
      // BALP's interaction first; the DICOM event code too, so ATNA and FHIR consumers read the same event.
      subtype: [{ system: INTERACTION, code: rest.interaction, display: rest.interaction }, dcm(event.id)],
      action: event.action,
      entity: [...baseEntities(record), ...(patient ? [patientEntity(patient)] : []), ...studiesOf(group.entities).map(studyEntity)],
    };
  });
}
