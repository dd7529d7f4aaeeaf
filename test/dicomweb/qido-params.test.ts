/**
 * QIDO-RS query parameters and responses: includefield, limit/offset with the Warning header and
 * the server maximum, 400 for what a client must correct, media types (DICOM JSON, multipart XML,
 * 406), HEAD, ETag.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import type { DicomJsonDataset } from "../../src/dicom/index.js";
import { parseQidoQuery, QidoError } from "../../src/dicomweb/qido.js";
import { negotiateQido } from "../../src/http/qido-routes.js";
import { SEARCH_TUNING } from "../../src/store/sqlite-search.js";
import { PYTHON } from "../helpers/tools.js";
import { type Fixture, openFixture, qidoApp, UID } from "./qido-fixtures.js";

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

async function get(url: string, headers: Record<string, string> = {}, on: FastifyInstance = app) {
  const r = await on.inject({ method: "GET", url: `/dicomweb${url}`, headers });
  const json = r.statusCode === 200 && String(r.headers["content-type"]).includes("json") ? (JSON.parse(r.body) as DicomJsonDataset[]) : [];
  return { status: r.statusCode, headers: r.headers, body: r.body, rawPayload: r.rawPayload, json };
}

async function ok(url: string, on: FastifyInstance = app): Promise<DicomJsonDataset[]> {
  const r = await get(url, {}, on);
  assert.equal(r.status, 200, `${url}: ${r.body}`);
  return r.json;
}

/** Asserts a 400 whose reason matches. */
async function rejects(url: string, reason: RegExp): Promise<void> {
  const r = await get(url);
  assert.equal(r.status, 400, `${url} gave ${r.status}: ${r.body}`);
  assert.match(String(r.headers["content-type"]), /^application\/json/);
  const body = JSON.parse(r.body) as { error: string };
  assert.match(body.error, reason, url);
}

const first = (r: DicomJsonDataset[], tag: string): unknown => r[0]?.[tag]?.Value?.[0];

describe("includefield", () => {
  test("a keyword adds the attribute of the level; one of a lower level is not returned", async () => {
    const series = await ok(`/series?SeriesInstanceUID=${UID.seriesA1}&includefield=Manufacturer`);
    assert.deepEqual(series[0]?.["00080070"], { vr: "LO", Value: ["ACME Medical"] });
    const withoutIt = await ok(`/series?SeriesInstanceUID=${UID.seriesA1}`);
    assert.equal(withoutIt[0]?.["00080070"], undefined, "not returned unless asked");
    const studies = await ok(`/studies?StudyInstanceUID=${UID.studyA}&includefield=Manufacturer&includefield=SOPInstanceUID`);
    assert.equal(studies[0]?.["00080070"], undefined, "series attribute at study level");
    assert.equal(studies[0]?.["00080018"], undefined, "instance attribute at study level");
  });

  test("comma-separated, repeated, by tag, and absent attributes returned empty", async () => {
    const r = await ok(`/series?SeriesInstanceUID=${UID.seriesA1}&includefield=Manufacturer,00180015&includefield=ProtocolName`);
    assert.deepEqual(r[0]?.["00080070"], { vr: "LO", Value: ["ACME Medical"] });
    assert.deepEqual(r[0]?.["00180015"], { vr: "CS", Value: ["CHEST"] });
    assert.deepEqual(r[0]?.["00181030"], { vr: "LO" });
  });

  test("study attributes asked for within a study are returned", async () => {
    const r = await ok(`/studies/${UID.studyA}/series?includefield=PatientName`);
    assert.deepEqual(r[0]?.["00100010"], { vr: "PN", Value: [{ Alphabetic: "Müller^Zoë" }] });
    assert.equal(r[0]?.["00100020"], undefined);
  });

  test("a dotted path includes its top-level sequence (without BulkDataURIs)", async () => {
    const r = await ok(`/studies/${UID.studyC}/instances?includefield=00540016.00181074`);
    assert.deepEqual(r[0]?.["00540016"], { vr: "SQ", Value: [{ "00181074": { vr: "DS", Value: [100] } }] });
  });

  test("a private tag brings its private creator", async () => {
    const r = await ok(`/studies/${UID.studyB}/series/${UID.seriesB1}/instances?includefield=00091010`);
    assert.deepEqual(r[0]?.["00091010"], { vr: "LO", Value: ["secret sauce"] });
    assert.deepEqual(r[0]?.["00090010"], { vr: "LO", Value: ["ACME 1.0"] });
  });

  test("all: every attribute of the level (and of unscoped upper levels)", async () => {
    const studies = await ok(`/studies?StudyInstanceUID=${UID.studyA}&includefield=all`);
    assert.ok(studies[0]?.["00080062"], "SOPClassesInStudy");
    assert.equal(studies[0]?.["00080070"], undefined, "no series attribute");
    const series = await ok(`/series?SeriesInstanceUID=${UID.seriesA1}&includefield=all`);
    assert.ok(series[0]?.["00080070"] && series[0]?.["00180015"], "series attributes");
    assert.equal(series[0]?.["00080018"], undefined, "no instance attribute");
    assert.equal(series[0]?.["00280010"], undefined);
    const instances = await ok(`/studies/${UID.studyA}/series/${UID.seriesA1}/instances?includefield=all`);
    assert.deepEqual(instances[0]?.["00180050"], { vr: "DS", Value: [1.25] });
    assert.deepEqual(instances[0]?.["00080008"], { vr: "CS", Value: ["ORIGINAL", "PRIMARY", "AXIAL"] });
    assert.equal(instances[0]?.["7FE00010"], undefined, "pixel data BulkDataURI left out");
    assert.deepEqual(
      instances[0]?.["00081190"]?.Value?.[0],
      `http://pacs.example.org:8042/dicomweb/studies/${UID.studyA}/series/${UID.seriesA1}/instances/${UID.seriesA1}.1`,
    );
  });

  test("an unknown includefield is a 400", async () => {
    await rejects("/studies?includefield=NoSuchKeyword", /NoSuchKeyword/);
    await rejects("/studies?includefield=PatientName,Bogus", /Bogus/);
  });
});

