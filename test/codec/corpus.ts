/**
 * Codec test data: generated source images (test/fixtures/codec_corpus.py), their compressed
 * variants made by DCMTK and GDCM, and for each variant the reference pixels decoded by DCMTK or
 * GDCM. Built once per test process in a temporary folder.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Dataset, frameBytes, locateFrames, readDicom } from "../../src/dicom/index.js";
import { decodeFrame, type DecodedFrame, frameInfoOf } from "../../src/codec/index.js";
import { dcmjs, openjpeg, using, withLibrary } from "../../src/codec/wasm.js";
import type { FrameInfo } from "../../src/codec/types.js";
import { PYDICOM_DATA, PYTHON } from "../helpers/tools.js";

const exec = promisify(execFile);

export const SOURCES = ["ct16s", "ct12s", "ct12m", "ct12u", "mono8", "rgb8", "rgb8p", "rgb3f"] as const;
export type SourceName = (typeof SOURCES)[number];

let sourceDir: string | undefined;

/** Makes the source images (once per process); returns the folder holding `<name>.dcm`. */
export function codecSources(): string {
  if (sourceDir) return sourceDir;
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-codec-"));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const script = new URL("../../../test/fixtures/codec_corpus.py", import.meta.url).pathname;
  const r = spawnSync(PYTHON, [script, dir]);
  if (r.status !== 0) throw new Error(`codec_corpus.py failed: ${r.stderr.toString()}`);
  sourceDir = dir;
  return dir;
}

export const sourcePath = (name: SourceName): string => join(codecSources(), `${name}.dcm`);
export const pydicomFile = (name: string): string => join(PYDICOM_DATA, "test_files", name);

export interface Variant {
  name: string;
  /** The compressed file. */
  path: string;
  /** The same pixels decoded by the oracle, as a native file. */
  reference: string;
  /** e.g. "dcmcjpls +in → dcmdjpls". */
  recipe: string;
}

type Oracle = "dcmdrle" | "dcmdjpeg" | "dcmdjpls" | "gdcm";
interface Recipe {
  name: string;
  /** A generated source name, or "pydicom:<file>" for a file as shipped (then `tool` is empty). */
  source: string;
  tool: string;
  args: string[];
  oracle: Oracle;
}

const CT = ["ct16s", "ct12s", "ct12m", "ct12u"] as const;
/**
 * ct12m's unused bits are not sign-extended: DCMTK's RLE and JPEG decoders return them as stored,
 * GDCM's clean them (sign extension), and decodeFrame does what GDCM does. So GDCM is the oracle there.
 */
