/** Audit of access to patient data: records, sinks (JSON lines, FHIR AuditEvent, DICOM over syslog), spool. */
export { AuditRecorder, type AuditSettings, auditFolders } from "./recorder.js";
export type { AuditCategory, AuditEntity, AuditRecord, Outcome, OutcomeCode } from "./record.js";
export { outcomeOfStatus } from "./record.js";
export { MAX_INSTANCE_ENTITIES, MAX_SEARCH_ENTITIES, noteInstances, noteSearchResults, noteStored, omittedEntities } from "./note.js";
export { PatientLookup } from "./patients.js";
export { readJsonlAudit } from "./jsonl-sink.js";
export { type FhirAuditEvent, toFhirAuditEvents } from "./fhir-audit-event.js";
export { type FhirAuditSearch, readFhirAuditEvents } from "./fhir-sink.js";
export { toDicomAuditMessages } from "./dicom-audit-message.js";
export { ATNA_MSGID, formatSyslogMessage, type SyslogTarget } from "./syslog.js";
export type { SinkHealth } from "./durable-sink.js";
