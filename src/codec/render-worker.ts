/**
 * Rendering as a piscina task, so the CPU work (LUTs, scaling, JPEG/PNG/GIF encoding) runs off the
 * event loop. The pool (src/codec/pool.ts) loads this file:
 *
 *   const pool = new Piscina({ filename: new URL("./render-worker.js", import.meta.url).href });
 *   const bytes: ArrayBuffer = await pool.run(task, { name: "renderTask", transferList: [pixels.buffer] });
 *
 * Everything crossing the thread boundary is plain data: frames as FrameInfo + pixel bytes (an
 * ArrayBuffer or Uint8Array; transfer it rather than copy), Presentation (numbers and typed arrays,
 * made on the calling thread by presentationOf, which needs the Dataset), RenderParams (plain
 * object). The answer is the encoded image as an ArrayBuffer, transferred back. Errors keep their
 * names across the boundary: RenderParamError (the route answers 400), RenderError.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { isWorkerThread, move } from "piscina";
import { Dataset, readDicom, Tags } from "../dicom/index.js";
import { decodeFrame } from "./decode.js";
import { CODEC_ERROR_MARK, CodecError } from "./errors.js";
import { frameInfoOf } from "./frame-info.js";
import { parseRenderParams, type RenderMediaType, type RenderParams } from "./render-params.js";
import { type Presentation, presentationOf, renderFrames, ScratchBuffer } from "./render.js";
import type { DecodedFrame, FrameInfo } from "./types.js";

export interface RenderTaskFrame {
  info: FrameInfo;
  /** The frame's bytes: an ArrayBuffer holding exactly them, or a Uint8Array (a view of any buffer). */
  pixels: ArrayBuffer | Uint8Array;
}

export interface RenderTask {
  /** One frame, or several for an animated GIF. */
  frames: RenderTaskFrame[];
  /** One per frame, or one for all. */
  presentations: Presentation | Presentation[];
  params: RenderParams;
  mediaType: RenderMediaType;
}

const toFrame = (f: RenderTaskFrame): DecodedFrame => ({
  info: f.info,
  pixels: f.pixels instanceof Uint8Array ? f.pixels : new Uint8Array(f.pixels),
});

/** A copy into a plain ArrayBuffer (sharp's Buffer may be external memory that cannot be transferred), moved out of a worker. */
function answer(encoded: Buffer): ArrayBuffer {
  const bytes = encoded.buffer.slice(encoded.byteOffset, encoded.byteOffset + encoded.byteLength) as ArrayBuffer;
  return isWorkerThread ? (move(bytes) as ArrayBuffer) : bytes;
}

/** Renders the task's frame(s) and returns the encoded image (moved, not copied, out of a worker). */
export async function renderTask(task: RenderTask): Promise<ArrayBuffer> {
  return answer(await renderFrames(task.frames.map(toFrame), task.presentations, task.params, task.mediaType));
}

/**
 * Rendering straight from a stored file: the worker reads the attributes and the frame's bytes
 * itself (blocking reads are fine off the event loop), decodes and renders. The calling thread
 * then does no file I/O, no parsing and no copying of pixels for a cold image.
 */
export interface RenderFileTask {
  path: string;
  /** The file's bytes [0, headerEnd) hold every attribute before the pixel data. */
  headerEnd: number;
  transferSyntaxUid: string;
  /** Frames stored uncompressed (little endian, whole bytes): their bytes are the pixels. */
  native: boolean;
  /** 1-based frame numbers with the byte ranges (in the file) of each. */
  frames: Array<{ number: number; ranges: Array<{ start: number; end: number }> }>;
  params: RenderParams;
  mediaType: RenderMediaType;
}

/** A single frame is read into the thread's buffer rather than a fresh one per image. */
const frameBuffer = new ScratchBuffer();

function readRanges(fd: number, ranges: Array<{ start: number; end: number }>, into?: ScratchBuffer): Uint8Array {
  const total = ranges.reduce((n, r) => n + (r.end - r.start), 0);
  const out = into ? into.take(total) : new Uint8Array(total);
  let at = 0;
  for (const r of ranges) {
    let done = 0;
    while (done < r.end - r.start) {
      const n = readSync(fd, out, at + done, r.end - r.start - done, r.start + done);
      if (n === 0) throw new Error(`stored file is shorter than its frame table says (wanted bytes ${r.start}-${r.end})`);
      done += n;
    }
    at += done;
  }
  return out;
}

export async function renderFileTask(task: RenderFileTask): Promise<ArrayBuffer> {
  let stored: Uint8Array[] = [];
  try {
    const fd = openSync(task.path, "r");
    let header: Uint8Array;
    try {
      header = readRanges(fd, [{ start: 0, end: task.headerEnd }]);
      // One frame (a JPEG or PNG) is read into the thread's buffer; an animation's frames each get their own.
      stored = task.frames.map((f) => readRanges(fd, f.ranges, task.frames.length === 1 ? frameBuffer : undefined));
    } finally {
      closeSync(fd);
    }
    const ds = readDicom(header, { untilTag: Tags.PixelData }).dataset;
    const info = frameInfoOf(ds);
    const frames: DecodedFrame[] = [];
    for (const bytes of stored) frames.push(task.native ? { info, pixels: bytes } : await decodeFrame(bytes, task.transferSyntaxUid, info));
    const presentations = task.frames.map((f) => presentationOf(ds, f.number - 1));
    return answer(await renderFrames(frames, presentations, task.params, task.mediaType));
  } catch (e) {
    if (e instanceof CodecError) throw new Error(`${CODEC_ERROR_MARK}${e.code}:${e.message}`);
    throw e;
  } finally {
    for (const bytes of stored) frameBuffer.give(bytes);
  }
}

export default renderTask;

/**
 * Loads what a render needs (sharp, the renderer's code) and gets its hot paths compiled: a 512²
 * 16-bit CT-like frame through window, display table and JPEG encoding, `renders` times.
 */
export async function warmTask(renders: number): Promise<number> {
  const side = 512;
  const info: FrameInfo = {
    rows: side,
    columns: side,
    samplesPerPixel: 1,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 0,
    photometricInterpretation: "MONOCHROME2",
    planarConfiguration: 0,
  };
  const samples = new Uint16Array(side * side);
  for (let i = 0; i < samples.length; i++) samples[i] = ((i % side) * 3 + Math.floor(i / side) * 5) % 2048; // 0–2047, like CT
  const frame = { info, pixels: new Uint8Array(samples.buffer) };
  const presentation: Presentation = { ...presentationOf(new Dataset(true)), rescaleIntercept: -1024 };
  const params = parseRenderParams([["window", "40,400"]]);
  let bytes = 0;
  for (let i = 0; i < Math.max(1, renders); i++) bytes += (await renderFrames([frame], presentation, params, "image/jpeg")).length;
  return bytes;
}
