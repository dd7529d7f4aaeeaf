/**
 * QIDO-RS over HTTP (Fastify inject) on a real SqliteIndex: levels and scoping, the required
 * return keys of each level, and every kind of matching (PS3.18 §10.6, PS3.4 C.2.2.2).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import type { DicomJsonDataset } from "../../src/dicom/index.js";
import { BASE_URL_TOKEN } from "../../src/store/archive.js";
import { BASE, CT_IMAGE, type Fixture, openFixture, qidoApp, UID } from "./qido-fixtures.js";

let fixture: Fixture;
let app: FastifyInstance;

before(async () => {
  fixture = openFixture();
  app = await qidoApp(fixture.index);
});
after(async () => {
  await app.close();
  fixture.close();
});

interface Got {
  status: number;
  headers: Record<string, unknown>;
  body: string;
  json: DicomJsonDataset[];
}

/** GET under /dicomweb; fails unless the status is `expect` (200 by default). */
async function get(url: string, headers: Record<string, string> = {}, expect = 200): Promise<Got> {
  const r = await app.inject({ method: "GET", url: `/dicomweb${url}`, headers });
  assert.equal(r.statusCode, expect, `${url}: ${r.statusCode} ${r.body}`);
  const isJson = String(r.headers["content-type"] ?? "").includes("json") && r.statusCode === 200;
  return { status: r.statusCode, headers: r.headers, body: r.body, json: isJson ? (JSON.parse(r.body) as DicomJsonDataset[]) : [] };
}

/** The first value of a tag in each result. */
const values = (results: DicomJsonDataset[], tag: string): unknown[] => results.map((r) => r[tag]?.Value?.[0]);
const studyUids = (results: DicomJsonDataset[]): unknown[] => values(results, "0020000D");
const seriesUids = (results: DicomJsonDataset[]): unknown[] => values(results, "0020000E");
const sopUids = (results: DicomJsonDataset[]): unknown[] => values(results, "00080018");

async function studiesWhere(query: string): Promise<unknown[]> {
  const r = await get(`/studies?${query}`);
  assert.equal(r.status, 200, r.body);
  return studyUids(r.json);
}

describe("levels and scoping", () => {
  test("studies: newest StudyDate first, undated last", async () => {
    const r = await get("/studies");
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/dicom+json");
    assert.deepEqual(studyUids(r.json), [UID.studyB, UID.studyD, UID.studyA, UID.studyC]);
  });

  test("series of all studies, in study order then SeriesNumber (unnumbered last)", async () => {
    const r = await get("/series");
    assert.deepEqual(seriesUids(r.json), [UID.seriesB1, UID.seriesB2, UID.seriesD1, UID.seriesA1, UID.seriesA2, UID.seriesC1]);
  });

  test("series within a study", async () => {
    assert.deepEqual(seriesUids((await get(`/studies/${UID.studyA}/series`)).json), [UID.seriesA1, UID.seriesA2]);
    assert.deepEqual(seriesUids((await get(`/studies/${UID.studyB}/series`)).json), [UID.seriesB1, UID.seriesB2]);
  });

  test("instances: all, within a study, within a series (InstanceNumber order)", async () => {
    assert.equal((await get("/instances")).json.length, 9);
    const inStudy = await get(`/studies/${UID.studyA}/instances`);
    assert.deepEqual(sopUids(inStudy.json), [`${UID.seriesA1}.1`, `${UID.seriesA1}.2`, `${UID.seriesA1}.3`, `${UID.seriesA2}.1`]);
    const inSeries = await get(`/studies/${UID.studyA}/series/${UID.seriesA1}/instances`);
    assert.deepEqual(sopUids(inSeries.json), [`${UID.seriesA1}.1`, `${UID.seriesA1}.2`, `${UID.seriesA1}.3`]);
  });

  test("a scope that does not exist (or a series of another study) gives 200 []", async () => {
    for (const url of [`/studies/1.2.3.4/series`, `/studies/${UID.studyB}/series/${UID.seriesA1}/instances`, `/studies/1.2.3/instances`]) {
      const r = await get(url);
      assert.equal(r.status, 200, url);
      assert.equal(r.body, "[]", url);
    }
  });

  test("a malformed UID in the path is a 400", async () => {
    const r = await get("/studies/1.2.abc/series", {}, 400);
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error, /study UID in the path/);
  });
});

