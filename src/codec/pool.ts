/**
 * A piscina worker pool for the CPU-heavy pixel work (decode, encode, transcode, rendering), so it
 * never blocks the event loop. Size: available parallelism (at least 1) unless configured.
 *
 * Buffers are transferred, not cloned: an input that is exactly its own ArrayBuffer is moved when
 * the caller gives it up (`transfer: true`), otherwise its bytes are copied once into a fresh
 * buffer that is moved (cloning a view would copy the whole underlying buffer, e.g. a whole file).
 * Results come back moved from the worker.
 */
import { availableParallelism } from "node:os";
import { Piscina } from "piscina";
import type { EncodedFrame, EncodeOptions } from "./encode.js";
import { CODEC_ERROR_MARK, CodecError, type CodecErrorCode } from "./errors.js";
import type { RenderFileTask, RenderTask } from "./render-worker.js";
import type { TranscodedFrame, TranscodeOptions } from "./transcode.js";
import type { DecodedFrame, FrameInfo } from "./types.js";
import type { CodecTask, CodecTaskResult } from "./worker.js";

export interface CodecPoolOptions {
  /** Worker threads (default: available parallelism, at least 1). */
  size?: number;
  /**
   * A thread idle this long exits, and the pool starts one again when needed. Default: threads
   * live as long as the pool. A new thread loads sharp and the codecs and runs its first couple of
   * hundred images partly uncompiled (about 40 % slower), so a server keeps its warm threads; set
   * this to give their memory (some tens of MB) back in long idle periods.
   */
  idleTimeoutMs?: number;
  /**
   * Longest a task may run (default 60 s): a hostile codestream must not hold a thread. The worker
   * running it is stopped and the task fails with CodecError TIMEOUT.
   */
  taskTimeoutMs?: number;
}

export interface TransferOption {
  /** The caller gives its buffer up: moved to the worker without a copy (only when the view spans the whole buffer). */
  transfer?: boolean;
}

const WORKER = new URL("./worker.js", import.meta.url).href;
const RENDER_WORKER = new URL("./render-worker.js", import.meta.url).href;

/** Bytes to send, and what to put in the transfer list. */
function outgoing(bytes: Uint8Array, transfer: boolean | undefined): { bytes: Uint8Array; buffer: ArrayBuffer } {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
  if (transfer && whole) return { bytes, buffer: bytes.buffer as ArrayBuffer };
  // A plain copy: Buffer#slice would be a view, and a Buffer's memory may be Node's shared pool.
  const own = new Uint8Array(bytes.byteLength);
  own.set(bytes);
  return { bytes: own, buffer: own.buffer };
}

/** Errors from a worker arrive as plain Errors; a CodecError is rebuilt from the code its message carries. */
function rethrow(e: unknown): never {
  if (e instanceof Error && e.message.startsWith(CODEC_ERROR_MARK)) {
    const rest = e.message.slice(CODEC_ERROR_MARK.length);
    const colon = rest.indexOf(":");
    throw new CodecError(rest.slice(0, colon) as CodecErrorCode, rest.slice(colon + 1));
  }
  throw e;
}

export class CodecPool {
  private readonly piscina: Piscina;
  readonly size: number;
  private readonly timeoutMs: number;
  /** A warm-up of the missing threads under way (see `wakeAll`). */
  private waking: Promise<void> | undefined;

