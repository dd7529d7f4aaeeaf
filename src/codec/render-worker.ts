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
import { isWorkerThread, move } from "piscina";
import type { RenderMediaType, RenderParams } from "./render-params.js";
import { type Presentation, renderFrames } from "./render.js";
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

/** Renders the task's frame(s) and returns the encoded image (moved, not copied, out of a worker). */
export async function renderTask(task: RenderTask): Promise<ArrayBuffer> {
  const encoded = await renderFrames(task.frames.map(toFrame), task.presentations, task.params, task.mediaType);
  // A copy into a plain ArrayBuffer: sharp's Buffer may be external memory that cannot be transferred.
  const bytes = encoded.buffer.slice(encoded.byteOffset, encoded.byteOffset + encoded.byteLength) as ArrayBuffer;
  return isWorkerThread ? (move(bytes) as ArrayBuffer) : bytes;
}

export default renderTask;