describe("return keys (PS3.18 Tables 10.6.3-3/4/5)", () => {
  test("study: patient and study attributes, computed counts and modalities, RetrieveURL, availability", async () => {
    const r = await get(`/studies?StudyInstanceUID=${UID.studyA}`);
    const [study] = r.json;
    assert.ok(study);
    for (const tag of [
      "00080020",
      "00080030",
      "00080050",
      "00080056",
      "00080061",
      "00080090",
      "00081030",
      "00081190",
      "00100010",
      "00100020",
      "00100030",
      "00100040",
      "0020000D",
      "00200010",
      "00201206",
      "00201208",
    ]) {
      assert.ok(study[tag], `missing ${tag}`);
    }
    assert.deepEqual(study["00080061"], { vr: "CS", Value: ["CT", "SR"] });
    assert.deepEqual(study["00201206"], { vr: "IS", Value: [2] });
    assert.deepEqual(study["00201208"], { vr: "IS", Value: [4] });
    assert.deepEqual(study["00080056"], { vr: "CS", Value: ["ONLINE"] });
    assert.deepEqual(study["00081190"], { vr: "UR", Value: [`${BASE}/studies/${UID.studyA}`] });
    assert.deepEqual(study["00080201"], { vr: "SH", Value: ["+0100"] }, "TimezoneOffsetFromUTC when known");
    assert.equal(study["0020000E"], undefined, "no series attributes at study level");
    assert.equal(study["00080060"], undefined);
    // Keys in ascending order (PS3.18 F.2.1.1).
    const keys = Object.keys(study);
    assert.deepEqual(keys, [...keys].sort());
  });

  test("study: absent required keys are returned empty; SOPClassesInStudy only on request", async () => {
    const [d] = (await get(`/studies?StudyInstanceUID=${UID.studyD}`)).json;
    assert.deepEqual(d?.["00080090"], { vr: "PN" }, "ReferringPhysicianName empty");
    assert.equal(d?.["00080062"], undefined);
    const [a] = (await get(`/studies?StudyInstanceUID=${UID.studyA}&includefield=SOPClassesInStudy`)).json;
    assert.deepEqual(a?.["00080062"], { vr: "UI", Value: [CT_IMAGE, "1.2.840.10008.5.1.4.1.1.88.22"] });
  });

  test("series: unscoped results carry the study attributes; scoped ones only the StudyInstanceUID", async () => {
    const [unscoped] = (await get(`/series?SeriesInstanceUID=${UID.seriesA1}`)).json;
    assert.ok(unscoped);
    for (const tag of [
      "00080060",
      "0008103E",
      "00081190",
      "0020000E",
      "00200011",
      "00201209",
      "00400244",
      "00400245",
      "00400275",
      "00100010",
      "00100020",
      "0020000D",
      "00201208",
    ]) {
      assert.ok(unscoped[tag], `missing ${tag}`);
    }
    assert.deepEqual(unscoped["00201209"], { vr: "IS", Value: [3] });
    assert.deepEqual(unscoped["00081190"], { vr: "UR", Value: [`${BASE}/studies/${UID.studyA}/series/${UID.seriesA1}`] });
    assert.equal(unscoped["00400275"]?.Value?.length, 2, "RequestAttributesSequence with its items");
    assert.equal(unscoped["00080018"], undefined, "no instance attributes at series level");

    const scoped = (await get(`/studies/${UID.studyA}/series`)).json;
    assert.equal(scoped.length, 2);
    for (const s of scoped) {
      assert.equal(s["00100010"], undefined, "PatientName left out within a study");
      assert.equal(s["00201208"], undefined);
      assert.deepEqual(s["0020000D"], { vr: "UI", Value: [UID.studyA] });
    }
    assert.deepEqual(scoped[1]?.["00201209"], { vr: "IS", Value: [1] });
  });

  test("instance: SOP keys, image size keys when present, NumberOfFrames, RetrieveURL; enclosing levels per scope", async () => {
    const all = (await get("/instances")).json;
    const mr = all.find((r) => r["00080018"]?.Value?.[0] === `${UID.seriesB1}.1`);
    assert.ok(mr);
    assert.deepEqual(mr["00080016"], { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.4"] });
    assert.deepEqual(mr["00200013"], { vr: "IS", Value: [1] });
    assert.deepEqual(mr["00280010"], { vr: "US", Value: [256] });
    assert.deepEqual(mr["00280011"], { vr: "US", Value: [256] });
    assert.deepEqual(mr["00280100"], { vr: "US", Value: [16] });
    assert.deepEqual(mr["00280008"], { vr: "IS", Value: [10] });
    assert.deepEqual(mr["00081190"], {
      vr: "UR",
      Value: [`${BASE}/studies/${UID.studyB}/series/${UID.seriesB1}/instances/${UID.seriesB1}.1`],
    });
    assert.ok(mr["00100010"] && mr["00080060"] && mr["00201209"], "study and series attributes when unscoped");

    const pr = all.find((r) => r["00080018"]?.Value?.[0] === `${UID.seriesB2}.1`);
    assert.ok(pr);
    assert.equal(pr["00280010"], undefined, "Rows absent for a non-image");
    assert.equal(pr["00280008"], undefined);
    assert.deepEqual(pr["00200013"], { vr: "IS" }, "InstanceNumber returned empty");

    const inSeries = (await get(`/studies/${UID.studyA}/series/${UID.seriesA1}/instances`)).json;
    assert.deepEqual(inSeries[0]?.["00080201"], { vr: "SH", Value: ["+0100"] }, "the instance's Timezone Offset From UTC, when known");
    assert.equal(pr["00080201"], undefined, "and only then");
    assert.equal(inSeries[0]?.["00100010"], undefined);
    assert.equal(inSeries[0]?.["0008103E"], undefined);
    assert.deepEqual(inSeries[0]?.["0020000E"], { vr: "UI", Value: [UID.seriesA1] });
    const inStudy = (await get(`/studies/${UID.studyA}/instances`)).json;
    assert.equal(inStudy[0]?.["00100010"], undefined);
    assert.ok(inStudy[0]?.["0008103E"], "series attributes when not scoped to a series");
  });

  test("Specific Character Set is ISO_IR 192 exactly when a value is not ASCII", async () => {
    const [a] = (await get(`/studies?StudyInstanceUID=${UID.studyA}`)).json;
    const [d] = (await get(`/studies?StudyInstanceUID=${UID.studyD}`)).json;
    assert.deepEqual(a?.["00080005"], { vr: "CS", Value: ["ISO_IR 192"] });
    assert.equal(d?.["00080005"], undefined, "the stored ISO_IR 100 is not copied");
  });

  test("BulkDataURIs (with the storage placeholder) are never returned", async () => {
    const r = await get("/instances?includefield=all");
    assert.equal(r.status, 200);
    assert.ok(!r.body.includes("BulkDataURI"), "no BulkDataURI");
    assert.ok(!r.body.includes(BASE_URL_TOKEN), "no placeholder");
    const c = r.json.find((x) => x["00080018"]?.Value?.[0] === `${UID.seriesC1}.1`);
    assert.deepEqual(c?.["00540016"], { vr: "SQ", Value: [{ "00181074": { vr: "DS", Value: [100] } }] });
  });
});

describe("matching", () => {
  test("single value, case-sensitive for non-PN", async () => {
    assert.deepEqual(await studiesWhere("PatientID=PID-A"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("AccessionNumber=acc-2"), [UID.studyB]);
    assert.deepEqual(await studiesWhere("AccessionNumber=ACC-2"), []);
    assert.deepEqual(await studiesWhere("StudyID=s1"), []);
    assert.deepEqual(await studiesWhere("00100020=PID-D"), [UID.studyD], "by tag");
    assert.deepEqual(seriesUids((await get("/series?0008103e=Report")).json), [UID.seriesA2], "lower-case hex tag");
  });

  test("wildcards * and ?; SQL LIKE/GLOB specials are literal", async () => {
    assert.deepEqual(await studiesWhere("AccessionNumber=ACC*"), [UID.studyD, UID.studyA], "case-sensitive prefix");
    assert.deepEqual(await studiesWhere("AccessionNumber=ACC?1"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("PatientID=PID-?"), [UID.studyB, UID.studyD, UID.studyA, UID.studyC]);
    assert.deepEqual(await studiesWhere("PatientID=PID-??"), []);
    assert.deepEqual(await studiesWhere(`AccessionNumber=${encodeURIComponent("AC_3%[x]")}`), [UID.studyC], "single value with _ % [");
    assert.deepEqual(await studiesWhere(`AccessionNumber=${encodeURIComponent("AC_3%*")}`), [UID.studyC]);
    assert.deepEqual(await studiesWhere(`AccessionNumber=${encodeURIComponent("AC%*")}`), [], "% is not a wildcard");
    assert.deepEqual(await studiesWhere(`AccessionNumber=${encodeURIComponent("A__3*")}`), [], "_ is not a wildcard");
    assert.deepEqual(await studiesWhere(`StudyDescription=${encodeURIComponent("*[left]")}`), [UID.studyC], "[ is literal");
    assert.deepEqual(await studiesWhere("StudyDescription=*ct"), [], "case-sensitive");
    assert.deepEqual(await studiesWhere("StudyDescription=*CT"), [UID.studyA]);
  });

  test('universal matching: empty value, "" and * match all and return the key', async () => {
    for (const v of ["", encodeURIComponent('""'), "*"]) {
      const r = await get(`/studies?IssuerOfPatientID=${v}`);
      assert.equal(r.json.length, 4, `value ${v}`);
      assert.deepEqual(r.json[0]?.["00100021"], { vr: "LO" }, "the key is returned (empty)");
    }
  });

  test("UID list matching, comma or backslash separated", async () => {
    assert.deepEqual(await studiesWhere(`StudyInstanceUID=${UID.studyA},${UID.studyC}`), [UID.studyA, UID.studyC]);
    assert.deepEqual(await studiesWhere(`StudyInstanceUID=${UID.studyA}%5C${UID.studyB}`), [UID.studyB, UID.studyA]);
    const r = await get(`/instances?SOPInstanceUID=${UID.seriesA1}.2,${UID.seriesD1}.1`);
    assert.deepEqual(sopUids(r.json), [`${UID.seriesD1}.1`, `${UID.seriesA1}.2`]);
    assert.deepEqual(sopUids((await get(`/instances?SOPClassUID=${CT_IMAGE}`)).json).length, 3);
  });

  test("date ranges: closed, open-ended, single", async () => {
    assert.deepEqual(await studiesWhere("StudyDate=20200101-20201231"), [UID.studyD, UID.studyA]);
    assert.deepEqual(await studiesWhere("StudyDate=-20201231"), [UID.studyD, UID.studyA]);
    assert.deepEqual(await studiesWhere("StudyDate=20201231-"), [UID.studyB, UID.studyD]);
    assert.deepEqual(await studiesWhere("StudyDate=20200315"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("StudyDate=20200316-20201230"), []);
    assert.deepEqual(await studiesWhere("PatientBirthDate=19000101-19600101"), [UID.studyD]);
    const r = await get("/series?PerformedProcedureStepStartDate=20200301-20200331");
    assert.deepEqual(seriesUids(r.json), [UID.seriesA1]);
  });

  test("time ranges, at the precision written", async () => {
    assert.deepEqual(await studiesWhere("StudyTime=0800-0900"), [UID.studyB], "stored 0830");
    assert.deepEqual(await studiesWhere("StudyTime=10"), [UID.studyA], "10 = 10:00 to 10:59:59.999999");
    assert.deepEqual(await studiesWhere("StudyTime=101500"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("StudyTime=2359-"), [UID.studyD], "stored 235959.5");
    assert.deepEqual(await studiesWhere("StudyTime=-0829"), []);
    assert.deepEqual(seriesUids((await get("/series?PerformedProcedureStepStartTime=1016")).json), [UID.seriesA1]);
  });

  test("date-time ranges (any attribute, matched on the stored JSON)", async () => {
    const one = `${UID.seriesA1}.1`;
    assert.deepEqual(sopUids((await get("/instances?AcquisitionDateTime=20200315-20200315")).json), [one]);
    assert.deepEqual(sopUids((await get("/instances?AcquisitionDateTime=202003151017")).json), [one]);
    assert.deepEqual(sopUids((await get("/instances?AcquisitionDateTime=20200315101701-")).json), [], "after 10:17:01");
    assert.deepEqual(
      sopUids((await get("/instances?AcquisitionDateTime=-20200315101700.2")).json),
      [`${UID.seriesA1}.1`],
      "fraction .123 < .2",
    );
    assert.deepEqual(sopUids((await get(`/instances?AcquisitionDateTime=${encodeURIComponent("20200315+0100-20200316+0100")}`)).json), [
      one,
    ]);
  });

  test("PN: case-insensitive, accent-sensitive, component groups", async () => {
    assert.deepEqual(await studiesWhere("PatientName=m%C3%BCller%5Ezo%C3%AB"), [UID.studyA], "müller^zoë");
    assert.deepEqual(await studiesWhere("PatientName=MULLER%5EZOE"), [], "accents count without fuzzy matching");
    assert.deepEqual(await studiesWhere("PatientName=m%C3%BCller*"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("PatientName=*brien*"), [UID.studyC]);
    assert.deepEqual(await studiesWhere("PatientName=Doe%5EJohn%5E%5E"), [UID.studyD], "trailing empty components ignored");
    assert.deepEqual(await studiesWhere(`PatientName=${encodeURIComponent("山田*")}`), [UID.studyB], "ideographic group");
    assert.deepEqual(await studiesWhere(`PatientName=${encodeURIComponent("やまだ^たろう")}`), [UID.studyB], "phonetic group");
    assert.deepEqual(await studiesWhere(`PatientName=${encodeURIComponent("yamada^tarou=山田^太郎")}`), [UID.studyB], "group by group");
    assert.deepEqual(await studiesWhere(`PatientName=${encodeURIComponent("Yamada^Tarou=山田^花子")}`), [], "ideographic group differs");
    assert.deepEqual(await studiesWhere(`PatientName=${encodeURIComponent("=山田*")}`), [UID.studyB], "only the ideographic group");
    assert.deepEqual(await studiesWhere("PatientName=john"), [], "whole value, not a word");
    assert.deepEqual(await studiesWhere("ReferringPhysicianName=DOE%5EJOHN"), [UID.studyB]);
  });

  test("fuzzy PN matching: accent-insensitive word prefixes in any order", async () => {
    assert.deepEqual(await studiesWhere("PatientName=MULLER%5EZOE&fuzzymatching=true"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("PatientName=zoe&fuzzymatching=true"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("PatientName=jo%20do&fuzzymatching=true"), [UID.studyD]);
    assert.deepEqual(await studiesWhere("PatientName=sean&fuzzymatching=true"), [UID.studyC]);
    assert.deepEqual(await studiesWhere("PatientName=ohn&fuzzymatching=true"), [], "prefixes, not substrings");
    assert.deepEqual(await studiesWhere(`PatientName=${encodeURIComponent("太郎")}&fuzzymatching=true`), [UID.studyB]);
    assert.deepEqual(await studiesWhere("PatientName=zoe&fuzzymatching=false"), []);
  });

  test("ModalitiesInStudy: any of a list", async () => {
    assert.deepEqual(await studiesWhere("ModalitiesInStudy=CT"), [UID.studyA]);
    assert.deepEqual(await studiesWhere("ModalitiesInStudy=MR%5CCT"), [UID.studyB, UID.studyA]);
    assert.deepEqual(await studiesWhere("ModalitiesInStudy=MR,US"), [UID.studyB, UID.studyD]);
    assert.deepEqual(await studiesWhere("ModalitiesInStudy=C*"), [UID.studyA, UID.studyC]);
    assert.deepEqual(await studiesWhere("ModalitiesInStudy=ct"), []);
    const r = await get("/studies?ModalitiesInStudy=SR");
    assert.deepEqual(r.json[0]?.["00080061"], { vr: "CS", Value: ["CT", "SR"] }, "all modalities of the study are returned");
  });

  test("series and instance keys: indexed and not", async () => {
    assert.deepEqual(seriesUids((await get("/series?Modality=MR")).json), [UID.seriesB1]);
    assert.deepEqual(seriesUids((await get("/series?SeriesNumber=2")).json), [UID.seriesA2]);
    assert.deepEqual(seriesUids((await get("/series?SeriesDescription=*sag")).json), [UID.seriesB1]);
    assert.deepEqual(seriesUids((await get("/series?BodyPartExamined=HEAD")).json), [UID.seriesB1]);
    assert.deepEqual(sopUids((await get("/instances?InstanceNumber=3")).json), [`${UID.seriesA1}.3`]);
    assert.deepEqual(sopUids((await get("/instances?Rows=2048")).json), [`${UID.seriesC1}.1`]);
    assert.deepEqual(sopUids((await get("/instances?NumberOfFrames=10")).json), [`${UID.seriesB1}.1`]);
    assert.deepEqual(
      sopUids((await get("/instances?ImageType=AXIAL")).json),
      [`${UID.seriesA1}.1`],
      "any value of a multi-valued attribute",
    );
    assert.deepEqual(
      sopUids((await get("/instances?SliceThickness=2.5")).json),
      [`${UID.seriesA1}.2`, `${UID.seriesA1}.3`],
      "DS as a number",
    );
    assert.deepEqual(sopUids((await get("/instances?SliceThickness=2.50")).json).length, 2);
    assert.deepEqual(sopUids((await get("/instances?00091010=secret*")).json), [`${UID.seriesB1}.1`], "private tag");
    const mixed = await get(`/instances?Modality=CT&InstanceNumber=2&PatientID=PID-A`);
    assert.deepEqual(sopUids(mixed.json), [`${UID.seriesA1}.2`], "keys of three levels together");
  });

  test("matching keys are returned; keys below the searched level match relationally and are not returned", async () => {
    const series = (await get("/series?BodyPartExamined=CHEST")).json;
    assert.deepEqual(series[0]?.["00180015"], { vr: "CS", Value: ["CHEST"] });
    assert.deepEqual(await studiesWhere("BodyPartExamined=CHEST"), [UID.studyA]);
    assert.equal((await get("/studies?BodyPartExamined=CHEST")).json[0]?.["00180015"], undefined);
    assert.deepEqual(await studiesWhere("Modality=PR"), [UID.studyB]);
    assert.deepEqual(await studiesWhere("Manufacturer=ACME*"), [UID.studyA]);
    assert.deepEqual(await studiesWhere(`SOPClassUID=${CT_IMAGE}`), [UID.studyA]);
    assert.deepEqual(await studiesWhere("ImageType=AXIAL"), [UID.studyA], "instance metadata under a study");
    assert.deepEqual(seriesUids((await get("/series?ImageType=DERIVED")).json), [UID.seriesA1]);
  });

  test("sequence matching: one item must match every item key", async () => {
    const sps = (q: string): Promise<Got> => get(`/series?${q}`);
    assert.deepEqual(seriesUids((await sps("RequestAttributesSequence.ScheduledProcedureStepID=SPS-1")).json), [UID.seriesA1]);
    assert.deepEqual(seriesUids((await sps("00400275.00401001=RP-1")).json), [UID.seriesA1, UID.seriesA2]);
    assert.deepEqual(
      seriesUids(
        (await sps("RequestAttributesSequence.ScheduledProcedureStepID=SPS-1&RequestAttributesSequence.RequestedProcedureID=RP-9")).json,
      ),
      [],
    );
    assert.deepEqual(
      seriesUids((await sps("RequestAttributesSequence.ScheduledProcedureStepID=SPS-9&00400275.RequestedProcedureID=RP-9")).json),
      [UID.seriesA1],
    );
    assert.deepEqual(
      seriesUids(
        (await sps("RequestAttributesSequence.ScheduledProcedureStepID=SPS-*&RequestAttributesSequence.RequestedProcedureID=RP-1")).json,
      ),
      [UID.seriesA1, UID.seriesA2],
    );
    assert.deepEqual(seriesUids((await get("/instances?ContentSequence.TextValue=*acute*")).json), [UID.seriesA2]);
  });

  test("InstanceAvailability matches ONLINE", async () => {
    assert.equal((await studiesWhere("InstanceAvailability=ONLINE")).length, 4);
    assert.equal((await studiesWhere("InstanceAvailability=OFFLINE")).length, 0);
  });

  test("multiplevaluematching=true: any of backslash-separated values", async () => {
    assert.deepEqual(await studiesWhere("PatientID=PID-A%5CPID-B&multiplevaluematching=true"), [UID.studyB, UID.studyA]);
    assert.deepEqual(await studiesWhere("StudyDate=20200315%5C20210101-&multiplevaluematching=true"), [UID.studyB, UID.studyA]);
  });
});
