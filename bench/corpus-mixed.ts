/**
 * The rest of the archive bench's corpus (bench/corpus.ts has the big CT series): everything is
 * seeded, nothing comes from the clock, so every run stores the same bytes.
 *
 * - Mixed studies: CT 512×512 16-bit (3 instances), MR 256×256 16-bit (4), US 240×320 RGB 8-bit
 *   (2), in turn, with realistic patient names (many of them non-ASCII: "Müller^Jürgen",
 *   "山田^太郎", ISO_IR 192), seeded study dates, times and accession numbers.
 * - The compressed study, made with our own encoders (src/codec): a series of 512² CT in JPEG-LS
 *   lossless (frames "as stored"), one instance per syntax (RLE, JPEG-LS, JPEG 2000, HTJ2K,
 *   JPEG baseline for the RGB ultrasound), an enhanced MR multi-frame of ≥ 500 frames in JPEG-LS,
 *   and single-frame MR instances whose frame is the same size and syntax (same-latency check).
 * - Metadata series: 10 … 5,000 instances of CT headers over tiny pixels (metadata does not
 *   depend on the pixels), each in a study of its own.
 * - QIDO filler: studies of 10 tiny instances with varied keys, to bring both archives to a size.
 */
import { encodeFrame } from "../src/codec/index.js";
import type { FrameInfo } from "../src/codec/types.js";
import { type DicomJsonDataset, encapsulateFrames, jsonToDataset, TransferSyntaxUids as TS, writePart10 } from "../src/dicom/index.js";
import { type CorpusInstance, ctPixels, EXPLICIT_VR_LITTLE_ENDIAN } from "./corpus.js";
import { seededRandom } from "./seeded-random.js";

const ROOT = "1.2.826.0.1.3680043.9.7.89";
const CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2";
const MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4";
const ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1";
const US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1";

const attr = (vr: string, ...values: unknown[]): { vr: string; Value?: unknown[] } => (values.length > 0 ? { vr, Value: values } : { vr });

/** Patient names of the mixed studies: Latin, Latin with diacritics, Greek, Cyrillic, CJK (all UTF-8, ISO_IR 192). */
export const MIXED_NAMES = [
  "Müller^Jürgen",
  "山田^太郎",
  "Smith^John",
  "Øster^Åse",
  "García^José^María",
  "Παπαδόπουλος^Νίκος",
  "Иванов^Пётр",
  "O'Brien^Seán",
  "Nguyễn^Văn",
  "Müller^Zoë",
  "Kowalski^Jan",
  "李^小龙",
];

export interface MixedStudy {
  studyUid: string;
  patientName: string;
  patientId: string;
  studyDate: string;
  accession: string;
  modality: "CT" | "MR" | "US";
  seriesUid: string;
  instances: CorpusInstance[];
}

/** A frame in a compressed syntax and the pixels it must decode to (the source, for lossless syntaxes). */
export interface CompressedInstance extends CorpusInstance {
  syntax: string;
  info: FrameInfo;
  /** The encoded frames as stored (one per frame). */
  frames: Buffer[];
  /** The uncompressed pixels of frame 1. */
  firstPixels: Buffer;
  lossy: boolean;
}

export interface CompressedStudy {
  studyUid: string;
  patientName: string;
  patientId: string;
  /** 512² CT in JPEG-LS lossless. */
  jlsSeries: { seriesUid: string; instances: CompressedInstance[] };
  /** One instance per syntax: RLE, JPEG-LS, J2K, HTJ2K (512² CT), JPEG baseline (RGB US). */
  syntaxes: CompressedInstance[];
  /** Enhanced MR, ≥ 500 frames of 256² in JPEG-LS. */
  multiFrame: CompressedInstance;
  /** Single-frame MR instances in JPEG-LS: frames of the same size and syntax as the multi-frame's. */
  singleFrames: CompressedInstance[];
  all: CompressedInstance[];
}

const info16 = (rows: number, columns: number): FrameInfo => ({
  rows,
  columns,
  samplesPerPixel: 1,
  bitsAllocated: 16,
  bitsStored: 16,
  highBit: 15,
  pixelRepresentation: 0,
  photometricInterpretation: "MONOCHROME2",
  planarConfiguration: 0,
});

