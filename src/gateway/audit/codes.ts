/**
 * Codes shared by the DICOM audit messages (PS3.15 A.5) and FHIR AuditEvents (IHE BALP):
 * DICOM Controlled Terminology (DCM) event IDs and types per record.
 */
import type { AuditRecord } from "./record.js";

export const DCM = "http://dicom.nema.org/resources/ontology/DCM";

export interface Code {
  code: string;
  display: string;
}

export const EVENT = {
  applicationActivity: { code: "110100", display: "Application Activity" },
  instancesAccessed: { code: "110103", display: "DICOM Instances Accessed" },
  instancesTransferred: { code: "110104", display: "DICOM Instances Transferred" },
  studyDeleted: { code: "110105", display: "DICOM Study Deleted" },
  query: { code: "110112", display: "Query" },
  securityAlert: { code: "110113", display: "Security Alert" },
  userAuthentication: { code: "110114", display: "User Authentication" },
} as const satisfies Record<string, Code>;

export const EVENT_TYPE = {
  applicationStart: { code: "110120", display: "Application Start" },
  applicationStop: { code: "110121", display: "Application Stop" },
  login: { code: "110122", display: "Login" },
  useOfRestrictedFunction: { code: "110132", display: "Use of Restricted Function" },
} as const satisfies Record<string, Code>;

export const ROLE = {
  application: { code: "110150", display: "Application" },
  destination: { code: "110152", display: "Destination Role ID" },
  source: { code: "110153", display: "Source Role ID" },
} as const satisfies Record<string, Code>;

export const STUDY_UID = { code: "110180", display: "Study Instance UID" } as const;
export const SOP_CLASS_UID = { code: "110181", display: "SOP Class UID" } as const;

/** Study Root Query/Retrieve Information Model - FIND: the "SOP class" a QIDO-RS search stands for. */
export const STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1";

export type Action = "C" | "R" | "U" | "D" | "E";

/** The DICOM event of a record: ID, optional type, action. */
export function dicomEventOf(record: AuditRecord): { id: Code; type?: Code; action: Action } {
  if (record.category === "application") {
    return {
      id: EVENT.applicationActivity,
      type: record.activity === "stop" ? EVENT_TYPE.applicationStop : EVENT_TYPE.applicationStart,
      action: "E",
    };
  }
  if (record.category === "security-alert") {
    // A refused identity is a failed login (IHE ATNA's User Authentication); a refused permission, a security alert.
    return record.status === 401
      ? { id: EVENT.userAuthentication, type: EVENT_TYPE.login, action: "E" }
      : { id: EVENT.securityAlert, type: EVENT_TYPE.useOfRestrictedFunction, action: "E" };
  }
  switch (record.transaction) {
    case "search":
      return { id: EVENT.query, action: "E" };
    case "render":
      return { id: EVENT.instancesAccessed, action: "R" };
    case "store":
      return { id: EVENT.instancesTransferred, action: "C" };
    case "delete":
      return { id: EVENT.studyDeleted, action: "D" };
    default:
      return { id: EVENT.instancesTransferred, action: "R" };
  }
}

/** The request line as it was received: what BALP and PS3.15 keep base64-encoded as the query. */
export function rawRequest(record: AuditRecord): string {
  return `${record.method ?? "GET"} ${record.path ?? ""}${record.query ? `?${record.query}` : ""}`;
}
