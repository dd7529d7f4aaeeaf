/**
 * DICOM audit messages (PS3.15 A.5, the format IHE ATNA repositories take): one XML
 * AuditMessage per patient touched, valid against the A.5.1 schema.
 *
 * | record | message (A.5.3) | action |
 * |---|---|---|
 * | search (QIDO-RS) | Query 110112 | E |
 * | retrieve (WADO-RS instances, metadata, frames, bulk data) | DICOM Instances Transferred 110104 | R |
 * | render (rendered, thumbnail) | DICOM Instances Accessed 110103 | R |
 * | store (STOW-RS) | DICOM Instances Transferred 110104 | C |
 * | delete | DICOM Study Deleted 110105 | D |
 * | 401 | User Authentication 110114 / Login 110122, outcome 4 | E |
 * | 403 | Security Alert 110113 / Use of Restricted Function 110132 | E |
 * | start, stop | Application Activity 110100 / Application Start 110120, Stop 110121 | E |
 *
 * The audit is written once the response is sent, so a retrieve is one Instances Transferred
 * message (no Begin Transferring 110102: the transfer's end and its outcome are known then).
 * XML is written on one line so a syslog line is one message.
 */
import { type Code, dicomEventOf, rawRequest, ROLE, SOP_CLASS_UID, STUDY_ROOT_FIND, STUDY_UID } from "./codes.js";
import { type AuditEntity, type AuditRecord, byPatient, studiesOf } from "./record.js";

const escapeXml = (s: string): string =>
  s
    .replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c] ?? c)
    // XML 1.0 has no place for most control characters; hostile input must not break the document.
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F]/g, "\uFFFD");

/** XSD token: no leading/trailing/double spaces, no tabs or line breaks. */
const token = (s: string): string =>
  escapeXml(
    s
      .replace(/[\t\r\n]+/g, " ")
      .replace(/ {2,}/g, " ")
      .trim(),
  );

const b64 = (s: string): string => Buffer.from(s, "utf8").toString("base64");

function attrs(values: Record<string, string | undefined>): string {
  return Object.entries(values)
    .filter(([, v]) => v !== undefined && v !== "")
    .map(([k, v]) => ` ${k}="${escapeXml(v as string)}"`)
    .join("");
}

const coded = (element: string, c: Code, system = "DCM"): string =>
  `<${element}${attrs({ "csd-code": c.code, codeSystemName: system, originalText: c.display })}/>`;

interface Participant {
  userId: string;
  alternativeUserId?: string;
  userName?: string;
  requestor: boolean;
  address?: string;
  /** 1 machine name, 2 IP address, 5 URI. */
  addressType?: "1" | "2" | "5";
  role?: Code;
}

function participant(p: Participant): string {
  const a = attrs({
    UserID: p.userId,
    AlternativeUserID: p.alternativeUserId,
    UserName: p.userName,
    UserIsRequestor: String(p.requestor),
    NetworkAccessPointID: p.address,
    NetworkAccessPointTypeCode: p.address ? p.addressType : undefined,
  });
  return p.role ? `<ActiveParticipant${a}>${coded("RoleIDCode", p.role)}</ActiveParticipant>` : `<ActiveParticipant${a}/>`;
}

/** The person or process that asked, and this server; roles follow the direction data moved. */
function participants(record: AuditRecord, clientRole?: Code, serverRole?: Code): string[] {
  const p = record.principal;
  const out: string[] = [];
  if (record.client || p) {
    out.push(
      participant({
        userId: p?.subject ?? "anonymous",
        alternativeUserId: p?.clientId,
        userName: p?.name ?? record.client?.userAgent,
        requestor: true,
        address: record.client?.ip,
        addressType: "2",
        role: clientRole,
      }),
    );
  }
  out.push(
    participant({
      userId: record.server.host ? `${record.server.app}@${record.server.host}` : record.server.app,
      alternativeUserId: String(process.pid),
      requestor: false,
      address: record.server.host?.replace(/:\d+$/, ""),
      addressType: "1",
      role: serverRole,
    }),
  );
  return out;
}

function object(o: {
  id: string;
  typeCode: "1" | "2";
  role: "1" | "3" | "24";
  lifeCycle?: string;
  idType: Code;
  idTypeSystem?: string;
  name?: string;
  query?: string;
  details?: Array<[string, string]>;
  description?: string;
}): string {
  const a = attrs({
    ParticipantObjectID: o.id,
    ParticipantObjectTypeCode: o.typeCode,
    ParticipantObjectTypeCodeRole: o.role,
    ParticipantObjectDataLifeCycle: o.lifeCycle,
  });
  // The A.5.1 schema requires a name or a query.
  const nameOrQuery =
    o.query !== undefined
      ? `<ParticipantObjectQuery>${o.query}</ParticipantObjectQuery>`
      : `<ParticipantObjectName>${token(o.name ?? o.id)}</ParticipantObjectName>`;
  const details = (o.details ?? [])
    .map(([type, value]) => `<ParticipantObjectDetail${attrs({ type: type, value: b64(value) })}/>`)
    .join("");
  return `<ParticipantObjectIdentification${a}>${coded("ParticipantObjectIDTypeCode", o.idType, o.idTypeSystem)}${nameOrQuery}${details}${o.description ?? ""}</ParticipantObjectIdentification>`;
}

