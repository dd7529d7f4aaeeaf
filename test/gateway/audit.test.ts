/**
 * Audit records of real DICOMweb traffic: the server runs with the JSON-lines and FHIR sinks,
 * the test stores, searches, retrieves, renders, deletes and asks for a missing study, then reads
 * what was recorded: JSON lines (who, what, outcome, bytes), FHIR AuditEvents (IHE BALP), and the
 * DICOM audit messages made from the same records, checked against the PS3.15 A.5.1 schema.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { type AuditRecord, readFhirAuditEvents, readJsonlAudit, toDicomAuditMessages } from "../../src/gateway/audit/index.js";
import { httpRequest, startInProcess } from "../helpers/archive-harness.js";
import { requireTools, TOOLS } from "../helpers/tools.js";
import { elements, instanceOf, schemaProblems, stow, waitFor } from "./audit-helpers.js";

const ROOT = "1.2.826.0.1.3680043.10.1137";
const STUDY_A = `${ROOT}.1`;
const STUDY_B = `${ROOT}.2`;
const SERIES_A = `${ROOT}.1.1`;
const SERIES_B = `${ROOT}.2.1`;
const SOP_A1 = `${ROOT}.1.1.1`;
const SOP_A2 = `${ROOT}.1.1.2`;
const SOP_B1 = `${ROOT}.2.1.1`;
const UA = "audit-test/1.0";

test("every DICOMweb access is recorded as JSON lines, FHIR AuditEvents and PS3.15 audit messages", async (t) => {
  const server = await startInProcess(t, { audit: { fhir: {} }, allowDelete: true, trustedProxies: ["127.0.0.1"] });
  const dw = server.dicomweb;
  const headers = (id: string) => ({ "user-agent": UA, "x-request-id": id, "x-forwarded-for": "203.0.113.7" });

  assert.equal(
    await stow(dw, [instanceOf("PAT-A", STUDY_A, SERIES_A, SOP_A1), instanceOf("PAT-A", STUDY_A, SERIES_A, SOP_A2)], headers("stow-a")),
    200,
  );
  assert.equal(await stow(dw, [instanceOf("PAT-B", STUDY_B, SERIES_B, SOP_B1)], headers("stow-b")), 200);
  const search = await httpRequest(`${dw}/studies?PatientID=PAT-*&includefield=StudyDescription`, { headers: headers("qido") });
  assert.equal(search.status, 200);
  const retrieve = await httpRequest(`${dw}/studies/${STUDY_A}`, {
    headers: { ...headers("wado"), accept: 'multipart/related; type="application/dicom"' },
  });
  assert.equal(retrieve.status, 200);
  const rendered = await httpRequest(`${dw}/studies/${STUDY_A}/series/${SERIES_A}/instances/${SOP_A1}/rendered`, {
    headers: { ...headers("render"), accept: "image/png" },
  });
  assert.equal(rendered.status, 200);
  const missing = await httpRequest(`${dw}/studies/${ROOT}.404/metadata`, { headers: headers("missing") });
  assert.equal(missing.status, 404);
  assert.equal((await httpRequest(`${dw}/studies/${STUDY_B}`, { method: "DELETE", headers: headers("delete") })).status, 200);
  // Not patient data: not audited.
  for (const path of ["healthz", "readyz", "metrics", ""])
    assert.equal((await httpRequest(`${server.url}${path}`, { headers: headers(`ops-${path}`) })).status, 200);

  const auditDir = join(server.dataDir, "audit");
  const records = await waitFor("7 DICOMweb audit records", async () => {
    const all = await readJsonlAudit(auditDir);
    return all.filter((r) => r.category === "dicomweb").length >= 7 ? all : undefined;
  });
  const byId = new Map(records.filter((r) => r.requestId).map((r) => [r.requestId as string, r]));
  assert.equal(records.filter((r) => r.requestId?.startsWith("ops-")).length, 0, "health, metrics and the landing page are not audited");
  assert.ok(
    records.some((r) => r.category === "application" && r.activity === "start"),
    "application start recorded",
  );

  // Who, from where, when.
  const qido = byId.get("qido") as AuditRecord;
  assert.equal(qido.transaction, "search");
  assert.deepEqual(qido.principal, { kind: "anonymous", subject: "anonymous", roles: [] });
  assert.deepEqual(qido.client, { ip: "203.0.113.7", userAgent: UA }, "client address from the trusted proxy's X-Forwarded-For");
  assert.ok(Date.parse(qido.time) > Date.now() - 600_000);
  assert.equal(qido.query, "PatientID=PAT-*&includefield=StudyDescription");
  // What: the patients and studies of the results.
  assert.deepEqual(qido.entities.map((e) => [e.patientId, e.studyUid]).sort(), [
    ["PAT-A", STUDY_A],
    ["PAT-B", STUDY_B],
  ]);
  assert.equal(qido.outcome, "success");
  assert.equal(qido.bytesSent, search.body.length);

  const wado = byId.get("wado") as AuditRecord;
  assert.equal(wado.transaction, "retrieve");
  assert.deepEqual(wado.entities.map((e) => e.sopUid).sort(), [SOP_A1, SOP_A2]);
  assert.ok(wado.entities.every((e) => e.patientId === "PAT-A" && e.studyUid === STUDY_A && e.seriesUid === SERIES_A));
  assert.equal(wado.bytesSent, retrieve.body.length, "bytes sent: the whole multipart body");
  assert.equal(wado.status, 200);

  const render = byId.get("render") as AuditRecord;
  assert.equal(render.transaction, "render");
  assert.deepEqual(
    render.entities.map((e) => [e.patientId, e.sopUid]),
    [["PAT-A", SOP_A1]],
  );

  const stowA = byId.get("stow-a") as AuditRecord;
  assert.equal(stowA.transaction, "store");
  assert.deepEqual(stowA.entities.map((e) => e.sopUid).sort(), [SOP_A1, SOP_A2]);
  assert.ok(stowA.entities.every((e) => e.patientId === "PAT-A"));
  assert.ok((stowA.bytesReceived ?? 0) > 0);

  const del = byId.get("delete") as AuditRecord;
  assert.equal(del.transaction, "delete");
  assert.deepEqual(
    del.entities.map((e) => [e.patientId, e.studyUid, e.sopUid]),
    [["PAT-B", STUDY_B, SOP_B1]],
    "patient known though the study is gone",
  );

  const miss = byId.get("missing") as AuditRecord;
  assert.equal(miss.status, 404);
  assert.equal(miss.outcome, "minor-failure");
  assert.equal(miss.outcomeCode, 4);
  assert.match(miss.reason ?? "", /not stored|no /i);
  assert.deepEqual(miss.target, { studyUid: `${ROOT}.404` });

  // FHIR AuditEvents (IHE BALP): one per patient.
  const fhirDir = join(auditDir, "fhir");
  const events = await waitFor("FHIR AuditEvents of the delete", async () => {
    const all = await readFhirAuditEvents(fhirDir);
    return all.some((e) => e.entity?.some((x) => x.what?.identifier?.value === "delete")) ? all : undefined;
  });
  for (const e of events) {
    assert.equal(e.resourceType, "AuditEvent");
    assert.ok(e.agent.length >= 1 && e.source.observer.display, "agent and source.observer are required");
  }
  const withRequest = (id: string) =>
    events.filter((e) => e.entity?.some((x) => x.type?.code === "XrequestId" && x.what?.identifier?.value === id));
  const queries = withRequest("qido");
  assert.equal(queries.length, 2, "BALP: one AuditEvent per patient in the results");
  for (const q of queries) {
    assert.deepEqual(q.meta?.profile, ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"]);
    assert.deepEqual([q.type.system, q.type.code], ["http://terminology.hl7.org/CodeSystem/audit-event-type", "rest"]);
    assert.deepEqual(
      q.subtype?.map((s) => s.code),
      ["search-type", "110112"],
    );
    assert.equal(q.action, "E");
    assert.equal(q.outcome, "0");
    const client = q.agent.find((a) => a.type.coding[0]?.code === "110153");
    assert.deepEqual(client?.network, { address: "203.0.113.7", type: "2" });
    assert.ok(
      q.agent.some((a) => a.type.coding[0]?.code === "110152"),
      "server agent",
    );
    const user = q.agent.find((a) => a.type.coding[0]?.code === "IRCP");
    assert.equal(user?.requestor, true);
    const query = q.entity?.find((x) => x.role?.code === "24");
    assert.equal(
      Buffer.from(query?.query ?? "", "base64").toString(),
      "GET /dicomweb/studies?PatientID=PAT-*&includefield=StudyDescription",
    );
  }
  const patientsQueried = queries.map((q) => q.entity?.find((x) => x.role?.code === "1")?.what?.identifier?.value).sort();
  assert.deepEqual(patientsQueried, ["PAT-A", "PAT-B"]);
  const read = withRequest("wado");
  assert.equal(read.length, 1);
  const studyEntity = read[0]?.entity?.find((x) => x.what?.identifier?.system === "urn:dicom:uid");
  assert.equal(studyEntity?.what?.identifier?.value, `urn:oid:${STUDY_A}`);
  assert.deepEqual(studyEntity?.what?.identifier?.type?.coding[0], {
    system: "http://dicom.nema.org/resources/ontology/DCM",
    code: "110180",
    display: "Study Instance UID",
  });
  assert.deepEqual(read[0]?.meta?.profile, ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"]);
  assert.deepEqual([read[0]?.action, read[0]?.subtype?.[0]?.code], ["R", "read"]);
  assert.deepEqual(
    withRequest("stow-a").map((e) => [e.action, e.subtype?.[0]?.code, e.meta?.profile[0]?.split(".").pop()]),
    [["C", "create", "PatientCreate"]],
  );
  assert.deepEqual(
    withRequest("delete").map((e) => [e.action, e.subtype?.[0]?.code, e.meta?.profile[0]?.split(".").pop()]),
    [["D", "delete", "PatientDelete"]],
  );
  const failed = withRequest("missing");
  assert.deepEqual([failed[0]?.outcome, failed[0]?.meta?.profile[0]?.split(".").pop()], ["4", "Read"]);
  assert.match(failed[0]?.outcomeDesc ?? "", /./);
  // Readable later by patient or study.
  assert.ok((await readFhirAuditEvents(fhirDir, { study: STUDY_B })).some((e) => e.action === "D"));
  assert.equal((await readFhirAuditEvents(fhirDir, { patient: "PAT-B", code: "delete" })).length, 1);

  // DICOM audit messages (PS3.15 A.5) from the same records, checked against the A.5.1 schema.
  if (!requireTools(t, TOOLS.xmllint)) return;
  const expected: Array<[string, string, string]> = [
    ["qido", "110112", "E"],
    ["wado", "110104", "R"],
    ["render", "110103", "R"],
    ["stow-a", "110104", "C"],
    ["delete", "110105", "D"],
    ["missing", "110104", "R"],
  ];
  for (const [id, eventId, action] of expected) {
    const messages = toDicomAuditMessages(byId.get(id) as AuditRecord);
    assert.ok(messages.length >= 1);
    for (const xml of messages) {
      assert.equal(schemaProblems(xml), undefined);
      assert.equal(elements(xml, "EventID")[0]?.["csd-code"], eventId, id);
      assert.equal(elements(xml, "EventIdentification")[0]?.EventActionCode, action, id);
    }
  }
  const [queryA, queryB] = toDicomAuditMessages(qido);
  assert.ok(queryA && queryB, "one Query message per patient");
  const patientObjects = [queryA, queryB].map((xml) =>
    elements(xml, "ParticipantObjectIdentification").find((o) => o.ParticipantObjectTypeCodeRole === "1"),
  );
  assert.deepEqual(patientObjects.map((o) => o?.ParticipantObjectID).sort(), ["PAT-A", "PAT-B"]);
  const transfer = toDicomAuditMessages(wado)[0] ?? "";
  const study = elements(transfer, "ParticipantObjectIdentification").find((o) => o.ParticipantObjectTypeCodeRole === "3");
  assert.deepEqual([study?.ParticipantObjectID, study?.ParticipantObjectTypeCode], [STUDY_A, "2"]);
  assert.deepEqual(elements(transfer, "SOPClass"), [{ NumberOfInstances: "2" }]);
  assert.deepEqual(
    elements(transfer, "Instance")
      .map((i) => i.UID)
      .sort(),
    [SOP_A1, SOP_A2],
  );
  const roles = elements(transfer, "RoleIDCode").map((r) => r["csd-code"]);
  assert.deepEqual(roles, ["110152", "110153"], "client is the destination of a retrieve, the server its source");
  const requestor = elements(transfer, "ActiveParticipant").find((p) => p.UserIsRequestor === "true");
  assert.deepEqual([requestor?.NetworkAccessPointID, requestor?.NetworkAccessPointTypeCode], ["203.0.113.7", "2"]);
  const start = records.find((r) => r.category === "application") as AuditRecord;
  const startXml = toDicomAuditMessages(start)[0] ?? "";
  assert.equal(schemaProblems(startXml), undefined);
  assert.deepEqual(elements(startXml, "EventTypeCode")[0]?.["csd-code"], "110120");
});
