/**
 * The archive bench's corpus, generated here with our own writer (src/dicom): deterministic (fixed
 * seeds, fixed dates and UIDs, nothing from the clock), so every run stores the same bytes.
 *
 * - A big CT series: N single-frame 512×512 16-bit instances, a water phantom with a bone ring
 *   and lungs that change along the slices, plus seeded noise. `variant` gives the same pixels
 *   under other UIDs (a second series in a study of its own), so one corpus feeds two STOW passes
 *   without duplicates.
 * - A handful of small studies (two series of two 64×64 instances each) with distinct patient
 *   names, some of them non-ASCII (UTF-8, ISO_IR 192), and distinct study dates for QIDO.
 */
import { endianness } from "node:os";
import { type DicomJsonDataset, jsonToDataset, writePart10 } from "../src/dicom/index.js";

export const EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1";
const CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2";
const MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4";
const ROOT = "1.2.826.0.1.3680043.9.7.88";

export const BIG_ROWS = 512;
export const BIG_COLUMNS = 512;

export interface CorpusInstance {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  /** The Part 10 file. */
  file: Buffer;
}

export interface BigSeries {
  studyUid: string;
  seriesUid: string;
  patientName: string;
  studyDate: string;
  rows: number;
  columns: number;
  instances: CorpusInstance[];
  /** Total bytes of the files. */
  bytes: number;
}

export interface SmallStudy {
  studyUid: string;
  patientName: string;
  patientId: string;
  studyDate: string;
  modality: string;
  series: Array<{ seriesUid: string; instances: CorpusInstance[] }>;
}

const attr = (vr: string, ...values: unknown[]): { vr: string; Value?: unknown[] } => (values.length > 0 ? { vr, Value: values } : { vr });

if (endianness() !== "LE") throw new Error("bench/corpus.ts writes pixels through a Uint16Array: a little-endian machine is needed");

