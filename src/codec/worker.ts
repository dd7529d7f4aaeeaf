/**
 * The codec task run in the pool's worker threads (pool.ts). Each worker loads the WASM codecs it
 * needs on its first task that needs them, once. Results go back with their pixel buffers moved,
 * not copied. Errors cross the boundary as Errors; `code` (CodecError) survives as a property.
 */
import { move, transferableSymbol, valueSymbol } from "piscina";
import { decodeFrame } from "./decode.js";
import { type EncodeOptions, encodeFrame } from "./encode.js";
import { CODEC_ERROR_MARK, CodecError } from "./errors.js";
import { ownBuffer } from "./pixels.js";
import { type TranscodeOptions, transcodeFrame } from "./transcode.js";
import type { FrameInfo } from "./types.js";

export type CodecTask =
  | { op: "decode"; bytes: Uint8Array; syntax: string; info: FrameInfo }
  | { op: "encode"; pixels: Uint8Array; info: FrameInfo; syntax: string; options?: EncodeOptions }
  | { op: "transcode"; bytes: Uint8Array; from: string; info: FrameInfo; to: string; options?: TranscodeOptions };

/** What a task answers: the result's bytes, and the rest of the result. */
export interface CodecTaskResult {
  bytes: Uint8Array;
  info: FrameInfo;
  mediaType?: string;
  lossy?: boolean;
  lossyRatio?: number;
  method?: string;
}

/** A result whose buffer is transferred (piscina's Transferable protocol) rather than cloned. */
function moved(result: CodecTaskResult): CodecTaskResult {
  const bytes = ownBuffer(result.bytes);
  const value = { ...result, bytes };
  return move({ [transferableSymbol]: [bytes.buffer], [valueSymbol]: value } as never) as unknown as CodecTaskResult;
}

export default async function codecTask(task: CodecTask): Promise<CodecTaskResult> {
  try {
    return await runTask(task);
  } catch (e) {
    if (e instanceof CodecError) throw new Error(`${CODEC_ERROR_MARK}${e.code}:${e.message}`);
    throw e;
  }
}

async function runTask(task: CodecTask): Promise<CodecTaskResult> {
  switch (task.op) {
    case "decode": {
      const frame = await decodeFrame(task.bytes, task.syntax, task.info);
      return moved({ bytes: frame.pixels, info: frame.info });
    }
    case "encode": {
      const encoded = await encodeFrame({ pixels: task.pixels, info: task.info }, task.syntax, task.options);
      return moved(encoded);
    }
    case "transcode":
      return moved(await transcodeFrame(task.bytes, task.from, task.info, task.to, task.options));
    default:
      throw new Error(`unknown codec task ${(task as { op: string }).op}`);
  }
}
