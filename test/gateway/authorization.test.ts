/**
 * Authorization end to end on a real server with real SQLite and a real OIDC issuer: the SMART
 * patient context, rule-based grants (issuer of patient ID, institution, study list), share tokens
 * for one study or series, and STOW refusals (0124) — QIDO results and counts are filtered,
 * retrieve/render of anything else answers exactly like a study that is not stored.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { createApiKey } from "../../src/gateway/api-keys.js";
import { ShareTokens } from "../../src/gateway/share-tokens.js";
import { openArchive } from "../../src/store/file-archive.js";
import { SqliteIndex } from "../../src/store/sqlite-index.js";
import { httpRequest, type InProcessServer, multipartBody, reasonOf, startInProcess, stowItems } from "../helpers/archive-harness.js";
import { AUDIENCE, type PatientInstance, patientInstance, startIssuer, type TestIssuer, uid } from "./fixtures.js";

const S1 = uid(1, 1);
const S1a = uid(11, 2);
const S1b = uid(12, 2);
const S2 = uid(2, 1);
const S3 = uid(3, 1);
const S4 = uid(4, 1);
const MISSING = uid(99, 1);

/** P1 (SITE-A): S1 with two series, S2. P2 (SITE-B, Clinic B): S3. P3 (SITE-A): S4. */
const INSTANCES: PatientInstance[] = [
  {
    studyUid: S1,
    seriesUid: S1a,
    sopUid: uid(111, 3),
    patientId: "P1",
    issuerOfPatientId: "SITE-A",
    institutionName: "General",
    modality: "CT",
  },
  {
    studyUid: S1,
    seriesUid: S1b,
    sopUid: uid(121, 3),
    patientId: "P1",
    issuerOfPatientId: "SITE-A",
    institutionName: "General",
    modality: "MR",
  },
  { studyUid: S2, seriesUid: uid(21, 2), sopUid: uid(211, 3), patientId: "P1", issuerOfPatientId: "SITE-A", institutionName: "General" },
  { studyUid: S3, seriesUid: uid(31, 2), sopUid: uid(311, 3), patientId: "P2", issuerOfPatientId: "SITE-B", institutionName: "Clinic B" },
  { studyUid: S4, seriesUid: uid(41, 2), sopUid: uid(411, 3), patientId: "P3", issuerOfPatientId: "SITE-A", institutionName: "General" },
];

type Json = Array<Record<string, { Value?: unknown[] }>>;
const studyUids = (body: unknown): string[] => (body as Json).map((d) => String(d["0020000D"]?.Value?.[0])).sort();
const count = (d: Record<string, { Value?: unknown[] }> | undefined, tag: string): unknown => d?.[tag]?.Value?.[0];

