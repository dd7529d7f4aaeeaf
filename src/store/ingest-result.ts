/** What ingesting one instance produced: the STOW response and the import summary are built from it. */

/** PS3.18 Table 10.5.3-2 / PS3.4 Annex GG failure reasons, as used in the STOW response. */
export const FailureReason = {
  /** 0110 Processing failure. */
  processingFailure: 0x0110,
  /** 0111 Duplicate SOP instance (rejected by the duplicate policy). */
  duplicateSopInstance: 0x0111,
  /** 0124 Refused: not authorized (the caller's grant does not cover this patient or study). */
  notAuthorized: 0x0124,
  /** 0122 SOP class not supported. */
  sopClassNotSupported: 0x0122,
  /** A700 Out of resources. */
  outOfResources: 0xa700,
  /** A900 Data set does not match SOP class. */
  datasetDoesNotMatchSopClass: 0xa900,
  /** C000 Cannot understand. */
  cannotUnderstand: 0xc000,
  /** C122 Referenced transfer syntax not supported. */
  transferSyntaxNotSupported: 0xc122,
  /** C409: the instance does not belong to the study named in the request URL (as dcm4chee-arc reports it). */
  studyInstanceUidMismatch: 0xc409,
} as const;

/** PS3.18 Table 10.5.3-1 warning reasons. */
export const WarningReason = {
  /** B000 Coercion of data elements. */
  coercionOfDataElements: 0xb000,
  /** B006 Elements discarded. */
  elementsDiscarded: 0xb006,
  /** B007 Data set does not match SOP class. */
  datasetDoesNotMatchSopClass: 0xb007,
} as const;

export type IngestStatus = "stored" | "identical" | "ignored" | "overwritten";

export type IngestResult =
  | {
      ok: true;
      status: IngestStatus;
      studyUid: string;
      seriesUid: string;
      sopUid: string;
      sopClassUid: string;
      /** Human-readable warnings (coercions, unknown attributes); a warning code goes with them. */
      warnings: string[];
      warningReason?: number;
    }
  | {
      ok: false;
      /** Failure reason code (FailureReason). */
      failureReason: number;
      /** What went wrong and what to do, for a person. */
      reason: string;
      /** Known when the header could be read. */
      sopUid?: string;
      sopClassUid?: string;
      studyUid?: string;
    };