const dcmtkOr = (s: string, oracle: Oracle): Oracle => (s === "ct12m" ? "gdcm" : oracle);
const RECIPES: Recipe[] = [
  ...CT.flatMap((s): Recipe[] => [
    { name: `${s}_rle`, source: s, tool: "dcmcrle", args: [], oracle: dcmtkOr(s, "dcmdrle") },
    { name: `${s}_grle`, source: s, tool: "gdcmconv", args: ["--rle"], oracle: "gdcm" },
    { name: `${s}_sv1`, source: s, tool: "dcmcjpeg", args: ["+e1"], oracle: dcmtkOr(s, "dcmdjpeg") },
    { name: `${s}_p14`, source: s, tool: "dcmcjpeg", args: ["+el"], oracle: dcmtkOr(s, "dcmdjpeg") },
    { name: `${s}_gsv1`, source: s, tool: "gdcmconv", args: ["-J"], oracle: "gdcm" },
    { name: `${s}_jls`, source: s, tool: "dcmcjpls", args: [], oracle: "dcmdjpls" },
    { name: `${s}_gjls`, source: s, tool: "gdcmconv", args: ["--jpegls"], oracle: "gdcm" },
    { name: `${s}_j2k`, source: s, tool: "gdcmconv", args: ["--j2k"], oracle: "gdcm" },
    { name: `${s}_j2klossy`, source: s, tool: "gdcmconv", args: ["--j2k", "--lossy", "-q", "90"], oracle: "gdcm" },
  ]),
  { name: "ct12u_ext", source: "ct12u", tool: "dcmcjpeg", args: ["+ee"], oracle: "dcmdjpeg" },
  { name: "ct12s_ext", source: "ct12s", tool: "dcmcjpeg", args: ["+ee"], oracle: "dcmdjpeg" },
  { name: "ct12u_jlsnear", source: "ct12u", tool: "dcmcjpls", args: ["+en"], oracle: "dcmdjpls" },
  { name: "mono8_base", source: "mono8", tool: "dcmcjpeg", args: ["+eb"], oracle: "dcmdjpeg" },
  { name: "mono8_rle", source: "mono8", tool: "dcmcrle", args: [], oracle: "dcmdrle" },
  { name: "mono8_jls", source: "mono8", tool: "dcmcjpls", args: [], oracle: "dcmdjpls" },
  { name: "rgb8_rle", source: "rgb8", tool: "dcmcrle", args: [], oracle: "dcmdrle" },
  { name: "rgb8_sv1", source: "rgb8", tool: "dcmcjpeg", args: ["+e1"], oracle: "dcmdjpeg" },
  { name: "rgb8_base422", source: "rgb8", tool: "dcmcjpeg", args: ["+eb"], oracle: "dcmdjpeg" },
  { name: "rgb8_base444", source: "rgb8", tool: "dcmcjpeg", args: ["+eb", "+s4"], oracle: "dcmdjpeg" },
  { name: "rgb8_base_rgb", source: "rgb8", tool: "dcmcjpeg", args: ["+eb", "+cr"], oracle: "dcmdjpeg" },
  { name: "rgb8_jls_line", source: "rgb8", tool: "dcmcjpls", args: ["+il"], oracle: "dcmdjpls" },
  { name: "rgb8_jls_sample", source: "rgb8", tool: "dcmcjpls", args: ["+is"], oracle: "dcmdjpls" },
  { name: "rgb8_jls_none", source: "rgb8", tool: "dcmcjpls", args: ["+in"], oracle: "dcmdjpls" },
  { name: "rgb8_jlsnear", source: "rgb8", tool: "dcmcjpls", args: ["+en", "+is"], oracle: "dcmdjpls" },
  { name: "rgb8_gjls", source: "rgb8", tool: "gdcmconv", args: ["--jpegls"], oracle: "gdcm" },
  { name: "rgb8_j2k", source: "rgb8", tool: "gdcmconv", args: ["--j2k"], oracle: "gdcm" },
  { name: "rgb8_j2klossy", source: "rgb8", tool: "gdcmconv", args: ["--j2k", "--lossy", "-q", "90"], oracle: "gdcm" },
  { name: "rgb8p_rle", source: "rgb8p", tool: "dcmcrle", args: [], oracle: "dcmdrle" },
  { name: "rgb8p_jls", source: "rgb8p", tool: "dcmcjpls", args: [], oracle: "dcmdjpls" },
  { name: "rgb3f_base", source: "rgb3f", tool: "dcmcjpeg", args: ["+eb"], oracle: "dcmdjpeg" },
  { name: "rgb3f_jls", source: "rgb3f", tool: "dcmcjpls", args: [], oracle: "dcmdjpls" },
  // pydicom's files as shipped: JPEG colour-space corner cases (T10), odd sizes, J2K from other encoders.
  ...(
    [
      ["SC_jpeg_no_color_transform.dcm", "dcmdjpeg"],
      ["SC_jpeg_no_color_transform_2.dcm", "dcmdjpeg"],
      ["SC_rgb_jpeg_app14_dcmd.dcm", "dcmdjpeg"],
      ["SC_rgb_dcmtk_+eb+cr.dcm", "dcmdjpeg"],
      ["SC_rgb_dcmtk_+eb+cy+n1.dcm", "dcmdjpeg"],
      ["SC_rgb_dcmtk_+eb+cy+np.dcm", "dcmdjpeg"],
      ["SC_rgb_dcmtk_+eb+cy+s2.dcm", "dcmdjpeg"],
      ["SC_rgb_jpeg_dcmtk.dcm", "dcmdjpeg"],
      ["SC_rgb_jpeg_gdcm.dcm", "dcmdjpeg"],
      ["SC_rgb_jpeg_lossy_gdcm.dcm", "dcmdjpeg"],
      ["SC_rgb_small_odd_jpeg.dcm", "dcmdjpeg"],
      ["JPEG-lossy.dcm", "dcmdjpeg"],
      ["JPGExtended.dcm", "dcmdjpeg"],
      ["MR_small_RLE.dcm", "dcmdrle"],
      ["SC_rgb_rle.dcm", "dcmdrle"],
      ["SC_rgb_rle_16bit.dcm", "dcmdrle"],
      ["SC_rgb_rle_32bit_2frame.dcm", "dcmdrle"],
      ["rtdose_rle.dcm", "dcmdrle"],
      ["MR_small_jpeg_ls_lossless.dcm", "dcmdjpls"],
      ["MR_small_jp2klossless.dcm", "gdcm"],
      ["GDCMJ2K_TextGBR.dcm", "gdcm"],
      ["SC_rgb_gdcm_KY.dcm", "gdcm"],
      ["J2K_pixelrep_mismatch.dcm", "gdcm"],
      ["693_J2KI.dcm", "gdcm"],
      ["JPEG2000.dcm", "gdcm"],
    ] as const
  ).map(([file, oracle]): Recipe => ({ name: file.replace(/\.dcm$/, ""), source: `pydicom:${file}`, tool: "", args: [], oracle })),
];