describe("limit, offset and the Warning header", () => {
  const WARNING = /^299 pacs\.example\.org:8042 "There are (\d+) additional results that can be requested"$/;
  const warningOf = (headers: Record<string, unknown>): string | undefined => {
    const w = headers.warning;
    return Array.isArray(w) ? String(w[0]) : w === undefined ? undefined : String(w);
  };

  test("limit cuts with a Warning counting what is left; offset pages on; past the end is []", async () => {
    const page1 = await get("/studies?limit=2");
    assert.deepEqual(
      page1.json.map((r) => r["0020000D"]?.Value?.[0]),
      [UID.studyB, UID.studyD],
    );
    assert.match(warningOf(page1.headers) ?? "", WARNING);
    assert.equal(WARNING.exec(warningOf(page1.headers) ?? "")?.[1], "2");
    const page2 = await get("/studies?limit=2&offset=2");
    assert.deepEqual(
      page2.json.map((r) => r["0020000D"]?.Value?.[0]),
      [UID.studyA, UID.studyC],
    );
    assert.equal(page2.headers.warning, undefined, "last page: no Warning");
    const past = await get("/studies?offset=10");
    assert.equal(past.status, 200);
    assert.equal(past.body, "[]");
    const exact = await get("/studies?limit=4");
    assert.equal(exact.headers.warning, undefined, "limit equal to the matches: nothing cut");
  });

  test("paging applies after matching done outside SQL", async () => {
    const p1 = await get("/instances?ImageType=DERIVED&limit=1");
    assert.deepEqual(
      p1.json.map((r) => r["00080018"]?.Value?.[0]),
      [`${UID.seriesA1}.2`],
    );
    assert.equal(WARNING.exec(warningOf(p1.headers) ?? "")?.[1], "1");
    const p2 = await get("/instances?ImageType=DERIVED&limit=1&offset=1");
    assert.deepEqual(
      p2.json.map((r) => r["00080018"]?.Value?.[0]),
      [`${UID.seriesA1}.3`],
    );
    assert.equal(p2.headers.warning, undefined);
  });

  test("the server maximum caps an absent or larger limit, with the same Warning", async () => {
    const small = await qidoApp(fixture.index, { maxResults: 3 });
    try {
      const none = await get("/instances", {}, small);
      assert.equal(none.json.length, 3);
      assert.equal(WARNING.exec(warningOf(none.headers) ?? "")?.[1], "6");
      const larger = await get("/instances?limit=50", {}, small);
      assert.equal(larger.json.length, 3);
      assert.match(warningOf(larger.headers) ?? "", WARNING);
      const smaller = await get("/instances?limit=2&offset=7", {}, small);
      assert.equal(smaller.json.length, 2);
      assert.equal(smaller.headers.warning, undefined);
    } finally {
      await small.close();
    }
  });

  test("when the rest was not counted, the Warning says so without a number", async () => {
    const saved = SEARCH_TUNING.countBudgetMs;
    SEARCH_TUNING.countBudgetMs = -1;
    try {
      const r = await get("/instances?ImageType=DERIVED&limit=1");
      assert.equal(r.json.length, 1);
      assert.equal(
        warningOf(r.headers),
        '299 pacs.example.org:8042 "The number of results exceeded the maximum supported by the server. Additional results can be requested."',
      );
    } finally {
      SEARCH_TUNING.countBudgetMs = saved;
    }
  });

  test("malformed or repeated limit/offset are 400s", async () => {
    await rejects("/studies?limit=abc", /limit=abc.*unsigned integer/);
    await rejects("/studies?limit=-1", /unsigned integer/);
    await rejects("/studies?offset=1.5", /offset=1\.5/);
    await rejects("/studies?limit=1&limit=2", /limit is given more than once/);
  });
});