const US_INFO: FrameInfo = {
  rows: 240,
  columns: 320,
  samplesPerPixel: 3,
  bitsAllocated: 8,
  bitsStored: 8,
  highBit: 7,
  pixelRepresentation: 0,
  photometricInterpretation: "RGB",
  planarConfiguration: 0,
};

/** An ultrasound-like RGB frame: a grey fan with seeded speckle and a coloured Doppler patch. */
function usPixels(seed: number): Buffer {
  const { rows, columns } = US_INFO;
  const out = Buffer.alloc(rows * columns * 3);
  const random = seededRandom(seed);
  for (let y = 0; y < rows; y++)
    for (let x = 0; x < columns; x++) {
      const dx = x - columns / 2;
      const inFan = y > 10 && Math.abs(dx) < y * 0.9;
      const grey = inFan ? Math.floor(60 + 80 * Math.sin(y / 9) ** 2 + random() * 60) : 0;
      const doppler = inFan && Math.abs(dx) < 30 && y > 100 && y < 160;
      const i = (y * columns + x) * 3;
      out[i] = doppler ? 200 : grey;
      out[i + 1] = doppler ? 40 : grey;
      out[i + 2] = doppler ? 40 : grey;
    }
  return out;
}

function imagePixelJson(info: FrameInfo): Record<string, unknown> {
  return {
    "00280002": attr("US", info.samplesPerPixel),
    "00280004": attr("CS", info.photometricInterpretation),
    ...(info.samplesPerPixel > 1 ? { "00280006": attr("US", info.planarConfiguration) } : {}),
    "00280010": attr("US", info.rows),
    "00280011": attr("US", info.columns),
    "00280100": attr("US", info.bitsAllocated),
    "00280101": attr("US", info.bitsStored),
    "00280102": attr("US", info.highBit),
    "00280103": attr("US", info.pixelRepresentation),
  };
}

/** A Part 10 file: uncompressed (one frame) or encapsulated frames in `syntax`. */
function file(json: Record<string, unknown>, syntax: string, frames: Uint8Array[]): Buffer {
  const { dataset } = jsonToDataset(json as DicomJsonDataset);
  if (syntax === EXPLICIT_VR_LITTLE_ENDIAN) {
    const bytes = frames.length === 1 ? (frames[0] as Uint8Array) : Buffer.concat(frames);
    dataset.set({ tag: 0x7fe00010, vr: json["00280100"] && firstOf(json, "00280100") > 8 ? "OW" : "OB", bytes, position: -1 });
  } else {
    dataset.set({ tag: 0x7fe00010, vr: "OB", encapsulated: encapsulateFrames(frames), position: -1 });
  }
  return writePart10(dataset, { transferSyntaxUid: syntax });
}

const firstOf = (json: Record<string, unknown>, tag: string): number => Number((json[tag] as { Value?: unknown[] }).Value?.[0]);

function instanceOf(json: Record<string, unknown>, syntax: string, frames: Uint8Array[]): CorpusInstance {
  const bytes = file(json, syntax, frames);
  const uid = (tag: string) => String((json[tag] as { Value?: unknown[] }).Value?.[0]);
  return { studyUid: uid("0020000D"), seriesUid: uid("0020000E"), sopUid: uid("00080018"), chunks: [bytes], length: bytes.length };
}

function patientJson(s: { studyUid: string; patientName: string; patientId: string; studyDate: string; accession: string }) {
  return {
    "00080005": attr("CS", "ISO_IR 192"),
    "00080020": attr("DA", s.studyDate),
    "00080050": attr("SH", s.accession),
    "00080090": attr("PN", { Alphabetic: "Welby^Marcus^^Dr." }),
    "00100010": attr("PN", { Alphabetic: s.patientName }),
    "00100020": attr("LO", s.patientId),
    "00100030": attr("DA", "19720229"),
    "0020000D": attr("UI", s.studyUid),
  };
}