const decodeArgs = (oracle: Oracle, input: string, output: string): [string, string[]] =>
  oracle === "gdcm" ? ["gdcmconv", ["--raw", input, output]] : [oracle, [input, output]];

let variants: Promise<Variant[]> | undefined;

/** Makes every variant and its reference (once per process, a few tools at a time). */
export function codecVariants(): Promise<Variant[]> {
  variants ??= (async () => {
    const dir = codecSources();
    const out: Variant[] = [];
    const queue = [...RECIPES];
    const work = async (): Promise<void> => {
      for (let r = queue.shift(); r; r = queue.shift()) {
        const path = r.source.startsWith("pydicom:") ? pydicomFile(r.source.slice(8)) : join(dir, `${r.name}.dcm`);
        if (!r.source.startsWith("pydicom:")) await exec(r.tool, [...r.args, join(dir, `${r.source}.dcm`), path]);
        const reference = join(dir, `${r.name}.ref.dcm`);
        const [tool, args] = decodeArgs(r.oracle, path, reference);
        await exec(tool, args);
        const made = r.tool ? `${r.tool} ${r.args.join(" ")} ${r.source}` : r.source;
        out.push({ name: r.name, path, reference, recipe: `${made} → ${r.oracle === "gdcm" ? "gdcmconv --raw" : r.oracle}` });
      }
    };
    await Promise.all(Array.from({ length: 4 }, work));
    return out.sort((a, b) => a.name.localeCompare(b.name));
  })();
  return variants;
}

export interface LoadedFrames {
  dataset: Dataset;
  syntax: string;
  frames: Uint8Array[];
}

export function load(path: string): LoadedFrames {
  const read = readDicom(readFileSync(path));
  if (read.error) throw read.error;
  return { dataset: read.dataset, syntax: read.transferSyntaxUid, frames: locateFrames(read.dataset).frames.map(frameBytes) };
}

/** Every frame of a file decoded by us. */
export async function decodeAll(path: string): Promise<DecodedFrame[]> {
  const { dataset, syntax, frames } = load(path);
  const info = frameInfoOf(dataset);
  return Promise.all(frames.map((f) => decodeFrame(f, syntax, info)));
}

