/**
 * Studies a viewer is opened on (viewer tests and the viewer bench), made with our own writer,
 * deterministic: a CT series, an MR series, a multi-frame XA cine and an RGB ultrasound image,
 * each with its own patient and study description, plus the CT again as JPEG-LS lossless
 * (compressed with our codecs) for the "as stored" and "server transcoded" paths.
 */
import { transcodeDataset } from "../src/codec/index.js";
import { type DicomJsonDataset, jsonToDataset, readDicom, writePart10 } from "../src/dicom/index.js";
import { ctPixels, EXPLICIT_VR_LITTLE_ENDIAN } from "./corpus.js";

const ROOT = "1.2.826.0.1.3680043.9.7.88.8";
export const JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80";

export interface ViewerStudy {
  /** Short name used in test names and screenshots, e.g. "ct". */
  key: string;
  studyUid: string;
  description: string;
  patientName: string;
  modality: string;
  /** Part 10 files. */
  files: Buffer[];
}

const attr = (vr: string, ...values: unknown[]): { vr: string; Value?: unknown[] } => (values.length > 0 ? { vr, Value: values } : { vr });

interface ImageSpec {
  key: string;
  n: number;
  sopClass: string;
  modality: string;
  description: string;
  patient: string;
  rows: number;
  columns: number;
  /** One file's pixel data (all its frames). */
  pixels(index: number): Buffer;
  images: number;
  frames?: number;
  rgb?: boolean;
  bits: 8 | 16;
  extra?(index: number): Record<string, unknown>;
}

function makeStudy(spec: ImageSpec): ViewerStudy {
  const studyUid = `${ROOT}.${spec.n}`;
  const seriesUid = `${studyUid}.1`;
  const files: Buffer[] = [];
  for (let i = 0; i < spec.images; i++) {
    const json: Record<string, unknown> = {
      "00080005": attr("CS", "ISO_IR 100"),
      "00080008": attr("CS", "ORIGINAL", "PRIMARY"),
      "00080016": attr("UI", spec.sopClass),
      "00080018": attr("UI", `${seriesUid}.${i + 1}`),
      "00080020": attr("DA", `2024050${spec.n}`),
      "00080030": attr("TM", "093000"),
      "00080050": attr("SH", `ACC-VIEW-${spec.n}`),
      "00080060": attr("CS", spec.modality),
      "00081030": attr("LO", spec.description),
      "0008103E": attr("LO", `${spec.description} series`),
      "00100010": attr("PN", { Alphabetic: spec.patient }),
      "00100020": attr("LO", `PID-VIEW-${spec.n}`),
      "00100030": attr("DA", "19700101"),
      "00100040": attr("CS", spec.n % 2 ? "F" : "M"),
      "0020000D": attr("UI", studyUid),
      "0020000E": attr("UI", seriesUid),
      "00200010": attr("SH", `V${spec.n}`),
      "00200011": attr("IS", 1),
      "00200013": attr("IS", i + 1),
      "00280002": attr("US", spec.rgb ? 3 : 1),
      "00280004": attr("CS", spec.rgb ? "RGB" : "MONOCHROME2"),
      "00280010": attr("US", spec.rows),
      "00280011": attr("US", spec.columns),
      "00280100": attr("US", spec.bits),
      "00280101": attr("US", spec.bits),
      "00280102": attr("US", spec.bits - 1),
      "00280103": attr("US", 0),
      ...(spec.rgb ? { "00280006": attr("US", 0) } : {}),
      ...(spec.frames ? { "00280008": attr("IS", spec.frames), "00181063": attr("DS", 66.7), "00280009": attr("AT", "00181063") } : {}),
      ...spec.extra?.(i),
    };
    const { dataset } = jsonToDataset(json as DicomJsonDataset);
    dataset.set({ tag: 0x7fe00010, vr: spec.bits === 16 ? "OW" : "OB", bytes: spec.pixels(i), position: -1 });
    files.push(writePart10(dataset, { transferSyntaxUid: EXPLICIT_VR_LITTLE_ENDIAN }));
  }
  return { key: spec.key, studyUid, description: spec.description, patientName: spec.patient, modality: spec.modality, files };
}

/** xorshift32 noise in [0, 2^bits). */
function noise(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** 16-bit MR-like slice: a bright ellipse (head) with a darker inner ellipse and noise. */
function mrPixels(index: number, rows: number, columns: number): Buffer {
  const out = Buffer.alloc(rows * columns * 2);
  const rnd = noise(index + 11);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const dx = (x - columns / 2) / (columns * 0.4);
      const dy = (y - rows / 2) / (rows * 0.45);
      const r = dx * dx + dy * dy;
      let v = r < 1 ? 900 + 300 * Math.cos(6 * r + index) : 20;
      if (r < 0.3) v = 500 + 100 * index;
      out.writeUInt16LE(Math.max(0, Math.round(v + (rnd() & 63))), (y * columns + x) * 2);
    }
  }
  return out;
}

