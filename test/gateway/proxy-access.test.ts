/**
 * Authorization in proxy mode, in front of a real Orthanc: grants that name studies are enforced
 * on every request (also on the upstream's search results); patient, issuer and institution
 * rules are evaluated with what the upstream says of each study (searches filtered result by
 * result, study requests checked before they are forwarded); STOW by a caller limited to some
 * patients is refused because the gateway does not read what it forwards.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createApiKey } from "../../src/gateway/api-keys.js";
import { httpRequest, reasonOf, startInProcess } from "../helpers/archive-harness.js";
import { type OrthancServer, startOrthanc } from "../helpers/orthanc.js";
import { requireTools, TOOLS, toolsAvailable } from "../helpers/tools.js";
import { patientInstance } from "./fixtures.js";

const STUDY_A = "1.2.826.0.1.3680043.10.1342.1";
const STUDY_B = "1.2.826.0.1.3680043.10.1342.2";
/** Patient P1 again, but under another issuer: a patient rule with an issuer must not open it. */
const STUDY_C = "1.2.826.0.1.3680043.10.1342.3";
const PATIENTS: Record<string, { patientId: string; issuerOfPatientId: string; institutionName: string }> = {
  [STUDY_A]: { patientId: "P1", issuerOfPatientId: "HOSP-A", institutionName: "North" },
  [STUDY_B]: { patientId: "P2", issuerOfPatientId: "HOSP-A", institutionName: "South" },
  [STUDY_C]: { patientId: "P1", issuerOfPatientId: "HOSP-B", institutionName: "North" },
};

describe("proxy mode enforces every kind of grant", { concurrency: false }, () => {
  let orthanc: OrthancServer;
  let gateway: { dicomweb: string };
  const cleanups: Array<() => unknown> = [];
  const cleanup = { after: (fn: () => unknown) => cleanups.push(fn) };
  const studyKey = createApiKey("study-a-reader", ["dicomweb.*"], ["study-a"]);
  const patientKey = createApiKey("patient-reader", ["dicomweb.*"], ["patient-p1"]);
  const northKey = createApiKey("north-reader", ["dicomweb.*"], ["north"]);
  const adminKey = createApiKey("admin", ["dicomweb.*"], ["admin"]);
  const get = (path: string, key: string) => httpRequest(gateway.dicomweb + path, { headers: { "x-api-key": key } });

  before(async () => {
    if (!toolsAvailable(TOOLS.orthanc)) return;
    const dir = mkdtempSync(join(tmpdir(), "voxelgate-proxy-access-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    orthanc = await startOrthanc(cleanup, {});
    const files = [STUDY_A, STUDY_B, STUDY_C].map((study, i) => {
      const file = join(dir, `${i}.dcm`);
      writeFileSync(
        file,
        patientInstance({
          studyUid: study,
          seriesUid: `${study}.1`,
          sopUid: `${study}.1.1`,
          ...(PATIENTS[study] as (typeof PATIENTS)[string]),
        }),
      );
      return file;
    });
    await orthanc.upload(files);
    gateway = await startInProcess(cleanup, {
      upstreams: [{ name: "orthanc", url: orthanc.dicomweb, probeIntervalMs: 0 }],
      auth: {
        apiKeys: [studyKey.entry, patientKey.entry, northKey.entry, adminKey.entry],
        rules: [
          { when: { role: "admin" }, allow: "all" },
          { when: { role: "study-a" }, allow: { studyUids: [STUDY_A] } },
          { when: { role: "patient-p1" }, allow: { patientId: "P1", issuerOfPatientId: "HOSP-A" } },
          { when: { role: "north" }, allow: { institutionName: "North" } },
        ],
      },
    });
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  it("a study grant opens its study, searches limited to it, and nothing else", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const key = studyKey.key;
    const own = await get(`/studies/${STUDY_A}/series/${STUDY_A}.1/metadata`, key);
    assert.equal(own.status, 200, reasonOf(own));
    const search = await get(`/studies?StudyInstanceUID=${STUDY_A}`, key);
    assert.equal(search.status, 200, reasonOf(search));
    assert.equal((search.json() as unknown[]).length, 1);
    for (const path of [
      `/studies/${STUDY_B}/series/${STUDY_B}.1/metadata`,
      `/studies/${STUDY_B}/series/${STUDY_B}.1/instances/${STUDY_B}.1.1/frames/1`,
      `/studies/${STUDY_B}`,
      `/studies?StudyInstanceUID=${STUDY_A},${STUDY_B}`,
      "/studies",
      "/series",
    ]) {
      const refused = await get(path, key);
      assert.equal(refused.status, 403, `${path}: ${refused.status} ${reasonOf(refused)}`);
    }
    const stow = await httpRequest(`${gateway.dicomweb}/studies`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": 'multipart/related; type="application/dicom"; boundary=x' },
      body: Buffer.from("--x--\r\n"),
    });
    assert.equal(stow.status, 403);
    assert.match(reasonOf(stow), /store is allowed only on a URL that names the study/);
  });

  const studiesSeen = async (path: string, key: string): Promise<string[]> => {
    const r = await get(path, key);
    assert.equal(r.status, 200, `${path}: ${reasonOf(r)}`);
    return (r.json() as Array<Record<string, { Value?: unknown[] }>>).map((ds) => String(ds["0020000D"]?.Value?.[0])).sort();
  };

  it("a patient rule (with its issuer) opens that patient's studies only: searches filtered, the rest 403", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const key = patientKey.key;
    assert.deepEqual(await studiesSeen("/studies", key), [STUDY_A]);
    assert.deepEqual(await studiesSeen("/series", key), [STUDY_A]);
    assert.deepEqual(await studiesSeen("/instances?PatientID=P1", key), [STUDY_A], "P1 of the other issuer stays hidden");
    const own = await get(`/studies/${STUDY_A}/series/${STUDY_A}.1/metadata`, key);
    assert.equal(own.status, 200, reasonOf(own));
    for (const study of [STUDY_B, STUDY_C]) {
      for (const path of [
        `/studies/${study}/series/${study}.1/metadata`,
        `/studies/${study}/series/${study}.1/instances/${study}.1.1/frames/1`,
        `/studies/${study}/series`,
      ]) {
        const refused = await get(path, key);
        assert.equal(refused.status, 403, `${path}: ${refused.status} ${reasonOf(refused)}`);
        assert.match(reasonOf(refused), /outside this caller's grant/);
      }
    }
    const missing = await get("/studies/1.2.3.4.5.6.7/metadata", key);
    assert.equal(missing.status, 404, reasonOf(missing));
    const stow = await httpRequest(`${gateway.dicomweb}/studies`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": 'multipart/related; type="application/dicom"; boundary=x' },
      body: Buffer.from("--x--\r\n"),
    });
    assert.equal(stow.status, 403);
    assert.match(reasonOf(stow), /cannot store/);
  });

  it("an institution rule opens the studies of that institution", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    assert.deepEqual(await studiesSeen("/studies", northKey.key), [STUDY_A, STUDY_C]);
    const refused = await get(`/studies/${STUDY_B}/series/${STUDY_B}.1/metadata`, northKey.key);
    assert.equal(refused.status, 403, reasonOf(refused));
    const own = await get(`/studies/${STUDY_C}/series/${STUDY_C}.1/instances/${STUDY_C}.1.1/frames/1`, northKey.key);
    assert.equal(own.status, 200, reasonOf(own));
    assert.deepEqual(await studiesSeen("/studies", adminKey.key), [STUDY_A, STUDY_B, STUDY_C], "an unrestricted caller sees all");
  });
});