describe("400 with a reason a person can act on", () => {
  test("unknown keyword, with a suggestion when only the case is wrong", async () => {
    await rejects("/studies?PatientNam=x", /"PatientNam" is neither a QIDO-RS query parameter .* nor a DICOM keyword/);
    await rejects("/studies?patientname=x", /did you mean "PatientName"/);
    await rejects("/studies?Limit=3", /did you mean "limit"/);
    await rejects("/studies?RequestAttributesSequence.Nope=1", /"Nope" in "RequestAttributesSequence.Nope"/);
    await rejects("/studies?00020010=1", /not a dataset attribute/);
    await rejects("/studies?00080000=1", /group length/);
  });

  test("with unknownParameters: ignore (PS3.18 §8.3), an unknown name is dropped with a Warning; bad values stay 400s", async () => {
    const lenient = await qidoApp(fixture.index, { unknownParameters: "ignore" });
    try {
      const r = await get("/studies?PatientNam=x&foo=bar&PatientID=PID-A", {}, lenient);
      assert.equal(r.status, 200);
      assert.deepEqual(
        r.json.map((m) => m["0020000D"]?.Value?.[0]),
        [UID.studyA],
        "the other parameters still apply",
      );
      const warnings = ([] as unknown[]).concat(r.headers.warning).map(String);
      assert.equal(warnings.length, 2);
      assert.match(warnings[0] ?? "", /^299 pacs\.example\.org:8042 "The query parameter PatientNam is not supported and was ignored/);
      assert.match(warnings[1] ?? "", /foo is not supported/);
      assert.equal((await get("/studies?StudyDate=2021-01", {}, lenient)).status, 400, "a supported parameter with an invalid value");
      assert.equal((await get("/studies?includefield=Nope", {}, lenient)).status, 400);
    } finally {
      await lenient.close();
    }
  });

  test("malformed values", async () => {
    await rejects("/studies?StudyDate=20201301", /StudyDate=20201301.*not a valid DA value.*YYYYMMDD/);
    await rejects("/studies?StudyDate=20200230", /not a valid DA/);
    await rejects("/studies?StudyDate=20201231-20200101", /start of the range is after its end/);
    await rejects("/studies?StudyDate=2020*", /wildcards are not allowed in DA/);
    await rejects("/studies?StudyDate=-", /not a valid range/);
    await rejects("/studies?StudyTime=2500", /not a valid TM/);
    await rejects("/studies?StudyInstanceUID=1.2.3,1.02.3", /"1\.02\.3" is not a valid UID: it has a component with a leading zero/);
    await rejects("/studies?StudyInstanceUID=1.2.*", /wildcards are not allowed/);
    await rejects("/series?SeriesNumber=two", /SeriesNumber=two: a IS value must be a number/);
    await rejects("/studies?PatientID=A%5CB", /add multiplevaluematching=true/);
  });

  test("parameters that are not matching keys", async () => {
    await rejects("/series?RequestAttributesSequence=x", /is a sequence/);
    await rejects("/instances?PixelData=1", /binary values/);
    await rejects("/studies?NumberOfStudyRelatedSeries=2", /made by the server and can only be returned/);
    await rejects("/studies?PatientID.PatientName=x", /PatientID is not a sequence/);
  });

  test("flags take true or false only", async () => {
    await rejects("/studies?fuzzymatching=yes", /fuzzymatching=yes: the value must be true or false/);
    await rejects("/studies?fuzzymatching=TRUE", /must be true or false/);
    await rejects("/studies?multiplevaluematching=1", /must be true or false/);
  });

  test("a repeated attribute (by keyword and tag) is a 400", async () => {
    await rejects("/studies?PatientID=A&PatientID=B", /PatientID is given more than once/);
    await rejects("/studies?PatientID=A&00100020=B", /more than once/);
  });

  test("an unknown level is a 400 in the service", () => {
    assert.throws(
      () => parseQidoQuery("patients", {}, []),
      (err: unknown) => err instanceof QidoError && err.status === 400 && /"patients" is not a search level/.test(err.message),
    );
  });

  test("emptyvaluematching=true is answered with a Warning, not an error", async () => {
    const r = await get("/studies?emptyvaluematching=true");
    assert.equal(r.status, 200);
    assert.match(String(r.headers.warning), /299 .*"The emptyvaluematching parameter is not supported/);
  });
});

describe("media types", () => {
  test("negotiation: DICOM JSON by default, application/json, multipart XML, or nothing", () => {
    assert.deepEqual(negotiateQido(undefined), { kind: "json", contentType: "application/dicom+json" });
    assert.deepEqual(negotiateQido("*/*"), { kind: "json", contentType: "application/dicom+json" });
    assert.deepEqual(negotiateQido("application/*"), { kind: "json", contentType: "application/dicom+json" });
    assert.deepEqual(negotiateQido("application/json"), { kind: "json", contentType: "application/json" });
    assert.deepEqual(negotiateQido('multipart/related; type="application/dicom+xml"'), { kind: "xml" });
    assert.deepEqual(negotiateQido("multipart/related; type=application/dicom+xml, application/dicom+json;q=0.5"), { kind: "xml" });
    assert.deepEqual(negotiateQido("application/dicom+json; charset=utf-8"), { kind: "json", contentType: "application/dicom+json" });
    assert.equal(negotiateQido("application/dicom+xml"), undefined, "XML results come as multipart only");
    assert.equal(negotiateQido('multipart/related; type="application/dicom"'), undefined);
    assert.equal(negotiateQido("image/png"), undefined);
    assert.equal(negotiateQido("application/dicom+json; charset=iso-8859-1"), undefined);
  });

  test("Accept: application/json is answered as application/json", async () => {
    const r = await get("/studies?limit=1", { accept: "application/json" });
    assert.equal(r.headers["content-type"], "application/json");
    assert.equal(r.json.length, 1);
  });

  test("406 with a reason for a media type QIDO cannot produce", async () => {
    for (const accept of ["application/dicom+xml", "image/jpeg"]) {
      const r = await get("/studies", { accept });
      assert.equal(r.status, 406, accept);
      assert.match(
        (JSON.parse(r.body) as { error: string }).error,
        /application\/dicom\+json.*multipart\/related; type="application\/dicom\+xml"/,
      );
    }
    const charset = await get("/studies?charset=iso-8859-1");
    assert.equal(charset.status, 406);
  });

  test("multipart/related XML: one Native DICOM Model document per match, well-formed", async () => {
    const r = await get(`/studies/${UID.studyA}/series`, { accept: 'multipart/related; type="application/dicom+xml"' });
    assert.equal(r.status, 200);
    const type = String(r.headers["content-type"]);
    const boundary = /boundary=([^;]+)/.exec(type)?.[1];
    assert.match(type, /^multipart\/related; type="application\/dicom\+xml"; boundary=/);
    assert.ok(boundary);
    const body = r.rawPayload.toString("utf8");
    const parts = body.split(`--${boundary}`).slice(1, -1);
    assert.equal(parts.length, 2);
    assert.ok(body.endsWith(`--${boundary}--\r\n`));
    const docs = parts.map((p) => {
      const [head, ...rest] = p.split("\r\n\r\n");
      assert.match(head ?? "", /Content-Type: application\/dicom\+xml/);
      return rest.join("\r\n\r\n").replace(/\r\n$/, "");
    });
    for (const doc of docs) {
      assert.match(doc, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<NativeDicomModel /);
      assert.match(
        doc,
        /<DicomAttribute tag="00081190" vr="UR" keyword="RetrieveURL">\s*<Value number="1">http:\/\/pacs\.example\.org:8042\/dicomweb\/studies\//,
      );
    }
    assert.match(docs[0] ?? "", /tag="0020000E"[^>]*>\s*<Value number="1">1\.2\.826\.0\.1\.3680043\.2\.1\.1\.1</);
    assert.match(docs[1] ?? "", /tag="0020000E"[^>]*>\s*<Value number="1">1\.2\.826\.0\.1\.3680043\.2\.1\.1\.2</);
    // Well-formed by a conforming XML parser (expat), when Python is there.
    if (spawnSync(PYTHON, ["-c", "pass"]).status === 0) {
      const check = spawnSync(
        PYTHON,
        ["-c", "import sys, json, xml.etree.ElementTree as ET\nfor d in json.load(sys.stdin): ET.fromstring(d.encode())"],
        {
          input: JSON.stringify(docs),
        },
      );
      assert.equal(check.status, 0, check.stderr.toString());
    }
  });

  test("query values are percent-decoded per RFC 3986: + is a plus", async () => {
    const r = await get(`/studies?accept=application/dicom+json&limit=1`);
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/dicom+json");
    const tz = await get(`/studies?TimezoneOffsetFromUTC=+0100`);
    assert.deepEqual(
      tz.json.map((m) => m["0020000D"]?.Value?.[0]),
      [UID.studyA],
    );
    const bad = await get("/studies?PatientID=%E0%A4%A");
    assert.equal(bad.status, 400);
    assert.match(bad.body, /percent-encoding/);
  });

  test("the accept query parameter may be repeated", async () => {
    const r = await get(`/studies?accept=image/png&accept=application/dicom%2Bjson&limit=1`);
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/dicom+json");
  });

  test("the accept query parameter overrides the Accept header", async () => {
    const r = await get(`/studies?accept=${encodeURIComponent('multipart/related; type="application/dicom+xml"')}&limit=1`, {
      accept: "application/json",
    });
    assert.equal(r.status, 200);
    assert.match(String(r.headers["content-type"]), /^multipart\/related/);
  });

  test("no match in XML is 204 (a multipart body needs a part); in JSON 200 []", async () => {
    const xml = await get("/studies?PatientID=nobody", { accept: 'multipart/related; type="application/dicom+xml"' });
    assert.equal(xml.status, 204);
    assert.equal(xml.body, "");
    const json = await get("/studies?PatientID=nobody");
    assert.equal(json.status, 200);
    assert.equal(json.body, "[]");
  });

  test("HEAD answers like GET without a body", async () => {
    const r = await app.inject({ method: "HEAD", url: "/dicomweb/studies?limit=1" });
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers["content-type"], "application/dicom+json");
    assert.equal(r.body, "");
    assert.ok(r.headers.warning);
  });

  test("ETag and If-None-Match → 304", async () => {
    const r = await get("/studies");
    const etag = String(r.headers.etag);
    assert.match(etag, /^W\/"[A-Za-z0-9_-]+"$/);
    const again = await get("/studies", { "if-none-match": etag });
    assert.equal(again.status, 304);
    const other = await get("/studies?limit=1", { "if-none-match": etag });
    assert.equal(other.status, 200, "another result has another ETag");
  });
});

describe("results follow changes", () => {
  test("counts and ModalitiesInStudy after a new series is stored", async () => {
    const f = openFixture();
    try {
      const a = await qidoApp(f.index);
      const before = await ok(`/studies?StudyInstanceUID=${UID.studyD}`, a);
      assert.equal(first(before, "00201208"), 1);
      const { recordOf, instanceJson, INSTANCES } = await import("./qido-fixtures.js");
      const d = INSTANCES.find((s) => s.study.uid === UID.studyD);
      assert.ok(d);
      const json = instanceJson({
        ...d,
        seriesUid: `${UID.seriesD1}9`,
        sopUid: `${UID.seriesD1}9.1`,
        series: { ...d.series, "00080060": { vr: "CS", Value: ["DX"] } },
      });
      assert.equal(f.index.commitInstance(recordOf(json), "reject").status, "stored");
      const afterwards = await ok(`/studies?StudyInstanceUID=${UID.studyD}`, a);
      assert.equal(first(afterwards, "00201208"), 2);
      assert.equal(first(afterwards, "00201206"), 2);
      assert.deepEqual(afterwards[0]?.["00080061"]?.Value, ["DX", "US"]);
      await a.close();
    } finally {
      f.close();
    }
  });
});