/** `count` mixed studies (CT, MR, US in turn). */
export function makeMixedStudies(count: number): MixedStudy[] {
  const random = seededRandom(0x5eed0001);
  const studies: MixedStudy[] = [];
  for (let st = 0; st < count; st++) {
    const modality = (["CT", "MR", "US"] as const)[st % 3] as MixedStudy["modality"];
    const year = 2015 + Math.floor(random() * 10);
    const month = 1 + Math.floor(random() * 12);
    const day = 1 + Math.floor(random() * 28);
    const studyUid = `${ROOT}.1.${st + 1}`;
    const seriesUid = `${studyUid}.1`;
    const study = {
      studyUid,
      seriesUid,
      patientName: MIXED_NAMES[st % MIXED_NAMES.length] as string,
      patientId: `PID-MIX-${st + 1}`,
      studyDate: `${year}${String(month).padStart(2, "0")}${String(day).padStart(2, "0")}`,
      accession: `ACC-MIX-${String(st + 1).padStart(5, "0")}`,
      modality,
    };
    const hour = String(7 + Math.floor(random() * 12)).padStart(2, "0");
    const n = modality === "CT" ? 3 : modality === "MR" ? 4 : 2;
    const instances = Array.from({ length: n }, (_, i) => {
      const sopUid = `${seriesUid}.${i + 1}`;
      const info = modality === "CT" ? info16(512, 512) : modality === "MR" ? info16(256, 256) : US_INFO;
      const pixels = modality === "US" ? usPixels(st * 10 + i) : ctPixels(i, n, info.rows, info.columns);
      const json = {
        ...patientJson(study),
        "00080016": attr("UI", modality === "CT" ? CT_IMAGE_STORAGE : modality === "MR" ? MR_IMAGE_STORAGE : US_IMAGE_STORAGE),
        "00080018": attr("UI", sopUid),
        "00080030": attr("TM", `${hour}1500`),
        "00080060": attr("CS", modality),
        "00081030": attr("LO", `${modality} study ${st + 1}`),
        "0008103E": attr("LO", `${modality} series`),
        "0020000E": attr("UI", seriesUid),
        "00200010": attr("SH", `M${st + 1}`),
        "00200011": attr("IS", 1),
        "00200013": attr("IS", i + 1),
        ...imagePixelJson(info),
      };
      return instanceOf(json, EXPLICIT_VR_LITTLE_ENDIAN, [pixels]);
    });
    studies.push({ ...study, instances });
  }
  return studies;
}

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

async function encodeAll(
  pixels: Buffer[],
  info: FrameInfo,
  syntax: string,
): Promise<{ frames: Buffer[]; info: FrameInfo; lossy: boolean }> {
  const frames: Buffer[] = [];
  let outInfo = info;
  let lossy = false;
  for (const p of pixels) {
    const encoded = await encodeFrame({ info, pixels: p }, syntax);
    frames.push(asBuffer(encoded.bytes));
    outInfo = encoded.info;
    lossy ||= encoded.lossy;
  }
  return { frames, info: outInfo, lossy };
}

/**
 * The compressed study. `jlsCount`: instances of the JPEG-LS CT series; `frames`: frames of the
 * enhanced MR multi-frame (≥ 500 in every run).
 */
