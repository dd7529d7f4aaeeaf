/**
 * The WASM codec libraries, each loaded lazily once per thread (a worker pays for the ones it
 * uses, on first use). A library that failed mid-call (an Emscripten abort, a C++ exception
 * escaping as a number, dcmjs-codecs' JS-thrown error unwinding through WASM frames) may have lost
 * memory or state: `discard` drops it and the next call loads a fresh instance.
 *
 * Typings here cover only what this layer calls (cornerstonejs/codecs embind classes,
 * dcmjs-codecs' low-level NativeCodecs/Context API; never its Transcoder: notes/libraries.md T8).
 */
import { createRequire } from "node:module";
import dcmjsCodecs from "dcmjs-codecs";
import { CodecError } from "./errors.js";

const require = createRequire(import.meta.url);

/** Emscripten embind objects live in WASM memory until deleted. */
interface Embind {
  delete(): void;
}

export interface OjFrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned: boolean;
  isUsingColorTransform?: boolean;
}

export interface HTJ2KDecoder extends Embind {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array | Uint8ClampedArray;
  decode(): void;
  getFrameInfo(): OjFrameInfo;
  getIsReversible(): boolean;
}

export interface HTJ2KEncoder extends Embind {
  getDecodedBuffer(info: OjFrameInfo): Uint8Array;
  getEncodedBuffer(): Uint8Array | Uint8ClampedArray;
  encode(): void;
  setDecompositions(n: number): void;
  setQuality(lossless: boolean, quantizationStep: number): void;
  setProgressionOrder(order: number): void;
  setTLMMarker(on: boolean): void;
  setTilePartDivisionsAtResolutions(on: boolean): void;
  setTilePartDivisionsAtComponents(on: boolean): void;
  setBlockDimensions(size: { width: number; height: number }): void;
}

export interface OpenJphModule {
  HTJ2KDecoder: new () => HTJ2KDecoder;
  HTJ2KEncoder: new () => HTJ2KEncoder;
  getVersion(): string;
}

export interface J2KDecoder extends Embind {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array | Uint8ClampedArray;
  decode(): void;
  getFrameInfo(): OjFrameInfo;
  getColorSpace(): number;
}

export interface J2KEncoder extends Embind {
  getDecodedBuffer(info: OjFrameInfo): Uint8Array;
  getEncodedBuffer(): Uint8Array | Uint8ClampedArray;
  encode(): void;
  setDecompositions(n: number): void;
  setQuality(lossless: boolean, layers: number): void;
  setCompressionRatio(layer: number, ratio: number): void;
  setProgressionOrder(order: number): void;
}

export interface OpenJpegModule {
  J2KDecoder: new () => J2KDecoder;
  J2KEncoder: new () => J2KEncoder;
}

export interface JpegLSDecoder extends Embind {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array | Uint8ClampedArray;
  decode(): void;
  getFrameInfo(): OjFrameInfo;
  getInterleaveMode(): number;
  getNearLossless(): number;
}

export interface JpegLSEncoder extends Embind {
  getDecodedBuffer(info: OjFrameInfo): Uint8Array;
  getEncodedBuffer(): Uint8Array | Uint8ClampedArray;
  setNearLossless(near: number): void;
  setInterleaveMode(mode: number): void;
  encode(): void;
}

export interface CharlsModule {
  JpegLSDecoder: new () => JpegLSDecoder;
  JpegLSEncoder: new () => JpegLSEncoder;
}

export interface TurboJpegDecoder extends Embind {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array | Uint8ClampedArray;
  decode(): void;
  getFrameInfo(): OjFrameInfo;
}

export interface TurboJpegEncoder extends Embind {
  getDecodedBuffer(info: OjFrameInfo): Uint8Array;
  getEncodedBuffer(): Uint8Array | Uint8ClampedArray;
  encode(): void;
  setProgressive(on: number): void;
  setQuality(quality: number): void;
  /** TurboJPEG TJSAMP_*: 0 4:4:4, 1 4:2:2, 2 4:2:0. */
  setSubSampling(subsampling: number): void;
}

export interface TurboJpegModule {
  JPEGDecoder: new () => TurboJpegDecoder;
  JPEGEncoder: new () => TurboJpegEncoder;
}

