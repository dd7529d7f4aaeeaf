/**
 * QIDO-RS test fixtures: hand-built DICOM JSON instances committed into a real SqliteIndex in a
 * temporary folder, and a Fastify app serving qidoRoutes over it. Each value is chosen so that a
 * matching rule can be seen to hold or fail: accents, a Japanese name in three component groups,
 * GLOB/LIKE special characters, upper/lower case, dates at range edges, sequences, private tags,
 * BulkDataURIs in sequences (never to be returned).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { constants as zlibConstants, deflateRawSync } from "node:zlib";
import Fastify, { type FastifyInstance } from "fastify";
import type { DicomJsonAttribute, DicomJsonDataset, JsonValue } from "../../src/dicom/index.js";
import { type QidoRouteOptions, qidoRoutes } from "../../src/http/qido-routes.js";
import type { Archive } from "../../src/store/archive.js";
import { BASE_URL_TOKEN } from "../../src/store/archive.js";
import { SqliteIndex } from "../../src/store/sqlite-index.js";
import type { InstanceRecord } from "../../src/store/types.js";

export const a = (vr: DicomJsonAttribute["vr"], ...values: JsonValue[]): DicomJsonAttribute =>
  values.length > 0 ? { vr, Value: values } : { vr };
export const pn = (alphabetic: string, ideographic?: string, phonetic?: string): DicomJsonAttribute => {
  const v: Record<string, string> = { Alphabetic: alphabetic };
  if (ideographic !== undefined) v.Ideographic = ideographic;
  if (phonetic !== undefined) v.Phonetic = phonetic;
  return { vr: "PN", Value: [v] };
};

export const CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2";
export const MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4";
export const ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22";
export const CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1";

export const UID = {
  studyA: "1.2.826.0.1.3680043.2.1.1",
  seriesA1: "1.2.826.0.1.3680043.2.1.1.1",
  seriesA2: "1.2.826.0.1.3680043.2.1.1.2",
  studyB: "1.2.826.0.1.3680043.2.1.2",
  seriesB1: "1.2.826.0.1.3680043.2.1.2.1",
  seriesB2: "1.2.826.0.1.3680043.2.1.2.2",
  studyC: "1.2.826.0.1.3680043.2.1.3",
  seriesC1: "1.2.826.0.1.3680043.2.1.3.1",
  studyD: "1.2.826.0.1.3680043.2.1.4",
  seriesD1: "1.2.826.0.1.3680043.2.1.4.1",
};

const sop = (series: string, n: number): string => `${series}.${n}`;

interface StudyInfo {
  uid: string;
  patient: DicomJsonDataset;
  study: DicomJsonDataset;
}

const STUDY_A: StudyInfo = {
  uid: UID.studyA,
  patient: {
    "00100010": pn("Müller^Zoë"),
    "00100020": a("LO", "PID-A"),
    "00100030": a("DA", "19700101"),
    "00100040": a("CS", "F"),
  },
  study: {
    "00080020": a("DA", "20200315"),
    "00080030": a("TM", "101500"),
    "00080050": a("SH", "ACC-1"),
    "00080090": pn("Smith^Jane"),
    "00081030": a("LO", "Chest CT"),
    "00200010": a("SH", "S1"),
    "00080201": a("SH", "+0100"),
  },
};

const STUDY_B: StudyInfo = {
  uid: UID.studyB,
  patient: {
    "00100010": pn("Yamada^Tarou", "山田^太郎", "やまだ^たろう"),
    "00100020": a("LO", "PID-B"),
    "00100030": a("DA", "19800229"),
    "00100040": a("CS", "M"),
  },
  study: {
    "00080020": a("DA", "20210620"),
    "00080030": a("TM", "0830"),
    "00080050": a("SH", "acc-2"),
    "00080090": pn("doe^john"),
    "00081030": a("LO", "MR Brain"),
    "00200010": a("SH", "S2"),
  },
};

const STUDY_C: StudyInfo = {
  uid: UID.studyC,
  patient: {
    "00100010": pn("O'Brien^Seán"),
    "00100020": a("LO", "PID-C"),
    "00100040": a("CS", "O"),
  },
  study: {
    "00080050": a("SH", "AC_3%[x]"),
    "00081030": a("LO", "Knee [left]"),
    "00200010": a("SH", "S3"),
  },
};

const STUDY_D: StudyInfo = {
  uid: UID.studyD,
  patient: {
    "00100010": pn("Doe^John"),
    "00100020": a("LO", "PID-D"),
    "00100030": a("DA", "19551105"),
    "00100040": a("CS", "M"),
  },
  study: {
    "00080020": a("DA", "20201231"),
    "00080030": a("TM", "235959.5"),
    "00080050": a("SH", "ACC-4"),
    "00081030": a("LO", "Abdomen US"),
    "00200010": a("SH", "S4"),
  },
};

interface InstanceSpec {
  study: StudyInfo;
  seriesUid: string;
  series: DicomJsonDataset;
  sopUid: string;
  sopClass: string;
  instance: DicomJsonDataset;
}

const ct = (n: number, extra: DicomJsonDataset = {}): InstanceSpec => ({
  study: STUDY_A,
  seriesUid: UID.seriesA1,
  series: {
    "00080060": a("CS", "CT"),
    "00200011": a("IS", 1),
    "0008103E": a("LO", "Axial 1.25mm"),
    "00180015": a("CS", "CHEST"),
    "00080070": a("LO", "ACME Medical"),
    "00400244": a("DA", "20200315"),
    "00400245": a("TM", "101600"),
    "00400275": {
      vr: "SQ",
      Value: [
        { "00400009": a("SH", "SPS-1"), "00401001": a("SH", "RP-1") },
        { "00400009": a("SH", "SPS-9"), "00401001": a("SH", "RP-9") },
      ],
    },
  },
  sopUid: sop(UID.seriesA1, n),
  sopClass: CT_IMAGE,
  instance: {
    "00200013": a("IS", n),
    "00280010": a("US", 512),
    "00280011": a("US", 512),
    "00280100": a("US", 16),
    "00080008": n === 1 ? a("CS", "ORIGINAL", "PRIMARY", "AXIAL") : a("CS", "DERIVED", "SECONDARY"),
    "00180050": a("DS", n === 1 ? 1.25 : 2.5),
    "7FE00010": {
      vr: "OW",
      BulkDataURI: `${BASE_URL_TOKEN}/studies/${UID.studyA}/series/${UID.seriesA1}/instances/${sop(UID.seriesA1, n)}/bulkdata/7FE00010`,
    },
    ...extra,
  },
});

export const INSTANCES: InstanceSpec[] = [
  ct(1, { "0008002A": a("DT", "20200315101700.123") }),
  ct(2),
  ct(3),
  {
    study: STUDY_A,
    seriesUid: UID.seriesA2,
    series: {
      "00080060": a("CS", "SR"),
      "00200011": a("IS", 2),
      "0008103E": a("LO", "Report"),
      "00400275": { vr: "SQ", Value: [{ "00400009": a("SH", "SPS-2"), "00401001": a("SH", "RP-1") }] },
    },
    sopUid: sop(UID.seriesA2, 1),
    sopClass: ENHANCED_SR,
    instance: { "00200013": a("IS", 1), "0040A730": { vr: "SQ", Value: [{ "0040A160": a("UT", "No acute findings") }] } },
  },
  {
    study: STUDY_B,
    seriesUid: UID.seriesB1,
    series: { "00080060": a("CS", "MR"), "00200011": a("IS", 1), "0008103E": a("LO", "T1 sag"), "00180015": a("CS", "HEAD") },
    sopUid: sop(UID.seriesB1, 1),
    sopClass: MR_IMAGE,
    instance: {
      "00200013": a("IS", 1),
      "00280010": a("US", 256),
      "00280011": a("US", 256),
      "00280100": a("US", 16),
      "00280008": a("IS", 10),
      "00090010": a("LO", "ACME 1.0"),
      "00091010": a("LO", "secret sauce"),
    },
  },
  {
    study: STUDY_B,
    seriesUid: UID.seriesB1,
    series: { "00080060": a("CS", "MR"), "00200011": a("IS", 1), "0008103E": a("LO", "T1 sag"), "00180015": a("CS", "HEAD") },
    sopUid: sop(UID.seriesB1, 2),
    sopClass: MR_IMAGE,
    instance: { "00200013": a("IS", 2), "00280010": a("US", 256), "00280011": a("US", 256), "00280100": a("US", 16) },
  },
  {
    study: STUDY_B,
    seriesUid: UID.seriesB2,
    series: { "00080060": a("CS", "PR"), "0008103E": a("LO", "annotations") },
    sopUid: sop(UID.seriesB2, 1),
    sopClass: "1.2.840.10008.5.1.4.1.1.11.1",
    instance: {},
  },
  {
    study: STUDY_C,
    seriesUid: UID.seriesC1,
    series: { "00080060": a("CS", "CR"), "00200011": a("IS", 1), "0008103E": a("LO", "knee AP") },
    sopUid: sop(UID.seriesC1, 1),
    sopClass: CR_IMAGE,
    instance: {
      "00200013": a("IS", 1),
      "00280010": a("US", 2048),
      "00280011": a("US", 1024),
      "00280100": a("US", 16),
      "00540016": {
        vr: "SQ",
        Value: [{ "00181074": a("DS", 100), "00281201": { vr: "OW", BulkDataURI: `${BASE_URL_TOKEN}/studies/${UID.studyC}/bulkdata/x` } }],
      },
    },
  },
  {
    study: STUDY_D,
    seriesUid: UID.seriesD1,
    series: { "00080060": a("CS", "US"), "00200011": a("IS", 3), "0008103E": a("LO", "Liver") },
    sopUid: sop(UID.seriesD1, 1),
    sopClass: "1.2.840.10008.5.1.4.1.1.6.1",
    instance: { "00200013": a("IS", 1) },
  },
];

export function instanceJson(spec: InstanceSpec): DicomJsonDataset {
  const ds: DicomJsonDataset = {
    "00080005": a("CS", "ISO_IR 100"),
    "00080016": a("UI", spec.sopClass),
    "00080018": a("UI", spec.sopUid),
    ...spec.study.patient,
    ...spec.study.study,
    ...spec.series,
    ...spec.instance,
    "0020000D": a("UI", spec.study.uid),
    "0020000E": a("UI", spec.seriesUid),
  };
  return Object.fromEntries(Object.entries(ds).sort(([x], [y]) => x.localeCompare(y)));
}

export function recordOf(json: DicomJsonDataset): InstanceRecord {
  const text = Buffer.from(JSON.stringify(json));
  const uid = (tag: string): string => String(json[tag]?.Value?.[0] ?? "");
  return {
    studyUid: uid("0020000D"),
    seriesUid: uid("0020000E"),
    sopUid: uid("00080018"),
    sopClassUid: uid("00080016"),
    transferSyntaxUid: "1.2.840.10008.1.2.1",
    blobKey: `${uid("00080018")}.dcm`,
    fileSize: 1000,
    sha256: randomBytes(32).toString("hex"),
    metadata: json,
    // Level 1: fast for the 100,000-instance fixtures; inflating does not care.
    metadataChunk: deflateRawSync(text, { flush: zlibConstants.Z_FULL_FLUSH, level: 1 }),
    metadataLength: text.length,
    metadataCrc32: 0,
    frames: [],
    bulk: [],
    rangesInFile: true,
  };
}

export interface Fixture {
  dir: string;
  index: SqliteIndex;
  close(): void;
}

/** A fresh index in a temp folder holding INSTANCES (or the records given). */
export function openFixture(records: InstanceRecord[] = INSTANCES.map((s) => recordOf(instanceJson(s)))): Fixture {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-qido-"));
  const index = new SqliteIndex(join(dir, "index.sqlite"));
  for (const r of records) {
    const outcome = index.commitInstance(r, "reject");
    if (outcome.status !== "stored") throw new Error(`fixture instance not stored: ${JSON.stringify(outcome)}`);
  }
  return {
    dir,
    index,
    close: () => {
      index.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const BASE = "http://pacs.example.org:8042/dicomweb";

/** A Fastify app with only the QIDO routes, over the index. */
export async function qidoApp(
  index: SqliteIndex,
  options: { maxResults?: number; unknownParameters?: "reject" | "ignore" } = {},
): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  const ctx: QidoRouteOptions = {
    archive: { index } as unknown as Archive,
    dicomwebPrefix: "/dicomweb",
    publicBase: () => BASE,
  };
  if (options.maxResults !== undefined) ctx.qidoMaxResults = options.maxResults;
  if (options.unknownParameters !== undefined) ctx.qidoUnknownParameters = options.unknownParameters;
  await app.register(qidoRoutes, ctx);
  await app.ready();
  return app;
}