export async function makeCompressedStudy(jlsCount: number, frames: number, singleFrames = 20): Promise<CompressedStudy> {
  const studyUid = `${ROOT}.2.1`;
  const study = {
    studyUid,
    patientName: "山田^太郎",
    patientId: "PID-CODEC-1",
    studyDate: "20240601",
    accession: "ACC-CODEC-1",
  };
  let seriesNumber = 0;
  const make = async (
    seriesUid: string,
    index: number,
    sopClass: string,
    modality: string,
    info: FrameInfo,
    pixels: Buffer[],
    syntax: string,
    extra: Record<string, unknown> = {},
  ): Promise<CompressedInstance> => {
    const encoded = await encodeAll(pixels, info, syntax);
    const json = {
      ...patientJson(study),
      "00080016": attr("UI", sopClass),
      "00080018": attr("UI", `${seriesUid}.${index + 1}`),
      "00080030": attr("TM", "111500"),
      "00080060": attr("CS", modality),
      "00081030": attr("LO", "Codec study"),
      "0020000E": attr("UI", seriesUid),
      "00200010": attr("SH", "CODEC1"),
      "00200011": attr("IS", seriesNumber),
      "00200013": attr("IS", index + 1),
      ...(encoded.lossy ? { "00282110": attr("CS", "01") } : {}),
      ...imagePixelJson(encoded.info),
      ...extra,
    };
    return {
      ...instanceOf(json, syntax, encoded.frames),
      syntax,
      info: encoded.info,
      frames: encoded.frames,
      firstPixels: pixels[0] as Buffer,
      lossy: encoded.lossy,
    };
  };

  seriesNumber = 1;
  const jlsSeriesUid = `${studyUid}.1`;
  const jls: CompressedInstance[] = [];
  for (let i = 0; i < jlsCount; i++)
    jls.push(await make(jlsSeriesUid, i, CT_IMAGE_STORAGE, "CT", info16(512, 512), [ctPixels(i, jlsCount)], TS.JPEGLSLossless));

  seriesNumber = 2;
  const syntaxSeriesUid = `${studyUid}.2`;
  const ct = ctPixels(7, 20);
  const syntaxes = [
    await make(syntaxSeriesUid, 0, CT_IMAGE_STORAGE, "CT", info16(512, 512), [ct], TS.RLELossless),
    await make(syntaxSeriesUid, 1, CT_IMAGE_STORAGE, "CT", info16(512, 512), [ct], TS.JPEGLSLossless),
    await make(syntaxSeriesUid, 2, CT_IMAGE_STORAGE, "CT", info16(512, 512), [ct], TS.JPEG2000Lossless),
    await make(syntaxSeriesUid, 3, CT_IMAGE_STORAGE, "CT", info16(512, 512), [ct], TS.HTJ2KLossless),
    await make(syntaxSeriesUid, 4, US_IMAGE_STORAGE, "US", US_INFO, [usPixels(4242)], TS.JPEGBaseline8Bit),
  ];

  seriesNumber = 3;
  const mfSeriesUid = `${studyUid}.3`;
  const mr = info16(256, 256);
  const mrPixels = Array.from({ length: frames }, (_, i) => ctPixels(i, frames, mr.rows, mr.columns));
  const perFrame = mrPixels.map((_, i) => ({
    "00209111": { vr: "SQ", Value: [{ "00209157": attr("UL", 1, i + 1), "00209056": attr("US", 1) }] },
    "00209113": { vr: "SQ", Value: [{ "00200032": attr("DS", -120, -120, -1.5 * i) }] },
  }));
  const multiFrame = await make(mfSeriesUid, 0, ENHANCED_MR_IMAGE_STORAGE, "MR", mr, mrPixels, TS.JPEGLSLossless, {
    "00080008": attr("CS", "ORIGINAL", "PRIMARY", "M", "NONE"),
    "00200052": attr("UI", `${studyUid}.9`),
    "00280008": attr("IS", frames),
    "52009229": {
      vr: "SQ",
      Value: [
        {
          "00289110": { vr: "SQ", Value: [{ "00280030": attr("DS", 0.9375, 0.9375), "00180050": attr("DS", 1.5) }] },
          "00209116": { vr: "SQ", Value: [{ "00200037": attr("DS", 1, 0, 0, 0, 1, 0) }] },
        },
      ],
    },
    "52009230": { vr: "SQ", Value: perFrame },
  });

  seriesNumber = 4;
  const sfSeriesUid = `${studyUid}.4`;
  const singles: CompressedInstance[] = [];
  for (let i = 0; i < singleFrames; i++)
    singles.push(await make(sfSeriesUid, i, MR_IMAGE_STORAGE, "MR", mr, [mrPixels[i] as Buffer], TS.JPEGLSLossless));

  return {
    studyUid,
    patientName: study.patientName,
    patientId: study.patientId,
    jlsSeries: { seriesUid: jlsSeriesUid, instances: jls },
    syntaxes,
    multiFrame,
    singleFrames: singles,
    all: [...jls, ...syntaxes, multiFrame, ...singles],
  };
}

/**
 * One CT instance header over 16×16 pixels (metadata and QIDO do not depend on the pixels): a
 * realistic header (≈ 70 attributes, a sequence) for the metadata series and the QIDO filler.
 */