export interface DcmjsContextAttributes {
  width: number;
  height: number;
  bitsAllocated: number;
  bitsStored: number;
  samplesPerPixel: number;
  pixelRepresentation: number;
  planarConfiguration: number;
  photometricInterpretation: string;
  encodedBuffer?: Uint8Array;
  decodedBuffer?: Uint8Array;
}

export type DcmjsCodecs = Pick<typeof dcmjsCodecs, "NativeCodecs" | "Context">;

/** Messages the Emscripten modules printed (openjpeg reports its failures only this way: T17). */
export const printed: string[] = [];
const keep = (text: string): void => {
  if (printed.length < 64) printed.push(text);
};
const hooks = { print: keep, printErr: keep };

type Factory<T> = (options: typeof hooks) => Promise<T>;

class Lazy<T> {
  private pending?: Promise<T>;
  private failures = 0;
  /** Counts a failure of the current instance; returns the count. */
  failed(): number {
    return ++this.failures;
  }
  constructor(private readonly load: () => Promise<T>) {}
  get(): Promise<T> {
    if (!this.pending) {
      const p = this.load();
      this.pending = p;
      p.catch(() => {
        if (this.pending === p) this.pending = undefined;
      });
    }
    return this.pending;
  }
  discard(): void {
    this.pending = undefined;
    this.failures = 0;
  }
}

const emscripten = <T>(id: string) => new Lazy<T>(() => (require(id) as Factory<T>)({ ...hooks }));

export const openjph = emscripten<OpenJphModule>("@cornerstonejs/codec-openjph/wasmjs");
export const openjpeg = emscripten<OpenJpegModule>("@cornerstonejs/codec-openjpeg/wasmjs");
export const charls = emscripten<CharlsModule>("@cornerstonejs/codec-charls/wasmjs");
export const turbojpeg = emscripten<TurboJpegModule>("@cornerstonejs/codec-libjpeg-turbo-8bit/wasmjs");

/** dcmjs-codecs keeps its instance in a static: one per thread, re-created after a failure. */
export const dcmjs = new Lazy<DcmjsCodecs>(async () => {
  const { NativeCodecs, Context, log } = dcmjsCodecs;
  // Its WASM writes diagnostics through loglevel; failures arrive as thrown Errors anyway.
  log.setLevel("silent");
  NativeCodecs.release();
  await NativeCodecs.initializeAsync();
  return { NativeCodecs, Context };
});

/** Failures inside a library before its instance is replaced (each may leak what the failed call allocated). */
const FAILURES_BEFORE_RELOAD = 16;

/**
 * Runs `fn` with a loaded library. When the library itself failed (an error that is not one of
 * our own checks), the instance is replaced: at once after a WASM trap or abort (the instance is
 * unusable), else after a few failures (each one may have leaked memory the unwound C++ or
 * dcmjs-codecs frames held).
 */
export async function withLibrary<T, R>(lib: Lazy<T>, fn: (module: T) => R): Promise<R> {
  const module = await lib.get();
  try {
    return fn(module);
  } catch (e) {
    const ours = e instanceof CodecError && e.cause === undefined;
    const trap = (x: unknown): boolean => x instanceof Error && x.name === "RuntimeError"; // WebAssembly.RuntimeError: trap or abort
    const fatal = trap(e) || (e instanceof CodecError && trap(e.cause));
    if (fatal || (!ours && lib.failed() >= FAILURES_BEFORE_RELOAD)) lib.discard();
    throw e;
  }
}

/** Deletes an embind object even when the call that used it threw. */
export function using<T extends Embind, R>(object: T, fn: (o: T) => R): R {
  try {
    return fn(object);
  } finally {
    try {
      object.delete();
    } catch {
      // an aborted module cannot free anything; it is discarded by withLibrary
    }
  }
}

/**
 * Bytes handed out by an embind getter, as an array this thread owns: the cornerstone builds return
 * either a fresh Uint8ClampedArray (already a copy: wrapped, not copied) or a Uint8Array view of
 * WASM memory (copied, since the next call or `delete` reuses that memory).
 */
export function fromWasm(view: Uint8Array | Uint8ClampedArray): Uint8Array {
  if (view instanceof Uint8ClampedArray) return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  return view.slice();
}