/** The pixels of slice `index` of `count` (independent of the variant): what frame 1 of that instance must give back. */
export function ctPixels(index: number, count: number, rows = BIG_ROWS, columns = BIG_COLUMNS): Buffer {
  const out = Buffer.alloc(rows * columns * 2);
  // Samples written through a 16-bit view: little endian on every machine Node runs on here; checked below.
  const samples = new Uint16Array(out.buffer, out.byteOffset, rows * columns);
  // xorshift32 seeded by the slice: fast, and the same numbers on every run.
  let s = (0x9e3779b9 ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0 || 1;
  const z = count > 1 ? index / (count - 1) : 0.5; // 0 … 1 along the series
  const cx = columns / 2;
  const cy = rows / 2;
  const body2 = (Math.min(rows, columns) * 0.45) ** 2;
  const lung = 0.12 * Math.min(rows, columns) * Math.sin(Math.PI * z); // lungs grow, then shrink
  const lung2 = lung * lung;
  const boneOuter2 = (Math.min(rows, columns) * 0.41) ** 2;
  const boneInner2 = (Math.min(rows, columns) * 0.38) ** 2;
  const lx = columns * 0.32;
  const rx = columns * 0.68;
  for (let y = 0; y < rows; y++) {
    const dy2 = (y - cy) ** 2;
    for (let x = 0; x < columns; x++) {
      const r2 = (x - cx) ** 2 + dy2;
      let hu = -1000;
      if (r2 < body2) {
        hu = 40;
        if (r2 > boneInner2 && r2 < boneOuter2) hu = 700;
        else if ((x - lx) ** 2 + dy2 < lung2 || (x - rx) ** 2 + dy2 < lung2) hu = -850;
      }
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      hu += (s & 63) - 32; // ±32 HU of noise
      samples[y * columns + x] = hu + 1024 > 0 ? hu + 1024 : 0; // stored value = HU + 1024 (RescaleIntercept -1024)
    }
  }
  return out;
}

function bigHeader(
  series: Pick<BigSeries, "studyUid" | "seriesUid" | "patientName" | "studyDate">,
  variant: number,
  index: number,
): DicomJsonDataset {
  const sopUid = `${series.seriesUid}.${index + 1}`;
  const z = -0.625 * index;
  const ds: Record<string, unknown> = {
    "00080005": attr("CS", "ISO_IR 100"),
    "00080008": attr("CS", "ORIGINAL", "PRIMARY", "AXIAL"),
    "00080016": attr("UI", CT_IMAGE_STORAGE),
    "00080018": attr("UI", sopUid),
    "00080020": attr("DA", series.studyDate),
    "00080021": attr("DA", series.studyDate),
    "00080023": attr("DA", series.studyDate),
    "00080030": attr("TM", "101500"),
    "00080031": attr("TM", "101800"),
    "00080033": attr("TM", `1020${String(index % 60).padStart(2, "0")}`),
    "00080050": attr("SH", `ACC-BIG-${variant}`),
    "00080060": attr("CS", "CT"),
    "00080070": attr("LO", "ACME Medical Systems"),
    "00080080": attr("LO", "Voxelgate General Hospital"),
    "00080090": attr("PN", { Alphabetic: "Welby^Marcus^^Dr." }),
    "00081010": attr("SH", "CT01"),
    "00081030": attr("LO", "CT CHEST ABDOMEN PELVIS"),
    "0008103E": attr("LO", `AXIAL 0.625mm STANDARD (${variant})`),
    "00081090": attr("LO", "LightSpeed VCT"),
    "00100010": attr("PN", { Alphabetic: series.patientName }),
    "00100020": attr("LO", `PID-BIG-${variant}`),
    "00100030": attr("DA", "19650412"),
    "00100040": attr("CS", "M"),
    "00101010": attr("AS", "058Y"),
    "00180015": attr("CS", "CHEST"),
    "00180050": attr("DS", 0.625),
    "00180060": attr("DS", 120),
    "00181020": attr("LO", "07MW18.4"),
    "00181030": attr("LO", "5.1 CAP ROUTINE"),
    "00181100": attr("DS", 360),
    "00181120": attr("DS", 0),
    "00181151": attr("IS", 250),
    "00181210": attr("SH", "STANDARD"),
    "00185100": attr("CS", "FFS"),
    "0020000D": attr("UI", series.studyUid),
    "0020000E": attr("UI", series.seriesUid),
    "00200010": attr("SH", `BIG${variant}`),
    "00200011": attr("IS", 2),
    "00200012": attr("IS", 1),
    "00200013": attr("IS", index + 1),
    "00200032": attr("DS", -180, -180, z),
    "00200037": attr("DS", 1, 0, 0, 0, 1, 0),
    "00200052": attr("UI", `${series.studyUid}.9`),
    "00201040": attr("LO", "SN"),
    "00201041": attr("DS", z),
    "00280002": attr("US", 1),
    "00280004": attr("CS", "MONOCHROME2"),
    "00280010": attr("US", BIG_ROWS),
    "00280011": attr("US", BIG_COLUMNS),
    "00280030": attr("DS", 0.703125, 0.703125),
    "00280100": attr("US", 16),
    "00280101": attr("US", 16),
    "00280102": attr("US", 15),
    "00280103": attr("US", 0),
    "00281050": attr("DS", 40, -600),
    "00281051": attr("DS", 400, 1500),
    "00281052": attr("DS", -1024),
    "00281053": attr("DS", 1),
    "00281054": attr("LO", "HU"),
    "00400244": attr("DA", series.studyDate),
    "00400245": attr("TM", "101500"),
    "00400275": {
      vr: "SQ",
      Value: [
        { "00400007": attr("LO", "CT CAP"), "00400009": attr("SH", `SPS-BIG-${variant}`), "00401001": attr("SH", `RP-BIG-${variant}`) },
      ],
    },
  };
  return ds as DicomJsonDataset;
}

/** One Part 10 file: the header from DICOM JSON, Pixel Data set directly (no base64 round trip). */
function part10(json: DicomJsonDataset, pixels: Buffer): Buffer {
  const { dataset } = jsonToDataset(json);
  dataset.set({ tag: 0x7fe00010, vr: "OW", bytes: pixels, position: -1 });
  return writePart10(dataset, { transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN });
}

/** The big series' identity for a variant (no files): what queries and checks need. */
export function bigSeriesIds(variant: number): Pick<BigSeries, "studyUid" | "seriesUid" | "patientName" | "studyDate"> {
  const studyUid = `${ROOT}.1.${variant}`;
  return {
    studyUid,
    seriesUid: `${studyUid}.2`,
    patientName: `Bigseries^Variant${variant}`,
    studyDate: `2024031${4 + variant}`,
  };
}

/**
 * The big series: `count` instances of 512×512 16-bit CT. Pixels of slice i are the same in
 * every variant; `pixels` passes ones already made (for a second variant) to save the time.
 */
export function makeBigSeries(count: number, variant: number, pixels?: (index: number) => Buffer): BigSeries {
  const ids = bigSeriesIds(variant);
  const instances: CorpusInstance[] = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const file = part10(bigHeader(ids, variant, i), pixels ? pixels(i) : ctPixels(i, count));
    bytes += file.length;
    instances.push({ studyUid: ids.studyUid, seriesUid: ids.seriesUid, sopUid: `${ids.seriesUid}.${i + 1}`, file });
  }
  return { ...ids, rows: BIG_ROWS, columns: BIG_COLUMNS, instances, bytes };
}

