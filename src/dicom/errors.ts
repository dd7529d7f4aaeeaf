/** Every way decoding or encoding DICOM can fail, as a code a caller can branch on. */
export type DicomErrorCode =
  | "NOT_DICOM"
  | "TRUNCATED"
  | "INVALID_LENGTH"
  | "INVALID_VR"
  | "INVALID_ITEM"
  | "TOO_DEEP"
  | "UNSUPPORTED_TRANSFER_SYNTAX"
  | "DEFLATE_ERROR"
  | "DEFLATE_LIMIT"
  | "INVALID_JSON"
  | "MISSING_BULK_DATA"
  | "CANNOT_ENCODE";

export class DicomError extends Error {
  override readonly name = "DicomError";
  constructor(
    readonly code: DicomErrorCode,
    /** What went wrong, without the offset. */
    readonly detail: string,
    /** Byte offset in the input where the problem was found, when there is one. */
    readonly offset?: number,
  ) {
    super(offset === undefined ? detail : `${detail} (at byte ${offset})`);
  }

  /** The same error seen from an enclosing element, e.g. "in (300A,00B0) item 3: …". */
  within(context: string): DicomError {
    return new DicomError(this.code, `${context}: ${this.detail}`, this.offset);
  }
}