/** Sample values of a decoded frame in interleaved order (planar frames reordered), as numbers. */
export function samples(frame: DecodedFrame): number[] {
  const { info, pixels } = frame;
  const bytes = Math.ceil(info.bitsAllocated / 8);
  const view = new DataView(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  const n = info.rows * info.columns * info.samplesPerPixel;
  const read = (i: number): number =>
    bytes === 1 ? view.getUint8(i) : bytes === 2 ? view.getUint16(i * 2, true) : view.getUint32(i * 4, true);
  const out = new Array<number>(n);
  const spp = info.samplesPerPixel;
  const count = info.rows * info.columns;
  for (let i = 0; i < n; i++) {
    out[i] = spp > 1 && info.planarConfiguration === 1 ? read((i % spp) * count + Math.floor(i / spp)) : read(i);
  }
  return out;
}

/** Number of differing samples and the largest difference. */
export function compare(a: number[], b: number[]): { differ: number; max: number } {
  let differ = Math.abs(a.length - b.length);
  let max = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (d) {
      differ++;
      max = Math.max(max, d);
    }
  }
  return { differ, max };
}

/** GDCM's cleanup of a native source (Bits Stored < 16: sign-extend or mask), as numbers: what lossless codecs must give back. */
export function cleaned(frame: DecodedFrame): number[] {
  const values = samples(frame);
  const { bitsAllocated, bitsStored, pixelRepresentation } = frame.info;
  if (bitsAllocated !== 16 || bitsStored >= 16) return values;
  const mask = (1 << bitsStored) - 1;
  const sign = 1 << (bitsStored - 1);
  return values.map((v) => {
    const m = v & mask;
    return pixelRepresentation === 1 && m & sign ? m | (0xffff & ~mask) : m;
  });
}

/** HTJ2K made by dcmjs-codecs' OpenJPH encoder (TLM markers, tile-parts per resolution): an encoder other than ours. */
export async function dcmjsHtj2k(frame: DecodedFrame, lossy: boolean, progressionOrder: number): Promise<Uint8Array> {
  return withLibrary(dcmjs, ({ NativeCodecs, Context }) => {
    const { info } = frame;
    const ctx = new Context({
      width: info.columns,
      height: info.rows,
      bitsAllocated: info.bitsAllocated,
      bitsStored: info.bitsStored,
      samplesPerPixel: info.samplesPerPixel,
      pixelRepresentation: info.pixelRepresentation,
      planarConfiguration: 0,
      photometricInterpretation: info.photometricInterpretation,
      decodedBuffer: frame.pixels,
    });
    return NativeCodecs.encodeHtJpeg2000(ctx, { lossy, progressionOrder }).getEncodedBuffer() as Uint8Array;
  });
}

/** OpenJPEG's decode of a (HT)J2K codestream, called directly (grey or 8-bit colour). */
export async function openjpegDecode(bytes: Uint8Array): Promise<Uint8Array> {
  return withLibrary(openjpeg, (m) =>
    using(new m.J2KDecoder(), (d) => {
      d.getEncodedBuffer(bytes.length).set(bytes);
      d.decode();
      return new Uint8Array(d.getDecodedBuffer());
    }),
  );
}

/** dcmjs-codecs' OpenJPH decode of an HTJ2K codestream (a third decoder). */
export async function dcmjsHtj2kDecode(bytes: Uint8Array, info: FrameInfo): Promise<Uint8Array> {
  return withLibrary(dcmjs, ({ NativeCodecs, Context }) => {
    const ctx = new Context({
      width: info.columns,
      height: info.rows,
      bitsAllocated: info.bitsAllocated,
      bitsStored: info.bitsStored,
      samplesPerPixel: info.samplesPerPixel,
      pixelRepresentation: info.pixelRepresentation,
      planarConfiguration: 0,
      photometricInterpretation: "MONOCHROME2",
      encodedBuffer: bytes,
    });
    if (info.samplesPerPixel === 3) ctx.setPhotometricInterpretation("RGB");
    return NativeCodecs.decodeHtJpeg2000(ctx).getDecodedBuffer() as Uint8Array;
  });
}