describe("authorization", () => {
  let issuer: TestIssuer;
  let server: InProcessServer;
  const cleanups: Array<() => unknown> = [];
  const get = async (path: string, token?: string, accept?: string) =>
    httpRequest(`${server.dicomweb}${path}`, {
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(accept ? { accept } : {}) },
    });
  const token = (claims: Record<string, unknown>) => issuer.token(claims);
  const admin = () => token({ scope: "dicomweb.*", realm_access: { roles: ["admin"] } });

  before(async () => {
    issuer = await startIssuer();
    server = await startInProcess(
      { after: (fn) => cleanups.push(fn) },
      {
        auth: {
          oidc: { issuer: issuer.url, audiences: [AUDIENCE] },
          rules: [
            { when: { role: "admin" }, allow: "all" },
            { when: { role: "site-a" }, allow: { issuerOfPatientId: "SITE-A" } },
            { when: { role: "clinic-b" }, allow: { institutionName: "Clinic B" } },
            { when: { role: "research" }, allow: { studyUids: [S2] } },
          ],
        },
      },
    );
    for (const i of INSTANCES) assert.ok((await server.archive.ingestStream(Readable.from([patientInstance(i)]))).ok);
  });
  after(async () => {
    for (const fn of cleanups) await fn();
    await issuer.stop();
  });

  test("SMART patient context: QIDO shows only that patient's studies, series, instances and counts", async () => {
    const t = await token({ scope: "patient/ImagingStudy.rs", patient: "P1", realm_access: { roles: ["admin"] } });
    const studies = await get("/studies", t);
    assert.equal(studies.status, 200, reasonOf(studies));
    assert.deepEqual(studyUids(studies.json()), [S1, S2].sort());
    assert.equal(((await get("/series", t)).json() as Json).length, 3);
    assert.equal(((await get("/instances", t)).json() as Json).length, 3);
    assert.deepEqual((await get("/studies?PatientID=P2", t)).json(), []);
    assert.deepEqual((await get(`/studies/${S3}/series`, t)).json(), []);
    assert.deepEqual((await get(`/studies/${S3}/instances`, t)).json(), []);
    // The Warning counts only what the grant shows: 2 studies, 1 per page → 1 more.
    const paged = await get("/studies?limit=1", t);
    assert.match(String(paged.headers.warning), /There are 1 additional results/);
    // The admin sees all four with the same query.
    const all = await get("/studies?limit=1", await admin());
    assert.match(String(all.headers.warning), /There are 3 additional results/);
  });

  test("a percent-encoded path reaches the same routes and is guarded alike (401 without credentials, filtered with them)", async () => {
    const origin = server.dicomweb.slice(0, server.dicomweb.length - "/dicomweb".length);
    for (const path of ["/%64icomweb/studies", "/dicomweb/%73tudies", `/dicomweb/studies/${S3}/%6detadata`]) {
      const anonymous = await httpRequest(`${origin}${path}`);
      assert.equal(anonymous.status, 401, `${path}: ${reasonOf(anonymous)}`);
    }
    const t = await token({ scope: "patient/ImagingStudy.rs", patient: "P1", realm_access: { roles: ["admin"] } });
    const encoded = await httpRequest(`${origin}/%64icomweb/%73tudies`, { headers: { authorization: `Bearer ${t}` } });
    assert.equal(encoded.status, 200, reasonOf(encoded));
    assert.deepEqual(studyUids(encoded.json()), [S1, S2].sort());
    const other = await httpRequest(`${origin}/dicomweb/studies/${S3}/%6detadata`, { headers: { authorization: `Bearer ${t}` } });
    assert.equal(other.status, 404, "another patient's study stays hidden");
  });

  test("SMART patient context: another patient's study answers 404 exactly like a study that is not stored", async () => {
    const t = await token({ scope: "patient/ImagingStudy.rs", patient: "P1", realm_access: { roles: ["admin"] } });
    const paths = (study: string, series: string, sop: string) => [
      `/studies/${study}`,
      `/studies/${study}/metadata`,
      `/studies/${study}/series/${series}/metadata`,
      `/studies/${study}/series/${series}/instances/${sop}/frames/1`,
      `/studies/${study}/series/${series}/instances/${sop}/bulk/7FE00010`,
      `/studies/${study}/rendered`,
      `/studies/${study}/thumbnail`,
      `/studies/${study}/series/${series}/instances/${sop}/rendered`,
    ];
    const other = paths(S3, uid(31, 2), uid(311, 3));
    const missing = paths(MISSING, uid(31, 2), uid(311, 3));
    for (const [i, path] of other.entries()) {
      const forbidden = await get(path, t, "*/*");
      const absent = await get(missing[i] as string, t, "*/*");
      assert.equal(forbidden.status, 404, `${path}: ${reasonOf(forbidden)}`);
      assert.equal(absent.status, 404, missing[i]);
      assert.equal(reasonOf(forbidden).replaceAll(S3, "X"), reasonOf(absent).replaceAll(MISSING, "X"), path);
      assert.equal(forbidden.headers["content-type"], absent.headers["content-type"]);
    }
    // Its own study opens.
    const own = await get(`/studies/${S1}/metadata`, t);
    assert.equal(own.status, 200, reasonOf(own));
    assert.equal((own.json() as Json).length, 2);
  });

  test("rule-based grants: by issuer of patient ID, institution, study list; no matching rule sees nothing", async () => {
    const as = async (roles: string[]) => token({ scope: "user/ImagingStudy.rs", realm_access: { roles } });
    assert.deepEqual(studyUids((await get("/studies", await as(["site-a"]))).json()), [S1, S2, S4].sort());
    assert.deepEqual(studyUids((await get("/studies", await as(["clinic-b"]))).json()), [S3]);
    assert.deepEqual(studyUids((await get("/studies", await as(["research"]))).json()), [S2]);
    assert.deepEqual(studyUids((await get("/studies", await as(["site-a", "clinic-b"]))).json()), [S1, S2, S3, S4].sort());
    const nobody = await as([]);
    assert.deepEqual((await get("/studies", nobody)).json(), []);
    assert.equal((await get(`/studies/${S1}/metadata`, nobody)).status, 404);
    assert.equal((await get(`/studies/${S3}/metadata`, await as(["site-a"]))).status, 404);
    assert.equal((await get(`/studies/${S3}/metadata`, await as(["clinic-b"]))).status, 200);
    // Patient context narrows the rules: SITE-A staff launched for P2 (a SITE-B patient) see nothing.
    const launched = await token({ scope: "patient/ImagingStudy.rs", patient: "P2", realm_access: { roles: ["site-a"] } });
    assert.deepEqual((await get("/studies", launched)).json(), []);
  });

  test("share token for a study: opens exactly that study, as Bearer and as ?token=, not others, not after expiry", async () => {
    const minted = await httpRequest(`${server.url}api/share-tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${await admin()}`, "content-type": "application/json" },
      body: JSON.stringify({ studyUid: S1, ttlSeconds: 600 }),
    });
    assert.equal(minted.status, 201, reasonOf(minted));
    const share = minted.json() as { token: string; viewerUrl: string; dicomwebUrl: string; expiresAt: string };
    assert.match(share.viewerUrl, new RegExp(`/viewer\\?StudyInstanceUIDs=${S1.replaceAll(".", "\\.")}&token=vgs1\\.`));
    assert.doesNotMatch(share.viewerUrl, /SeriesInstanceUIDs/);
    assert.ok(Date.parse(share.expiresAt) > Date.now());

    assert.deepEqual(studyUids((await get("/studies", share.token)).json()), [S1]);
    const viaQuery = await httpRequest(share.dicomwebUrl.replace(`/studies/${S1}?`, `/studies/${S1}/metadata?`));
    assert.equal(viaQuery.status, 200, reasonOf(viaQuery));
    const qidoViaQuery = await httpRequest(`${server.dicomweb}/studies?PatientID=P1&token=${encodeURIComponent(share.token)}`);
    assert.equal(qidoViaQuery.status, 200, reasonOf(qidoViaQuery));
    assert.deepEqual(studyUids(qidoViaQuery.json()), [S1]);
    assert.equal((await get(`/studies/${S2}/metadata`, share.token)).status, 404, "study B with the token of study A");
    assert.equal((await get(`/studies/${S1}/rendered`, share.token, "image/jpeg")).status, 200);
    const stow = await httpRequest(`${server.dicomweb}/studies`, {
      method: "POST",
      headers: { authorization: `Bearer ${share.token}`, "content-type": "application/dicom" },
      body: patientInstance({ studyUid: S1, seriesUid: uid(19, 2), sopUid: uid(191, 3), patientId: "P1" }),
    });
    assert.equal(stow.status, 403);
    const again = await httpRequest(`${server.url}api/share-tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${share.token}`, "content-type": "application/json" },
      body: JSON.stringify({ studyUid: S1 }),
    });
    assert.equal(again.status, 403, "a share token cannot mint (or extend) share tokens");

    const keyFile = join(server.dataDir, "gateway", "share-token.key");
    const expired = new ShareTokens(keyFile).mint({ studyUid: S1, ttlSeconds: 60, issuedBy: "alice" }, Date.now() - 3_600_000);
    const res = await get(`/studies/${S1}/metadata`, expired.token);
    assert.equal(res.status, 401);
    assert.match(reasonOf(res), /share token expired at/);
    const dir = mkdtempSync(join(tmpdir(), "voxelgate-key-"));
    const forged = new ShareTokens(join(dir, "k")).mint({ studyUid: S1, ttlSeconds: 60, issuedBy: "mallory" });
    rmSync(dir, { recursive: true, force: true });
    assert.equal((await get(`/studies/${S1}/metadata`, forged.token)).status, 401);
  });

  test("share token for one series: only that series shows, counts included; the whole study is 404", async () => {
    const minted = await httpRequest(`${server.url}api/share-tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${await admin()}`, "content-type": "application/json" },
      body: JSON.stringify({ studyUid: S1, seriesUid: S1a }),
    });
    assert.equal(minted.status, 201, reasonOf(minted));
    const share = minted.json() as { token: string; viewerUrl: string };
    assert.match(share.viewerUrl, /SeriesInstanceUIDs=/);
    const studies = (await get("/studies", share.token)).json() as Json;
    assert.equal(studies.length, 1);
    assert.equal(count(studies[0], "00201206"), 1, "NumberOfStudyRelatedSeries counts the shared series only");
    assert.equal(count(studies[0], "00201208"), 1, "NumberOfStudyRelatedInstances too");
    assert.deepEqual(studies[0]?.["00080061"]?.Value, ["CT"], "ModalitiesInStudy shows the shared series' modality only");
    assert.deepEqual((await get("/studies?ModalitiesInStudy=MR", share.token)).json(), [], "no matching through the hidden series");
    const series = (await get(`/studies/${S1}/series`, share.token)).json() as Json;
    assert.deepEqual(
      series.map((s) => s["0020000E"]?.Value?.[0]),
      [S1a],
    );
    assert.equal((await get(`/studies/${S1}/series/${S1a}/metadata`, share.token)).status, 200);
    assert.equal((await get(`/studies/${S1}/series/${S1b}/metadata`, share.token)).status, 404);
    assert.equal((await get(`/studies/${S1}/metadata`, share.token)).status, 404, "no partial study passed off as whole");
  });

  test("minting needs retrieve rights on the study: another patient's study is 404", async () => {
    const t = await token({ scope: "patient/ImagingStudy.rs", patient: "P1", realm_access: { roles: ["admin"] } });
    const res = await httpRequest(`${server.url}api/share-tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "content-type": "application/json" },
      body: JSON.stringify({ studyUid: S3 }),
    });
    assert.equal(res.status, 404);
    const bad = await httpRequest(`${server.url}api/share-tokens`, {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "content-type": "application/json" },
      body: JSON.stringify({ studyUid: S1, ttlSeconds: 10 ** 9 }),
    });
    assert.equal(bad.status, 400);
    assert.match(reasonOf(bad), /ttlSeconds/);
  });

  test("STOW: a forbidden patient's instance is refused with 0124 while the allowed one is stored", async () => {
    const t = await token({ scope: "patient/ImagingStudy.cruds", patient: "P1", realm_access: { roles: ["admin"] } });
    const mine = { studyUid: uid(5, 1), seriesUid: uid(51, 2), sopUid: uid(511, 3), patientId: "P1" };
    const theirs = { studyUid: uid(6, 1), seriesUid: uid(61, 2), sopUid: uid(611, 3), patientId: "P2" };
    const intoTheirStudy = { studyUid: S3, seriesUid: uid(32, 2), sopUid: uid(321, 3), patientId: "P1" };
    const { body, contentType } = multipartBody([patientInstance(mine), patientInstance(theirs), patientInstance(intoTheirStudy)]);
    const res = await httpRequest(`${server.dicomweb}/studies`, {
      method: "POST",
      headers: { authorization: `Bearer ${t}`, "content-type": contentType, accept: "application/dicom+json" },
      body,
    });
    assert.equal(res.status, 202, reasonOf(res));
    const items = stowItems(res.json());
    assert.deepEqual(
      items.referenced.map((r) => r.sopUid),
      [mine.sopUid],
    );
    assert.deepEqual(
      items.failed.map((f) => [f.sopUid, f.failureReason]),
      [
        [theirs.sopUid, 0x0124],
        [intoTheirStudy.sopUid, 0x0124],
      ],
    );
    assert.ok(server.archive.index.exists({ studyUid: mine.studyUid }));
    assert.ok(!server.archive.index.exists({ studyUid: theirs.studyUid }));
    assert.ok(!server.archive.index.exists({ studyUid: S3, seriesUid: intoTheirStudy.seriesUid }));
  });
});

test("an index made before the grant columns is upgraded in place and filled from the stored attributes", async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-migrate-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const archive = await openArchive({ dataDir });
  for (const i of INSTANCES) assert.ok((await archive.ingestStream(Readable.from([patientInstance(i)]))).ok);
  await archive.close();
  // Make it look like an index of the previous version.
  const file = join(dataDir, "index.sqlite");
  const old = new SqliteIndex(file);
  old.db.exec(`DROP INDEX studies_issuer_of_patient_id; DROP INDEX studies_institution_name;
    ALTER TABLE studies DROP COLUMN issuer_of_patient_id; ALTER TABLE studies DROP COLUMN institution_name;`);
  old.close();
  const upgraded = new SqliteIndex(file);
  t.after(() => upgraded.close());
  assert.ok(upgraded.allows({ studyUid: S3 }, [{ institutionName: "Clinic B" }]));
  assert.ok(!upgraded.allows({ studyUid: S1 }, [{ institutionName: "Clinic B" }]));
  assert.ok(upgraded.allows({ studyUid: S4 }, [{ issuerOfPatientId: "SITE-A" }]));
});

test("DELETE needs a delete scope and a study inside the grant (API keys with roles, rule grants)", async (t) => {
  const deleter = createApiKey("cleaner", ["dicomweb.delete", "dicomweb.search"], ["site-a"]);
  const reader = createApiKey("reader", ["dicomweb.read"], ["site-a"]);
  const server = await startInProcess(t, {
    allowDelete: true,
    auth: { apiKeys: [deleter.entry, reader.entry], rules: [{ when: { role: "site-a" }, allow: { issuerOfPatientId: "SITE-A" } }] },
  });
  for (const i of INSTANCES) assert.ok((await server.archive.ingestStream(Readable.from([patientInstance(i)]))).ok);
  const del = (study: string, key: string) =>
    httpRequest(`${server.dicomweb}/studies/${study}`, { method: "DELETE", headers: { "x-api-key": key } });
  const noScope = await del(S4, reader.key);
  assert.equal(noScope.status, 403);
  assert.match(String(noScope.headers["www-authenticate"]), /insufficient_scope.*dicomweb.delete/);
  const outside = await del(S3, deleter.key);
  assert.equal(outside.status, 404, "a SITE-B study is not there for a SITE-A key");
  assert.equal(reasonOf(outside), `study ${S3} is not stored`);
  assert.ok(server.archive.index.exists({ studyUid: S3 }));
  assert.equal((await del(S4, deleter.key)).status, 200);
  assert.ok(!server.archive.index.exists({ studyUid: S4 }));
});
