/** How pixel decoding or encoding can fail, as a code a caller (WADO) can branch on. */
export type CodecErrorCode =
  /** The transfer syntax, or this pixel format in it, is not supported: a 406 / "not acceptable" for WADO. */
  | "UNSUPPORTED"
  /** The frame's bytes do not decode (corrupt or truncated codestream). */
  | "CORRUPT"
  /** The frame description and the bytes disagree (sizes, sample counts). */
  | "MISMATCH"
  /** A pool task ran past its time limit (its worker was stopped). */
  | "TIMEOUT";

export class CodecError extends Error {
  override readonly name = "CodecError";
  constructor(
    readonly code: CodecErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** WASM codecs throw strings, numbers (exception pointers) or Errors: always an Error with a message. */
export function asCodecError(e: unknown, what: string, code: CodecErrorCode = "CORRUPT"): CodecError {
  if (e instanceof CodecError) return e;
  const text = e instanceof Error ? e.message : typeof e === "number" ? `WASM exception ${e}` : String(e);
  return new CodecError(code, `${what}: ${text}`, { cause: e });
}

/** Structured clone (worker threads) keeps an Error's message only: a CodecError's code travels in it, after this mark. */
export const CODEC_ERROR_MARK = "CodecError:";
