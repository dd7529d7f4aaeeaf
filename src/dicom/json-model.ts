/** Types of the DICOM JSON Model (PS3.18 Annex F). */
import type { Vr } from "./vr.js";

/** A Person Name value: one object per value, with its component groups (PS3.18 F.2.2). */
export interface PersonNameJson {
  Alphabetic?: string;
  Ideographic?: string;
  Phonetic?: string;
}

export type JsonValue = string | number | PersonNameJson | DicomJsonDataset | null;

/** One attribute. At most one of Value, InlineBinary, BulkDataURI is present; none for an empty value. */
export interface DicomJsonAttribute {
  vr: Vr;
  Value?: JsonValue[];
  InlineBinary?: string;
  BulkDataURI?: string;
}

/** A dataset: keys are 8 upper-case hex digits ("0020000D"), in ascending tag order. */
export type DicomJsonDataset = { [tag: string]: DicomJsonAttribute };
