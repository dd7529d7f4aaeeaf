/** Value Representations (PS3.5 §6.2). */
export const VRS = [
  "AE",
  "AS",
  "AT",
  "CS",
  "DA",
  "DS",
  "DT",
  "FD",
  "FL",
  "IS",
  "LO",
  "LT",
  "OB",
  "OD",
  "OF",
  "OL",
  "OV",
  "OW",
  "PN",
  "SH",
  "SL",
  "SQ",
  "SS",
  "ST",
  "SV",
  "TM",
  "UC",
  "UI",
  "UL",
  "UN",
  "UR",
  "US",
  "UT",
  "UV",
] as const;
export type Vr = (typeof VRS)[number];

const VR_SET: ReadonlySet<string> = new Set(VRS);
export const isVr = (text: string): text is Vr => VR_SET.has(text);

/** Explicit VR encodings whose length field is 32-bit after two reserved bytes (PS3.5 Table 7.1-1). */
const LONG_LENGTH: ReadonlySet<Vr> = new Set<Vr>(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
export const hasLongLength = (vr: Vr): boolean => LONG_LENGTH.has(vr);

/** Values that are bytes, written in DICOM JSON as InlineBinary or BulkDataURI. */
const BINARY: ReadonlySet<Vr> = new Set<Vr>(["OB", "OD", "OF", "OL", "OV", "OW", "UN"]);
export const isBinaryVr = (vr: Vr): boolean => BINARY.has(vr);

/** Character string VRs; their padding is a trailing space (UI: NUL). */
const STRING: ReadonlySet<Vr> = new Set<Vr>([
  "AE",
  "AS",
  "CS",
  "DA",
  "DS",
  "DT",
  "IS",
  "LO",
  "LT",
  "PN",
  "SH",
  "ST",
  "TM",
  "UC",
  "UI",
  "UR",
  "UT",
]);
export const isStringVr = (vr: Vr): boolean => STRING.has(vr);

/** String VRs whose bytes are subject to Specific Character Set (PS3.5 §6.1.2.3); the rest are always ASCII. */
const TEXT: ReadonlySet<Vr> = new Set<Vr>(["LO", "LT", "PN", "SH", "ST", "UC", "UT"]);
export const usesCharacterSet = (vr: Vr): boolean => TEXT.has(vr);

/** String VRs that hold one value only: backslash is a normal character there. */
const SINGLE_VALUED: ReadonlySet<Vr> = new Set<Vr>(["LT", "ST", "UT", "UR"]);
export const isSingleValuedString = (vr: Vr): boolean => SINGLE_VALUED.has(vr);

/** Binary numeric VRs and the byte size of one value. */
const NUMBER_SIZE: Partial<Record<Vr, number>> = { AT: 4, FD: 8, FL: 4, SL: 4, SS: 2, SV: 8, UL: 4, US: 2, UV: 8 };
export const numberSize = (vr: Vr): number | undefined => NUMBER_SIZE[vr];

/** Byte size of the unit that must be swapped when changing endianness (1 = none). */
const SWAP_SIZE: Partial<Record<Vr, number>> = {
  AT: 2,
  FD: 8,
  FL: 4,
  OD: 8,
  OF: 4,
  OL: 4,
  OV: 8,
  OW: 2,
  SL: 4,
  SS: 2,
  SV: 8,
  UL: 4,
  US: 2,
  UV: 8,
};
export const swapUnit = (vr: Vr): number => SWAP_SIZE[vr] ?? 1;

export const paddingByte = (vr: Vr): number => (vr === "UI" ? 0x00 : isStringVr(vr) ? 0x20 : 0x00);
