/**
 * Compact binary encoding of a frame table (byte ranges per frame) for the index: a Float64Array
 * of [rangeCount, start, end, start, end, …] per frame. Float64 holds any file offset exactly.
 */
import type { FrameRanges } from "./types.js";

export function encodeFrameTable(frames: FrameRanges[]): Buffer {
  let size = 0;
  for (const f of frames) size += 1 + 2 * f.length;
  const out = new Float64Array(size);
  let i = 0;
  for (const f of frames) {
    out[i++] = f.length;
    for (const r of f) {
      out[i++] = r.start;
      out[i++] = r.end;
    }
  }
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}

export function decodeFrameTable(bytes: Uint8Array): FrameRanges[] {
  const copy = new Uint8Array(bytes); // Float64Array needs 8-byte alignment
  const values = new Float64Array(copy.buffer, 0, copy.byteLength / 8);
  const frames: FrameRanges[] = [];
  let i = 0;
  while (i < values.length) {
    const count = values[i++] ?? 0;
    const ranges: FrameRanges = [];
    for (let k = 0; k < count; k++) ranges.push({ start: values[i++] ?? 0, end: values[i++] ?? 0 });
    frames.push(ranges);
  }
  return frames;
}