function tinyCt(
  ids: { studyUid: string; seriesUid: string; sopUid: string },
  keys: { patientName: string; patientId: string; studyDate: string; accession: string; modality: string; index: number },
): CorpusInstance {
  const z = -1.25 * keys.index;
  const json = {
    ...patientJson({ ...ids, ...keys }),
    "00080008": attr("CS", "ORIGINAL", "PRIMARY", "AXIAL"),
    "00080016": attr("UI", keys.modality === "MR" ? MR_IMAGE_STORAGE : CT_IMAGE_STORAGE),
    "00080018": attr("UI", ids.sopUid),
    "00080021": attr("DA", keys.studyDate),
    "00080030": attr("TM", "093000"),
    "00080031": attr("TM", "093500"),
    "00080060": attr("CS", keys.modality),
    "00080070": attr("LO", "ACME Medical Systems"),
    "00080080": attr("LO", "Voxelgate General Hospital"),
    "00081010": attr("SH", "CT02"),
    "00081030": attr("LO", "CT THORAX"),
    "0008103E": attr("LO", "AXIAL 1.25mm"),
    "00081090": attr("LO", "LightSpeed VCT"),
    "00100040": attr("CS", keys.index % 2 ? "F" : "M"),
    "00180015": attr("CS", "CHEST"),
    "00180050": attr("DS", 1.25),
    "00180060": attr("DS", 120),
    "00181030": attr("LO", "THORAX ROUTINE"),
    "00181151": attr("IS", 200),
    "00185100": attr("CS", "HFS"),
    "0020000E": attr("UI", ids.seriesUid),
    "00200010": attr("SH", "T1"),
    "00200011": attr("IS", 3),
    "00200013": attr("IS", keys.index + 1),
    "00200032": attr("DS", -180, -180, z),
    "00200037": attr("DS", 1, 0, 0, 0, 1, 0),
    "00200052": attr("UI", `${ids.studyUid}.9`),
    "00201041": attr("DS", z),
    "00280030": attr("DS", 0.7, 0.7),
    "00281050": attr("DS", 40),
    "00281051": attr("DS", 400),
    "00281052": attr("DS", -1024),
    "00281053": attr("DS", 1),
    "00400275": { vr: "SQ", Value: [{ "00400009": attr("SH", `SPS-${keys.accession}`), "00401001": attr("SH", `RP-${keys.accession}`) }] },
    ...imagePixelJson(info16(16, 16)),
  };
  const pixels = Buffer.alloc(16 * 16 * 2, keys.index & 0xff);
  return instanceOf(json, EXPLICIT_VR_LITTLE_ENDIAN, [pixels]);
}

export interface TinySeries {
  studyUid: string;
  seriesUid: string;
  instances: CorpusInstance[];
}

/** A metadata series of `count` instances in a study of its own. */
export function makeMetadataSeries(count: number): TinySeries {
  const studyUid = `${ROOT}.3.${count}`;
  const seriesUid = `${studyUid}.1`;
  const instances = Array.from({ length: count }, (_, i) =>
    tinyCt(
      { studyUid, seriesUid, sopUid: `${seriesUid}.${i + 1}` },
      {
        patientName: `Metadata^Series${count}`,
        patientId: `PID-META-${count}`,
        studyDate: "20230405",
        accession: `ACC-META-${count}`,
        modality: "CT",
        index: i,
      },
    ),
  );
  return { studyUid, seriesUid, instances };
}

/** Keys of filler study `st` (QIDO's realistic mix relies on these being predictable). */
export function fillerKeys(st: number): { patientName: string; patientId: string; studyDate: string; accession: string; modality: string } {
  const names = ["Smith^John", "Müller^Jürgen", "Garcia^Ana", "Nguyen^Van", "Doe^Jane", "Brown^Lee", "Rossi^Marco", "Kowalski^Jan"];
  return {
    patientName: `${names[st % names.length]}${st}`,
    patientId: `PID-FILL-${st}`,
    studyDate: `${2010 + (st % 10)}${String(1 + (st % 12)).padStart(2, "0")}${String(1 + (st % 28)).padStart(2, "0")}`,
    accession: `ACCF${String(st).padStart(6, "0")}`,
    modality: st % 3 === 0 ? "MR" : "CT",
  };
}

export const FILLER_SERIES_SIZE = 10;

/** Filler studies `from` … `to - 1`, one series of 10 tiny instances each. */
export function makeFiller(from: number, to: number): CorpusInstance[] {
  const out: CorpusInstance[] = [];
  for (let st = from; st < to; st++) {
    const studyUid = `${ROOT}.4.${st}`;
    const seriesUid = `${studyUid}.1`;
    const keys = fillerKeys(st);
    for (let i = 0; i < FILLER_SERIES_SIZE; i++)
      out.push(tinyCt({ studyUid, seriesUid, sopUid: `${seriesUid}.${i + 1}` }, { ...keys, index: i }));
  }
  return out;
}

export const fillerStudyUid = (st: number): string => `${ROOT}.4.${st}`;