/** Patients of the small studies; two share the family name Müller (a wildcard query finds both). */
export const SMALL_PATIENTS: Array<{ name: string; date: string; modality: string }> = [
  { name: "Müller^Zoë", date: "20190315", modality: "MR" },
  { name: "Smith^John", date: "20200704", modality: "CT" },
  { name: "Øster^Åse", date: "20201111", modality: "MR" },
  { name: "Garcia^Ana", date: "20210101", modality: "CT" },
  { name: "Müller^Hans", date: "20220606", modality: "MR" },
  { name: "Nguyen^Van", date: "20230909", modality: "CT" },
];

/** 64×64 16-bit pixels, seeded per instance. */
function smallPixels(seed: number): Buffer {
  const out = Buffer.allocUnsafe(64 * 64 * 2);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i += 2) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out.writeUInt16LE(s & 0x0fff, i);
  }
  return out;
}

export function makeSmallStudies(): SmallStudy[] {
  return SMALL_PATIENTS.map((p, st): SmallStudy => {
    const studyUid = `${ROOT}.2.${st + 1}`;
    const patientId = `PID-SMALL-${st + 1}`;
    const series = [1, 2].map((se) => {
      const seriesUid = `${studyUid}.${se}`;
      const instances = [1, 2].map((n): CorpusInstance => {
        const sopUid = `${seriesUid}.${n}`;
        const json: Record<string, unknown> = {
          "00080005": attr("CS", "ISO_IR 192"),
          "00080016": attr("UI", p.modality === "MR" ? MR_IMAGE_STORAGE : CT_IMAGE_STORAGE),
          "00080018": attr("UI", sopUid),
          "00080020": attr("DA", p.date),
          "00080030": attr("TM", "090000"),
          "00080050": attr("SH", `ACC-SMALL-${st + 1}`),
          "00080060": attr("CS", p.modality),
          "00080090": attr("PN", { Alphabetic: "Referring^Doctor" }),
          "00081030": attr("LO", `Small study ${st + 1}`),
          "0008103E": attr("LO", `Series ${se}`),
          "00100010": attr("PN", { Alphabetic: p.name }),
          "00100020": attr("LO", patientId),
          "00100030": attr("DA", "19800101"),
          "00100040": attr("CS", st % 2 ? "M" : "F"),
          "0020000D": attr("UI", studyUid),
          "0020000E": attr("UI", seriesUid),
          "00200010": attr("SH", `S${st + 1}`),
          "00200011": attr("IS", se),
          "00200013": attr("IS", n),
          "00280002": attr("US", 1),
          "00280004": attr("CS", "MONOCHROME2"),
          "00280010": attr("US", 64),
          "00280011": attr("US", 64),
          "00280100": attr("US", 16),
          "00280101": attr("US", 12),
          "00280102": attr("US", 11),
          "00280103": attr("US", 0),
        };
        const file = part10(json as DicomJsonDataset, smallPixels(st * 100 + se * 10 + n));
        return { studyUid, seriesUid, sopUid, file };
      });
      return { seriesUid, instances };
    });
    return { studyUid, patientName: p.name, patientId, studyDate: p.date, modality: p.modality, series };
  });
}
