/**
 * The search model (query.ts) and the SQLite search: matching rules as functions, query plans
 * that use the indexes, exact paging when rows are matched in JavaScript, the count budget,
 * the Request Attributes Sequence key table kept by triggers, and what is never returned.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DicomJsonDataset } from "../../src/dicom/index.js";
import { parseQidoQuery } from "../../src/dicomweb/qido.js";
import {
  type Condition,
  type Matcher,
  matchAttribute,
  matchValue,
  normalizeDateLike,
  privateCreatorOf,
  type SearchQuery,
  tagLevel,
  wildcardRegex,
  withoutBulkData,
} from "../../src/store/query.js";
import type { SqliteIndex } from "../../src/store/sqlite-index.js";
import { registeredConditionCount, SEARCH_TUNING, searchSql } from "../../src/store/sqlite-search.js";
import { a, type Fixture, instanceJson, INSTANCES, openFixture, pn, recordOf, UID } from "../dicomweb/qido-fixtures.js";

const single = (value: string): Matcher => ({ kind: "single", value });
const wild = (pattern: string): Matcher => ({ kind: "wildcard", pattern });

describe("matching rules (query.ts)", () => {
  test("wildcards: * any run, ? one character (a code point), everything else literal", () => {
    assert.ok(wildcardRegex("A*", false).test("ABC"));
    assert.ok(!wildcardRegex("A*", false).test("abc"));
    assert.ok(wildcardRegex("A*", true).test("abc"));
    assert.ok(wildcardRegex("a?c", false).test("a😀c"), "? is one code point");
    for (const literal of ["a.c", "a+c", "(a)", "[a]", "a|c", "a$", "^a", "a\\c", "a{2}", "a-c", "a/c"]) {
      assert.ok(wildcardRegex(literal, false).test(literal), literal);
      assert.ok(!wildcardRegex(literal, false).test(`${literal}x`), `${literal} is anchored`);
    }
    assert.ok(!wildcardRegex("a.c", false).test("abc"), ". is literal");
  });

  test("date/time normalization fills to the precision written", () => {
    assert.equal(normalizeDateLike("TM", "10"), "100000.000000");
    assert.equal(normalizeDateLike("TM", "10", true), "105959.999999");
    assert.equal(normalizeDateLike("TM", "1012:30".replace(":", "")), "101230.000000");
    assert.equal(normalizeDateLike("TM", "10:12:30"), "101230.000000", "ACR-NEMA colons");
    assert.equal(normalizeDateLike("DT", "2020"), "20200101000000.000000");
    assert.equal(normalizeDateLike("DT", "2020", true), "20201231235959.999999");
    assert.equal(normalizeDateLike("DT", "20200315101700.5+0100"), "20200315101700.500000", "offset dropped");
    assert.equal(normalizeDateLike("DA", "2020.03.15"), "20200315", "legacy dots");
  });

  test("PN: groups, case, trailing components, fuzzy word prefixes", () => {
    const name = { Alphabetic: "Yamada^Tarou", Ideographic: "山田^太郎", Phonetic: "やまだ^たろう" };
    assert.ok(matchValue(name, "PN", single("YAMADA^TAROU"), false));
    assert.ok(matchValue(name, "PN", single("山田^太郎"), false), "a one-group query matches any group");
    assert.ok(matchValue(name, "PN", single("=山田^太郎"), false));
    assert.ok(!matchValue(name, "PN", single("山田^太郎="), false), "first group given: must match the alphabetic one");
    assert.ok(matchValue(name, "PN", single("Yamada^Tarou==やまだ^たろう"), false));
    assert.ok(!matchValue(name, "PN", single("Yamada^Tarou==やまだ^じろう"), false));
    assert.ok(matchValue({ Alphabetic: "Doe^John^^^" }, "PN", single("doe^john"), false));
    assert.ok(!matchValue({ Alphabetic: "Zoë" }, "PN", single("Zoe"), false), "accents count");
    assert.ok(matchValue({ Alphabetic: "Zoë" }, "PN", single("ZOE"), true), "fuzzy folds accents");
    assert.ok(matchValue({ Alphabetic: "Doe^John" }, "PN", single("jo d"), true), "word prefixes in any order");
    assert.ok(!matchValue({ Alphabetic: "Doe^John" }, "PN", single("oh"), true));
    assert.ok(matchValue({ Alphabetic: "Doe^John" }, "PN", wild("j?hn"), true), "wildcards inside a fuzzy word");
    assert.ok(matchValue("Doe^John=ドウ", "PN", single("ドウ"), false), "the column form A=I=P");
    assert.ok(!matchValue({}, "PN", wild("*"), false), "an empty name is not a value");
  });

  test("multi-valued attributes, numbers, ranges, sequences, absent values", () => {
    const cond = (tag: string, vr: string | undefined, matcher: Matcher): Condition => ({ tag, name: tag, vr, level: "instance", matcher });
    assert.ok(matchAttribute(a("CS", "ORIGINAL", "PRIMARY"), cond("00080008", "CS", single("PRIMARY")), false));
    assert.ok(matchAttribute(a("DS", 2.5), cond("00180050", "DS", { kind: "number", value: 2.5 }), false));
    assert.ok(matchAttribute(a("IS", "7"), cond("00200013", "IS", { kind: "number", value: 7 }), false), "numbers written as strings");
    assert.ok(matchAttribute(a("DA", "20200315"), cond("00080020", "DA", { kind: "range", low: "20200101", high: "20201231" }), false));
    assert.ok(!matchAttribute(a("DA", "20210315"), cond("00080020", "DA", { kind: "range", high: "20201231" }), false));
    assert.ok(!matchAttribute(undefined, cond("00080020", "DA", { kind: "range", low: "2020" }), false), "absent: no match");
    assert.ok(!matchAttribute(a("LO"), cond("00081030", "LO", wild("*x*")), false), "empty: no match");
    assert.ok(matchAttribute(undefined, cond("00081030", "LO", { kind: "universal" }), false), "universal matches absent");
    const seq: DicomJsonDataset["x"] = {
      vr: "SQ",
      Value: [
        { "00400009": a("SH", "A"), "00401001": a("SH", "1") },
        { "00400009": a("SH", "B"), "00401001": a("SH", "2") },
      ],
    };
    const items = (sps: string, rp: string): Matcher => ({
      kind: "sequence",
      items: [cond("00400009", "SH", single(sps)), cond("00401001", "SH", single(rp))],
    });
    assert.ok(matchAttribute(seq, cond("00400275", "SQ", items("B", "2")), false));
    assert.ok(!matchAttribute(seq, cond("00400275", "SQ", items("A", "2")), false), "keys of different items");
    assert.ok(matchAttribute(a("LO", "x"), cond("00091010", undefined, single("x")), false), "private: the stored VR");
  });

  test("levels of attributes and private creators", () => {
    assert.equal(tagLevel("00100010"), "study");
    assert.equal(tagLevel("00101010"), "study", "PatientAge (Patient Study module)");
    assert.equal(tagLevel("00081030"), "study");
    assert.equal(tagLevel("00080060"), "series");
    assert.equal(tagLevel("00080080"), "series", "InstitutionName (General Equipment)");
    assert.equal(tagLevel("00400275"), "series");
    assert.equal(tagLevel("00080018"), "instance");
    assert.equal(tagLevel("00280010"), "instance");
    assert.equal(tagLevel("00080201"), undefined, "Timezone Offset From UTC: any level");
    assert.equal(tagLevel("00091010"), undefined, "private");
    assert.equal(privateCreatorOf("00091010"), "00090010");
    assert.equal(privateCreatorOf("0029A0FF"), "002900A0");
    assert.equal(privateCreatorOf("00090010"), undefined, "a creator has no creator");
    assert.equal(privateCreatorOf("00100010"), undefined);
  });

  test("withoutBulkData drops BulkDataURIs at any depth and keeps the rest", () => {
    const ds: DicomJsonDataset = {
      "00020010": a("UI", "1.2.840.10008.1.2.1"),
      "00100010": pn("A"),
      "7FE00010": { vr: "OW", BulkDataURI: "@@VOXELGATE_BASE@@/x" },
      "00081140": { vr: "SQ", Value: [{ "00281201": { vr: "OW", BulkDataURI: "@@VOXELGATE_BASE@@/y" }, "00080018": a("UI", "1.2") }] },
      "00091010": { vr: "OB", InlineBinary: "AAE=" },
    };
    assert.deepEqual(withoutBulkData(ds), {
      "00100010": pn("A"),
      "00081140": { vr: "SQ", Value: [{ "00080018": a("UI", "1.2") }] },
      "00091010": { vr: "OB", InlineBinary: "AAE=" },
    });
  });
});

let fixture: Fixture;
let index: SqliteIndex;

before(() => {
  fixture = openFixture();
  index = fixture.index;
});
after(() => fixture.close());

const query = (level: string, params: Array<[string, string]>, scope: { studyUid?: string; seriesUid?: string } = {}): SearchQuery =>
  parseQidoQuery(level, scope, params).query;

function plan(q: SearchQuery, which: "sql" | "countSql" = "sql"): string[] {
  index.search(q); // registers the SQL functions on the connection
  const s = searchSql(q);
  try {
    const extra = which === "sql" ? [10, 0] : [];
    return (index.db.prepare(`EXPLAIN QUERY PLAN ${s[which]}`).all(...s.params, ...extra) as Array<{ detail: string }>).map(
      (r) => r.detail,
    );
  } finally {
    s.release();
  }
}

const uses = (lines: string[], pattern: RegExp): boolean => lines.some((l) => pattern.test(l));

describe("query plans use the indexes", () => {
  const cases: Array<[string, string, Array<[string, string]>, { studyUid?: string; seriesUid?: string }, RegExp]> = [
    ["all studies, newest first, without sorting", "study", [], {}, /^SCAN st USING COVERING INDEX studies_date$/],
    ["PatientID", "study", [["PatientID", "X"]], {}, /SEARCH st USING INDEX studies_patient_id \(patient_id=\?\)/],
    ["StudyDate range", "study", [["StudyDate", "20200101-20201231"]], {}, /studies_date \(study_date>\? AND study_date<\?\)/],
    [
      "AccessionNumber prefix wildcard (GLOB)",
      "study",
      [["AccessionNumber", "ACC*"]],
      {},
      /studies_accession \(accession_number>\? AND accession_number<\?\)/,
    ],
    ["StudyInstanceUID list", "study", [["StudyInstanceUID", "1.2.3,1.2.4"]], {}, /sqlite_autoindex_studies_1 \(study_uid=\?\)/],
    [
      "ModalitiesInStudy per study, covering",
      "study",
      [["ModalitiesInStudy", "CT"]],
      {},
      /SEARCH x USING COVERING INDEX series_study_modality \(study_pk=\?\)/,
    ],
    ["series of a study", "series", [], { studyUid: "1.2.3" }, /SEARCH se USING INDEX series_study(_modality)? \(study_pk=\?\)/],
    [
      "instances of a series",
      "instance",
      [],
      { studyUid: "1.2.3", seriesUid: "1.2.3.4" },
      /SEARCH i USING (COVERING )?INDEX instances_series \(series_pk=\?\)/,
    ],
    [
      "instances of a study, through its series",
      "instance",
      [],
      { studyUid: "1.2.3" },
      /SEARCH i USING (COVERING )?INDEX instances_series \(series_pk=\?\)/,
    ],
    ["SOPInstanceUID", "instance", [["SOPInstanceUID", "1.2.3"]], {}, /sqlite_autoindex_instances_1 \(sop_uid=\?\)/],
    ["SeriesInstanceUID", "series", [["SeriesInstanceUID", "1.2.3"]], {}, /sqlite_autoindex_series_1 \(series_uid=\?\)/],
    ["all instances in study order", "instance", [], {}, /^SCAN st USING COVERING INDEX studies_date$/],
    [
      "ScheduledProcedureStepID",
      "series",
      [["RequestAttributesSequence.ScheduledProcedureStepID", "SPS-1"]],
      {},
      /series_request_keys_sps \(scheduled_procedure_step_id=\?\)/,
    ],
    [
      "RequestedProcedureID under studies",
      "study",
      [["RequestAttributesSequence.RequestedProcedureID", "RP-1"]],
      {},
      /series_request_keys_rp \(requested_procedure_id=\?\)/,
    ],
  ];
  for (const [name, level, params, scope, expected] of cases) {
    test(name, () => {
      const lines = plan(query(level, params, scope));
      assert.ok(uses(lines, expected), `${expected} not in plan:\n${lines.join("\n")}`);
    });
  }

  test("no full sort of a whole table for an unscoped page", () => {
    for (const level of ["series", "instance"]) {
      const lines = plan(query(level, []));
      assert.ok(!lines.includes("USE TEMP B-TREE FOR ORDER BY"), `${level}: ${lines.join(" | ")}`);
    }
  });

  test("counting joins only what the conditions use", () => {
    const instances = plan(query("instance", []), "countSql");
    assert.equal(instances.length, 1, instances.join(" | "));
    assert.match(instances[0] ?? "", /^SCAN (i|instances) USING COVERING INDEX/);
    const series = plan(query("series", [["Modality", "CT"]]), "countSql");
    assert.ok(
      series.every((l) => !/\bst\b/.test(l)),
      series.join(" | "),
    );
  });
});

describe("paging is exact after matching in JavaScript", () => {
  // 3 studies × 2 series × 10 instances; ImageType alternates, so half the instances match.
  const records = (): ReturnType<typeof recordOf>[] => {
    const out = [];
    for (let st = 1; st <= 3; st++) {
      for (let se = 1; se <= 2; se++) {
        for (let n = 1; n <= 10; n++) {
          const json = instanceJson({
            ...(INSTANCES[0] as (typeof INSTANCES)[number]),
            study: { uid: `2.25.9.${st}`, patient: { "00100020": a("LO", `P${st}`) }, study: { "00080020": a("DA", `2020010${st}`) } },
            seriesUid: `2.25.9.${st}.${se}`,
            series: { "00080060": a("CS", "CT"), "00200011": a("IS", se), "00180015": a("CS", n % 2 ? "HEAD" : "NECK") },
            sopUid: `2.25.9.${st}.${se}.${n}`,
            instance: { "00200013": a("IS", n), "00080008": a("CS", "ORIGINAL", n % 2 ? "ODD" : "EVEN") },
          });
          out.push(recordOf(json));
        }
      }
    }
    return out;
  };
  let f: Fixture;
  // These tests are about exact counts, not the time budget (tested below): a loaded CI machine
  // can take longer than the default 10 ms for the count, which then reports "more exist".
  let savedBudget = 0;
  before(() => {
    f = openFixture(records());
    savedBudget = SEARCH_TUNING.countBudgetMs;
    SEARCH_TUNING.countBudgetMs = 60_000;
  });
  after(() => {
    SEARCH_TUNING.countBudgetMs = savedBudget;
    f.close();
  });

  const sops = (matches: DicomJsonDataset[]): string[] => matches.map((m) => String(m["00080018"]?.Value?.[0]));

  test("every page of 7, in order, adds up to the whole; remaining counts what is left", () => {
    const all = f.index.search({ ...query("instance", [["ImageType", "EVEN"]]), limit: 1000 });
    assert.equal(all.matches.length, 30);
    assert.equal(all.truncated, false);
    const seen: string[] = [];
    for (let offset = 0; offset < 35; offset += 7) {
      const page = f.index.search({ ...query("instance", [["ImageType", "EVEN"]]), limit: 7, offset });
      assert.deepEqual(sops(page.matches), sops(all.matches).slice(offset, offset + 7), `offset ${offset}`);
      assert.equal(page.remaining, Math.max(0, 30 - offset - 7), `remaining at offset ${offset}`);
      assert.equal(page.truncated, offset + 7 < 30);
      seen.push(...sops(page.matches));
    }
    assert.deepEqual(seen, sops(all.matches));
    assert.ok(
      seen.every((s) => Number(s.split(".").at(-1)) % 2 === 0),
      "only the EVEN instances",
    );
  });

  test("study order: newest StudyDate first; within it series then instance numbers", () => {
    const all = f.index.search({ ...query("instance", [["ImageType", "EVEN"]]), limit: 1000 });
    assert.deepEqual(sops(all.matches).slice(0, 6), [
      "2.25.9.3.1.2",
      "2.25.9.3.1.4",
      "2.25.9.3.1.6",
      "2.25.9.3.1.8",
      "2.25.9.3.1.10",
      "2.25.9.3.2.2",
    ]);
  });

  test("relational matching on series JSON, paged", () => {
    const p = f.index.search({ ...query("series", [["BodyPartExamined", "NECK"]]), limit: 2 });
    // Each series' attributes are those of its latest instance (n = 10: NECK).
    assert.equal(p.matches.length, 2);
    assert.equal(p.remaining, 4);
  });

  test("when the count budget is spent the result says more exist without a number", () => {
    const saved = SEARCH_TUNING.countBudgetMs;
    SEARCH_TUNING.countBudgetMs = -1;
    try {
      const js = f.index.search({ ...query("instance", [["ImageType", "EVEN"]]), limit: 5 });
      assert.equal(js.matches.length, 5);
      assert.equal(js.truncated, true);
      assert.equal(js.remaining, undefined);
      const sqlReadingRows = f.index.search({ ...query("series", [["SeriesNumber", "1"]]), limit: 1 });
      assert.equal(sqlReadingRows.truncated, true);
      assert.equal(sqlReadingRows.remaining, undefined);
      const indexOnly = f.index.search({ ...query("instance", []), limit: 5 });
      assert.equal(indexOnly.remaining, 55, "an index-only count is always exact");
    } finally {
      SEARCH_TUNING.countBudgetMs = saved;
    }
  });

  test("no condition stays registered after a search, nor after one that failed", () => {
    f.index.search(query("instance", [["ImageType", "EVEN"]]));
    assert.equal(registeredConditionCount(), 0);
    // A matching function that fails (as a corrupt JSON document would make it): the error reaches the caller.
    f.index.db.function("vg_json", (_text: unknown, _id: unknown) => {
      throw new Error("boom");
    });
    try {
      assert.throws(() => f.index.search(query("series", [["BodyPartExamined", "NECK"]])), /boom/);
      assert.equal(registeredConditionCount(), 0);
    } finally {
      f.close();
      f = openFixture(records());
    }
  });
});

describe("series_request_keys follows the series", () => {
  test("overwrite changes the keys, delete removes them", () => {
    const f = openFixture();
    try {
      const q = (sps: string): string[] =>
        f.index
          .search(query("series", [["RequestAttributesSequence.ScheduledProcedureStepID", sps]]))
          .matches.map((m) => String(m["0020000E"]?.Value?.[0]));
      assert.deepEqual(q("SPS-2"), [UID.seriesA2]);
      const spec = INSTANCES.find((s) => s.seriesUid === UID.seriesA2);
      assert.ok(spec);
      const changed = instanceJson({
        ...spec,
        series: { ...spec.series, "00400275": { vr: "SQ", Value: [{ "00400009": a("SH", "SPS-7") }] } },
      });
      assert.equal(f.index.commitInstance(recordOf(changed), "overwrite").status, "overwritten");
      assert.deepEqual(q("SPS-2"), []);
      assert.deepEqual(q("SPS-7"), [UID.seriesA2]);
      const { "00400275": _, ...withoutSequence } = spec.series;
      assert.equal(f.index.commitInstance(recordOf(instanceJson({ ...spec, series: withoutSequence })), "overwrite").status, "overwritten");
      assert.deepEqual(q("SPS-7"), [], "the sequence is gone with the new version");
      assert.equal(f.index.commitInstance(recordOf(changed), "overwrite").status, "overwritten");
      assert.deepEqual(q("SPS-7"), [UID.seriesA2]);
      // A new instance in an existing series updates its attributes (the UPDATE trigger).
      const a1 = INSTANCES.find((x) => x.seriesUid === UID.seriesA1);
      assert.ok(a1);
      assert.deepEqual(q("SPS-1"), [UID.seriesA1]);
      const newer = instanceJson({
        ...a1,
        sopUid: `${UID.seriesA1}.99`,
        series: { ...a1.series, "00400275": { vr: "SQ", Value: [{ "00400009": a("SH", "SPS-NEW") }] } },
      });
      assert.equal(f.index.commitInstance(recordOf(newer), "reject").status, "stored");
      assert.deepEqual(q("SPS-1"), []);
      assert.deepEqual(q("SPS-NEW"), [UID.seriesA1]);
      f.index.delete({ studyUid: UID.studyA, seriesUid: UID.seriesA2 });
      assert.deepEqual(q("SPS-7"), []);
      assert.equal(
        (
          f.index.db.prepare("SELECT count(*) AS n FROM series_request_keys WHERE scheduled_procedure_step_id = 'SPS-7'").get() as {
            n: number;
          }
        ).n,
        0,
      );
    } finally {
      f.close();
    }
  });
});