/** 8-bit cine: a disc moving across a gradient, one position per frame. */
function cinePixels(frames: number, rows: number, columns: number): Buffer {
  const out = Buffer.alloc(frames * rows * columns);
  for (let f = 0; f < frames; f++) {
    const cx = columns * (0.2 + (0.6 * f) / Math.max(1, frames - 1));
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < columns; x++) {
        const inside = (x - cx) ** 2 + (y - rows / 2) ** 2 < (rows * 0.15) ** 2;
        out[(f * rows + y) * columns + x] = inside ? 240 : (x + y) & 0x7f;
      }
    }
  }
  return out;
}

/** 8-bit RGB (interleaved): colour bars over a sector-shaped ultrasound-like fan. */
function usPixels(rows: number, columns: number): Buffer {
  const out = Buffer.alloc(rows * columns * 3);
  const rnd = noise(7);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const o = (y * columns + x) * 3;
      const angle = Math.atan2(x - columns / 2, y + 10);
      const inFan = Math.abs(angle) < 0.6 && y > 10;
      const grey = inFan ? 60 + (rnd() % 140) : 0;
      out[o] = grey;
      out[o + 1] = grey;
      out[o + 2] = grey;
      if (y < 16) {
        const bar = Math.floor((x / columns) * 6);
        out[o] = bar & 1 ? 255 : 0;
        out[o + 1] = bar & 2 ? 255 : 0;
        out[o + 2] = bar & 4 ? 255 : 0;
      }
    }
  }
  return out;
}

const CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2";
const MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4";
const XA_STORAGE = "1.2.840.10008.5.1.4.1.1.12.1";
const US_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1";

const ctSpec = (n: number, key: string, description: string, patient: string): ImageSpec => ({
  key,
  n,
  sopClass: CT_STORAGE,
  modality: "CT",
  description,
  patient,
  rows: 256,
  columns: 256,
  images: 5,
  bits: 16,
  pixels: (i) => ctPixels(i, 5, 256, 256),
  extra: (i) => ({
    "00200032": attr("DS", -90, -90, -2.5 * i),
    "00200037": attr("DS", 1, 0, 0, 0, 1, 0),
    "00280030": attr("DS", 0.703125, 0.703125),
    "00180050": attr("DS", 2.5),
    "00281050": attr("DS", 40),
    "00281051": attr("DS", 400),
    "00281052": attr("DS", -1024),
    "00281053": attr("DS", 1),
  }),
});

/** The four uncompressed studies. */
export function makeViewerStudies(): ViewerStudy[] {
  return [
    makeStudy(ctSpec(1, "ct", "VIEWER CT CHEST", "Viewer^Ct")),
    makeStudy({
      key: "mr",
      n: 2,
      sopClass: MR_STORAGE,
      modality: "MR",
      description: "VIEWER MR BRAIN",
      patient: "Viewer^Mr",
      rows: 192,
      columns: 160,
      images: 4,
      bits: 16,
      pixels: (i) => mrPixels(i, 192, 160),
      extra: (i) => ({
        "00200032": attr("DS", -80, -96, 5 * i),
        "00200037": attr("DS", 1, 0, 0, 0, 1, 0),
        "00280030": attr("DS", 1, 1),
        "00180050": attr("DS", 5),
      }),
    }),
    makeStudy({
      key: "xa-multiframe",
      n: 3,
      sopClass: XA_STORAGE,
      modality: "XA",
      description: "VIEWER XA CINE",
      patient: "Viewer^Multiframe",
      rows: 256,
      columns: 256,
      images: 1,
      frames: 12,
      bits: 8,
      pixels: () => cinePixels(12, 256, 256),
    }),
    makeStudy({
      key: "us-rgb",
      n: 4,
      sopClass: US_STORAGE,
      modality: "US",
      description: "VIEWER US RGB",
      patient: "Viewer^Rgb",
      rows: 240,
      columns: 320,
      images: 1,
      rgb: true,
      bits: 8,
      pixels: () => usPixels(240, 320),
    }),
  ];
}

/** The CT series as JPEG-LS lossless (our encoder), under its own UIDs and description. */
export async function makeCompressedStudy(): Promise<ViewerStudy> {
  const study = makeStudy(ctSpec(5, "ct-jpegls", "VIEWER CT JPEG-LS", "Viewer^Compressed"));
  const files: Buffer[] = [];
  for (const file of study.files) {
    const { dataset } = readDicom(file);
    const out = await transcodeDataset(dataset, JPEG_LS_LOSSLESS);
    files.push(writePart10(out, { transferSyntaxUid: JPEG_LS_LOSSLESS }));
  }
  return { ...study, files };
}