  constructor(options: CodecPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.size ?? availableParallelism()));
    this.timeoutMs = options.taskTimeoutMs ?? 60_000;
    this.piscina = new Piscina({
      filename: WORKER,
      minThreads: options.idleTimeoutMs === undefined ? this.size : 0,
      maxThreads: this.size,
      idleTimeout: options.idleTimeoutMs ?? 30_000,
    });
  }

  private async run(task: CodecTask, buffer: ArrayBuffer): Promise<CodecTaskResult> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      return (await this.piscina.run(task, { transferList: [buffer], signal })) as CodecTaskResult;
    } catch (e) {
      if (signal.aborted)
        throw new CodecError("TIMEOUT", `codec task (${task.op}) did not finish within ${this.timeoutMs} ms`, { cause: e });
      return rethrow(e);
    }
  }

  async decodeFrame(bytes: Uint8Array, transferSyntaxUid: string, info: FrameInfo, options: TransferOption = {}): Promise<DecodedFrame> {
    const out = outgoing(bytes, options.transfer);
    const result = await this.run({ op: "decode", bytes: out.bytes, syntax: transferSyntaxUid, info }, out.buffer);
    return { pixels: result.bytes, info: result.info };
  }

  async encodeFrame(frame: DecodedFrame, transferSyntaxUid: string, options: EncodeOptions & TransferOption = {}): Promise<EncodedFrame> {
    const { transfer, ...encodeOptions } = options;
    const out = outgoing(frame.pixels, transfer);
    const result = await this.run(
      { op: "encode", pixels: out.bytes, info: frame.info, syntax: transferSyntaxUid, options: encodeOptions },
      out.buffer,
    );
    return { bytes: result.bytes, info: result.info, lossy: result.lossy ?? false, lossyRatio: result.lossyRatio, method: result.method };
  }

  /** Same as transcode.ts `transcodeFrame`, in a worker. Usable as `transcodeDataset`'s `transcodeFrame` option. */
  transcodeFrame = async (
    bytes: Uint8Array,
    fromSyntax: string,
    info: FrameInfo,
    toSyntax: string,
    options: TranscodeOptions & TransferOption = {},
  ): Promise<TranscodedFrame> => {
    const { transfer, ...transcodeOptions } = options;
    const out = outgoing(bytes, transfer);
    const result = await this.run(
      { op: "transcode", bytes: out.bytes, from: fromSyntax, info, to: toSyntax, options: transcodeOptions },
      out.buffer,
    );
    return {
      bytes: result.bytes,
      info: result.info,
      mediaType: result.mediaType ?? "application/octet-stream",
      lossy: result.lossy ?? false,
      lossyRatio: result.lossyRatio,
      method: result.method,
    };
  };

  /**
   * Threads exit after idleTimeoutMs; a render after that would start them one by one as the
   * requests pile up, each new thread loading sharp and the codecs (~0.3 s of CPU) while images
   * wait behind it. A viewer asks for many images at once: when a render finds threads missing,
   * start (and warm) all of them in the background right away.
   */
  private wakeAll(): void {
    if (this.waking !== undefined || this.piscina.threads.length >= this.size) return;
    this.waking = this.warm(1)
      .catch(() => undefined)
      .finally(() => {
        this.waking = undefined;
      });
  }

  /** Runs render-worker.ts's `renderTask` in the same threads; the frames' pixels are moved (given up) or copied once and moved. */
  async render(task: RenderTask, options: TransferOption = {}): Promise<ArrayBuffer> {
    const transferList: ArrayBuffer[] = [];
    const frames = task.frames.map((f) => {
      const bytes = f.pixels instanceof Uint8Array ? f.pixels : new Uint8Array(f.pixels);
      const out = outgoing(bytes, options.transfer);
      transferList.push(out.buffer);
      return { info: f.info, pixels: out.bytes };
    });
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const running = this.piscina.run({ ...task, frames }, { filename: RENDER_WORKER, name: "renderTask", transferList, signal });
      this.wakeAll(); // after the task is queued: it goes first
      return (await running) as ArrayBuffer;
    } catch (e) {
      if (signal.aborted) throw new CodecError("TIMEOUT", `render task did not finish within ${this.timeoutMs} ms`, { cause: e });
      throw e;
    }
  }

  /** Runs render-worker.ts's `renderFileTask`: the worker reads, decodes and renders a stored frame itself. */
  async renderFile(task: RenderFileTask): Promise<ArrayBuffer> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const running = this.piscina.run(task, { filename: RENDER_WORKER, name: "renderFileTask", signal });
      this.wakeAll(); // after the task is queued: it goes first
      return (await running) as ArrayBuffer;
    } catch (e) {
      if (signal.aborted) throw new CodecError("TIMEOUT", `render task did not finish within ${this.timeoutMs} ms`, { cause: e });
      return rethrow(e);
    }
  }

  /**
   * Starts every thread and has it render a 512² CT-like image `renders` times, so the first
   * viewer's images do not pay for loading sharp and the codecs (~0.1–0.3 s per thread) nor run
   * uncompiled. Best effort. At start-up, where nothing waits, 24 renders (~0.1 s per thread); when
   * threads were restarted under load, 1 (requests queue behind the warm-up).
   */
  async warm(renders = 24): Promise<void> {
    await Promise.all(Array.from({ length: this.size }, () => this.piscina.run(renders, { filename: RENDER_WORKER, name: "warmTask" })));
  }

  /** Tasks waiting for a thread. */
  get queued(): number {
    return this.piscina.queueSize;
  }

  close(): Promise<void> {
    return this.piscina.destroy();
  }
}

let shared: CodecPool | undefined;

/** The process-wide pool, made on first use (options count only then). */
export function codecPool(options?: CodecPoolOptions): CodecPool {
  shared ??= new CodecPool(options);
  return shared;
}

/** Stops the process-wide pool's threads (a later `codecPool()` makes a new one). */
export async function closeCodecPool(): Promise<void> {
  const pool = shared;
  shared = undefined;
  await pool?.close();
}
