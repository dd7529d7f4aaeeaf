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
  /**
   * The Part 10 file as consecutive chunks (sent as they are, never joined): for the big series,
   * the header as our writer wrote it, then the Pixel Data element header and the pixels, which
   * both variants share.
   */
  chunks: Buffer[];
  /** Bytes in the file. */
  length: number;
}

export interface BigSeries {
  studyUid: string;
  seriesUid: string;
  patientName: string;
  studyDate: string;
  rows: number;
  columns: number;
  instances: CorpusInstance[];
  /** The pixels of each instance (frame 1), as generated. */
  pixels: Buffer[];
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

/** Stored value of a Hounsfield unit (RescaleIntercept -1024). */
const stored = (hu: number): number => hu + 1024;

/**
 * The pixels of slice `index` of `count` (independent of the variant): what frame 1 of that
 * instance must give back. A body disc of soft tissue in air, a bone ring, two lungs that grow and
 * shrink along the series, painted as spans per row, then ±32 HU of seeded noise on every sample.
 */
export function ctPixels(index: number, count: number, rows = BIG_ROWS, columns = BIG_COLUMNS): Buffer {
  const out = Buffer.alloc(rows * columns * 2);
  // Samples written through a 16-bit view: little endian (checked above).
  const samples = new Uint16Array(out.buffer, out.byteOffset, rows * columns);
  const z = count > 1 ? index / (count - 1) : 0.5; // 0 … 1 along the series
  const size = Math.min(rows, columns);
  const cx = columns / 2;
  const cy = rows / 2;
  const lung = 0.12 * size * Math.sin(Math.PI * z);
  /** Fills the samples of row y where (x - centre)² < radius² - dy², with `value`. */
  const span = (y: number, dy2: number, centre: number, radius: number, value: number): void => {
    const w2 = radius * radius - dy2;
    if (w2 <= 0) return;
    const w = Math.sqrt(w2);
    const from = Math.max(0, Math.floor(centre - w) + 1);
    const to = Math.min(columns, Math.ceil(centre + w));
    if (to > from) samples.fill(value, y * columns + from, y * columns + to);
  };
  samples.fill(stored(-1000));
  for (let y = 0; y < rows; y++) {
    const dy2 = (y - cy) ** 2;
    span(y, dy2, cx, size * 0.45, stored(40)); // soft tissue
    span(y, dy2, cx, size * 0.41, stored(700)); // bone ring: outer disc …
    span(y, dy2, cx, size * 0.38, stored(40)); // … minus the inner one
    span(y, dy2, columns * 0.32, lung, stored(-850));
    span(y, dy2, columns * 0.68, lung, stored(-850));
  }
  // xorshift32 seeded by the slice: fast, and the same numbers on every run.
  let s = (0x9e3779b9 ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0 || 1;
  for (let i = 0; i < samples.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const v = (samples[i] as number) + ((s >>> 0) & 63) - 32;
    samples[i] = v > 0 ? v : 0;
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

/** The 12-byte explicit VR little endian header of an OW Pixel Data element of `length` bytes. */
function pixelDataHeader(length: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16LE(0x7fe0, 0);
  h.writeUInt16LE(0x0010, 2);
  h.write("OW", 4, "latin1");
  h.writeUInt32LE(length, 8);
  return h;
}

/**
 * The same file as `part10`, as chunks: our writer writes the header (every attribute but Pixel
 * Data, the last one), the Pixel Data element follows as its 12-byte header and the pixels
 * themselves, so 512 KiB is never copied (joining a 1,000-instance series is seconds here).
 * `makeBigSeries` checks once that the chunks are byte for byte what `part10` writes.
 */
function part10Chunks(json: DicomJsonDataset, pixels: Buffer): Buffer[] {
  const { dataset } = jsonToDataset(json);
  return [writePart10(dataset, { transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN }), pixelDataHeader(pixels.length), pixels];
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
 * every variant; `pixels` passes the ones of another variant (shared, not copied).
 */
export function makeBigSeries(count: number, variant: number, pixels?: Buffer[]): BigSeries {
  const ids = bigSeriesIds(variant);
  const instances: CorpusInstance[] = [];
  const made: Buffer[] = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const slice = pixels?.[i] ?? ctPixels(i, count);
    const header = bigHeader(ids, variant, i);
    const chunks = part10Chunks(header, slice);
    if (i === 0 && !Buffer.concat(chunks).equals(part10(header, slice))) {
      throw new Error("bench corpus: the file in chunks differs from what writePart10 writes");
    }
    const length = chunks.reduce((n, c) => n + c.length, 0);
    bytes += length;
    made.push(slice);
    instances.push({ studyUid: ids.studyUid, seriesUid: ids.seriesUid, sopUid: `${ids.seriesUid}.${i + 1}`, chunks, length });
  }
  return { ...ids, rows: BIG_ROWS, columns: BIG_COLUMNS, instances, pixels: made, bytes };
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
        return { studyUid, seriesUid, sopUid, chunks: [file], length: file.length };
      });
      return { seriesUid, instances };
    });
    return { studyUid, patientName: p.name, patientId, studyDate: p.date, modality: p.modality, series };
  });
}

/**
 * Instance `index` of a big series of `variant` whose pixels are `pixels[index % pixels.length]`
 * (shared, not copied): for a STOW body of gigabytes generated as it is sent.
 */
export function bigInstanceChunks(variant: number, index: number, pixels: Buffer[]): { sopUid: string; chunks: Buffer[] } {
  const ids = bigSeriesIds(variant);
  const slice = pixels[index % pixels.length] as Buffer;
  return { sopUid: `${ids.seriesUid}.${index + 1}`, chunks: part10Chunks(bigHeader(ids, variant, index), slice) };
}
