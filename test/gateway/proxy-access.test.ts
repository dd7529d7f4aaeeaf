/**
 * Authorization in proxy mode, in front of a real Orthanc: grants that name studies are enforced
 * on every request (also on the upstream's search results); any other restricted grant (patient
 * or institution rules, SMART patient context) is refused with 403 rather than passed through
 * unfiltered, because the proxy cannot see the upstream's patients.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createApiKey } from "../../src/gateway/api-keys.js";
import { httpRequest, reasonOf, startInProcess, syntheticInstance } from "../helpers/archive-harness.js";
import { type OrthancServer, startOrthanc } from "../helpers/orthanc.js";
import { requireTools, TOOLS, toolsAvailable } from "../helpers/tools.js";

const STUDY_A = "1.2.826.0.1.3680043.10.1342.1";
const STUDY_B = "1.2.826.0.1.3680043.10.1342.2";

describe("proxy mode enforces grants that name studies and refuses the others", { concurrency: false }, () => {
  let orthanc: OrthancServer;
  let gateway: { dicomweb: string };
  const cleanups: Array<() => unknown> = [];
  const cleanup = { after: (fn: () => unknown) => cleanups.push(fn) };
  const studyKey = createApiKey("study-a-reader", ["dicomweb.*"], ["study-a"]);
  const patientKey = createApiKey("patient-reader", ["dicomweb.*"], ["patient-p1"]);
  const adminKey = createApiKey("admin", ["dicomweb.*"], ["admin"]);
  const get = (path: string, key: string) => httpRequest(gateway.dicomweb + path, { headers: { "x-api-key": key } });

  before(async () => {
    if (!toolsAvailable(TOOLS.orthanc)) return;
    const dir = mkdtempSync(join(tmpdir(), "voxelgate-proxy-access-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    orthanc = await startOrthanc(cleanup, {});
    const files = [STUDY_A, STUDY_B].map((study, i) => {
      const file = join(dir, `${i}.dcm`);
      writeFileSync(file, syntheticInstance({ studyUid: study, seriesUid: `${study}.1`, sopUid: `${study}.1.1` }));
      return file;
    });
    await orthanc.upload(files);
    gateway = await startInProcess(cleanup, {
      upstreams: [{ name: "orthanc", url: orthanc.dicomweb, probeIntervalMs: 0 }],
      auth: {
        apiKeys: [studyKey.entry, patientKey.entry, adminKey.entry],
        rules: [
          { when: { role: "admin" }, allow: "all" },
          { when: { role: "study-a" }, allow: { studyUids: [STUDY_A] } },
          { when: { role: "patient-p1" }, allow: { patientId: "SYN-1" } },
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
  });

  it("a patient rule cannot be evaluated by a proxy: 403 with the reason, never the unfiltered answer", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    for (const path of ["/studies", `/studies/${STUDY_A}/series/${STUDY_A}.1/metadata`]) {
      const refused = await get(path, patientKey.key);
      assert.equal(refused.status, 403, path);
      assert.match(reasonOf(refused), /proxy mode/);
    }
    const all = await get("/studies", adminKey.key);
    assert.equal(all.status, 200, reasonOf(all));
    assert.equal((all.json() as unknown[]).length, 2, "an unrestricted caller sees both studies");
  });
});