const requestDetails = (record: AuditRecord): Array<[string, string]> => (record.requestId ? [["XrequestId", record.requestId]] : []);

function studyObjects(record: AuditRecord, entities: readonly AuditEntity[], lifeCycle?: string, listInstances = true): string[] {
  return studiesOf(entities).map((s) => {
    // SOPClass needs NumberOfInstances; the UID is optional in the schema and not known from the noted rows.
    const instances = [...s.instances];
    const description =
      instances.length > 0
        ? `<ParticipantObjectDescription><SOPClass${attrs({ NumberOfInstances: String(instances.length) })}>${listInstances ? instances.map((uid) => `<Instance${attrs({ UID: uid })}/>`).join("") : ""}</SOPClass></ParticipantObjectDescription>`
        : undefined;
    return object({
      id: s.studyUid,
      typeCode: "2",
      role: "3",
      lifeCycle,
      idType: STUDY_UID,
      name: s.studyUid,
      details: requestDetails(record),
      description,
    });
  });
}

function patientObject(entity: AuditEntity | undefined): string[] {
  if (!entity?.patientId) return [];
  return [
    object({
      id: entity.patientIdIssuer ? `${entity.patientId}^^^${entity.patientIdIssuer}` : entity.patientId,
      typeCode: "1",
      role: "1",
      idType: { code: "2", display: "Patient Number" },
      idTypeSystem: "RFC-3881",
      name: entity.patientName ?? entity.patientId,
    }),
  ];
}

function message(record: AuditRecord, active: string[], objects: string[] = []): string {
  const event = dicomEventOf(record);
  const identification =
    `<EventIdentification${attrs({ EventActionCode: event.action, EventDateTime: record.time, EventOutcomeIndicator: String(record.outcomeCode) })}>` +
    coded("EventID", event.id) +
    (event.type ? coded("EventTypeCode", event.type) : "") +
    (record.reason ? `<EventOutcomeDescription>${escapeXml(record.reason)}</EventOutcomeDescription>` : "") +
    `</EventIdentification>`;
  const source = `<AuditSourceIdentification${attrs({ AuditSourceID: record.server.app })}><AuditSourceTypeCode csd-code="4"/></AuditSourceIdentification>`;
  return `<?xml version="1.0" encoding="UTF-8"?><AuditMessage>${identification}${active.join("")}${source}${objects.join("")}</AuditMessage>`;
}

/** The DICOM audit messages for one record (one per patient for patient data). */
export function toDicomAuditMessages(record: AuditRecord, options: { listInstances?: boolean } = {}): string[] {
  const listInstances = options.listInstances ?? true;
  if (record.category === "application") {
    return [
      message(record, [
        participant({
          userId: record.server.app,
          alternativeUserId: String(process.pid),
          requestor: false,
          address: record.server.host,
          addressType: "1",
          role: ROLE.application,
        }),
      ]),
    ];
  }
  if (record.category === "security-alert" || !record.transaction) {
    const alertSubject = object({
      id: rawRequest(record),
      typeCode: "2",
      role: "24",
      idType: { code: "12", display: "URI" },
      idTypeSystem: "RFC-3881",
      name: rawRequest(record),
      details: [...requestDetails(record), ...(record.reason ? ([["Alert Description", record.reason]] as Array<[string, string]>) : [])],
    });
    return [message(record, participants(record), [alertSubject, ...studyObjects(record, record.entities, undefined, listInstances)])];
  }
  const groups = byPatient(record.entities);
  if (groups.length === 0) groups.push({ entities: [] });
  return groups.map((group) => {
    const patient = patientObject(group.patientId !== undefined ? group.entities[0] : undefined);
    switch (record.transaction) {
      case "search": {
        const query = object({
          id: STUDY_ROOT_FIND,
          typeCode: "2",
          role: "24",
          idType: SOP_CLASS_UID,
          query: b64(rawRequest(record)),
          details: [["QueryEncoding", "UTF-8"], ...requestDetails(record)],
        });
        return message(record, participants(record, ROLE.source, ROLE.destination), [query, ...patient]);
      }
      case "store":
        // Data moved from the client (source) to this server (destination).
        return message(record, participants(record, ROLE.source, ROLE.destination), [
          ...studyObjects(record, group.entities, "1", listInstances),
          ...patient,
        ]);
      case "delete":
        return message(record, participants(record), [...studyObjects(record, group.entities, "14", listInstances), ...patient]);
      case "render":
        return message(record, participants(record), [...studyObjects(record, group.entities, "6", listInstances), ...patient]);
      default:
        // Data moved from this server (source) to the client (destination).
        return message(record, participants(record, ROLE.destination, ROLE.source), [
          ...studyObjects(record, group.entities, undefined, listInstances),
          ...patient,
        ]);
    }
  });
}
