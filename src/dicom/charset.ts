/**
 * Decoding of character strings to Unicode according to Specific Character Set (0008,0005):
 * PS3.5 §6.1 and PS3.3 C.12.1.1.2, including ISO 2022 code extensions (PS3.5 §6.1.2.5).
 *
 * Model: the 7-bit half of a byte (GL) shows the G0 set, the 8-bit half (GR) the G1 set. Value 1
 * of (0008,0005) sets the initial G1 (G0 starts as ASCII, or JIS X 0201 romaji for IR 13, which
 * we read as ASCII so that 0x5C stays the backslash delimiter). Escape sequences re-designate G0
 * (ASCII, JIS X 0208, JIS X 0212) or G1 (an ISO 8859 upper half, JIS X 0201 katakana, KS X 1001,
 * GB 2312). Delimiters return to the initial state.
 */
import { isAscii } from "node:buffer";
import { TextDecoder } from "node:util";

const ESC = 0x1b;

/** Decodes bytes[start, end) where GL is ASCII and GR is one character set. */
type Decode = (bytes: Uint8Array, start: number, end: number) => string;

/** Spread in chunks: an argument list of a whole LT/UT could overflow the stack. */
const CHUNK = 8192;
function fromCodes(codes: Uint8Array | Uint16Array): string {
  let out = "";
  for (let i = 0; i < codes.length; i += CHUNK) out += String.fromCharCode(...codes.subarray(i, i + CHUNK));
  return out;
}

/**
 * ISO 8859-1 by hand: WHATWG maps the "latin1" label to windows-1252, and every byte must stay
 * its own code point so that nothing is lost for unknown or default-repertoire text.
 */
const latin1: Decode = (bytes, start, end) => fromCodes(bytes.subarray(start, end));

/** A WHATWG decoder, created on first use (most servers never see most of these). */
function textDecoder(label: string): Decode {
  let decoder: TextDecoder | undefined;
  return (bytes, start, end) => {
    decoder ??= new TextDecoder(label);
    return decoder.decode(bytes.subarray(start, end));
  };
}

/**
 * A single-byte set through a 256-entry table taken from WHATWG's upper half. 0x00-0x9F are
 * ASCII and C1 controls in every ISO 8859 part (WHATWG maps e.g. iso-8859-9 to windows-1254,
 * which puts other characters in 0x80-0x9F).
 */
function singleByte(label: string): Decode {
  let table: Uint16Array | undefined;
  return (bytes, start, end) => {
    if (table === undefined) {
      const upper = new TextDecoder(label).decode(Uint8Array.from({ length: 0x60 }, (_, k) => 0xa0 + k));
      table = Uint16Array.from({ length: 0x100 }, (_, b) => (b < 0xa0 ? b : upper.charCodeAt(b - 0xa0)));
    }
    const codes = new Uint16Array(end - start);
    for (let i = start; i < end; i++) codes[i - start] = table[bytes[i] as number] as number;
    return fromCodes(codes);
  };
}

const utf8 = new TextDecoder();
const eucJp = textDecoder("euc-jp");
const LATIN2 = singleByte("iso-8859-2");
const LATIN3 = singleByte("iso-8859-3");
const LATIN4 = singleByte("iso-8859-4");
const CYRILLIC = singleByte("iso-8859-5");
const ARABIC = singleByte("iso-8859-6");
const GREEK = singleByte("iso-8859-7");
const HEBREW = singleByte("iso-8859-8");
const LATIN5 = singleByte("iso-8859-9");
const LATIN9 = singleByte("iso-8859-15");
// TIS 620 plus NBSP at 0xA0; the table keeps 0x80-0x9F as C1 controls.
const THAI = singleByte("windows-874");
// JIS X 0201: Shift_JIS has ASCII below 0x80 and the half-width katakana at 0xA1-0xDF; it also
// reads the Shift_JIS text that some modalities label ISO_IR 13 (pydicom does the same).
const KATAKANA = textDecoder("shift_jis");
// KS X 1001 and GB 2312 invoked in GR are exactly EUC-KR and EUC-CN (GBK is a superset).
const KOREAN = textDecoder("euc-kr");
const GB2312 = textDecoder("gbk");

interface CharacterSet {
  /** Initial G1, or for a stand-alone set the decoder of the whole value. */
  decode: Decode;
  /** UTF-8, GB18030 and GBK allow no code extensions (PS3.3 Table C.12-5). */
  standAlone: boolean;
}

const set = (decode: Decode, standAlone = false): CharacterSet => ({ decode, standAlone });
const ASCII_SET = set(latin1);

/** Defined terms (PS3.3 Tables C.12-2 to C.12-5). JIS X 0208/0212 are G0 sets: no initial G1. */
const TERMS: ReadonlyMap<string, CharacterSet> = new Map<string, CharacterSet>([
  ["", ASCII_SET],
  ["ISO_IR 6", ASCII_SET],
  ["ISO 2022 IR 6", ASCII_SET],
  ...(
    [
      ["100", set(latin1)],
      ["101", set(LATIN2)],
      ["109", set(LATIN3)],
      ["110", set(LATIN4)],
      ["144", set(CYRILLIC)],
      ["127", set(ARABIC)],
      ["126", set(GREEK)],
      ["138", set(HEBREW)],
      ["148", set(LATIN5)],
      ["203", set(LATIN9)],
      ["166", set(THAI)],
      ["13", set(KATAKANA)],
    ] as const
  ).flatMap(([ir, cs]): [string, CharacterSet][] => [
    [`ISO_IR ${ir}`, cs],
    [`ISO 2022 IR ${ir}`, cs],
  ]),
  ["ISO 2022 IR 87", ASCII_SET],
  ["ISO 2022 IR 159", ASCII_SET],
  ["ISO 2022 IR 149", set(KOREAN)],
  ["ISO 2022 IR 58", set(GB2312)],
  ["ISO_IR 192", set((bytes, start, end) => utf8.decode(bytes.subarray(start, end)), true)],
  ["GB18030", set(textDecoder("gb18030"), true)],
  ["GBK", set(textDecoder("gbk"), true)],
]);

/** Looks a term up, tolerating the common misspellings pydicom also accepts ("ISO IR 100"). */
function lookup(term: string): CharacterSet {
  const found = TERMS.get(term);
  if (found !== undefined) return found;
  const single = /^ISO[ _-]?IR[ _-]?(\d+)$/i.exec(term);
  const extended = /^ISO[ _-]?2022[ _-]?IR[ _-]?(\d+)$/i.exec(term);
  const fixed = single ? `ISO_IR ${single[1]}` : extended ? `ISO 2022 IR ${extended[1]}` : undefined;
  // Unknown: the default repertoire, read as latin1 so that no byte is lost.
  return (fixed !== undefined ? TERMS.get(fixed) : undefined) ?? ASCII_SET;
}

type G0 = "ascii" | "jisX0208" | "jisX0212";
interface Designation {
  g0?: G0;
  g1?: Decode;
}

/** Escape sequences (the bytes after ESC) of PS3.3 Tables C.12-3 and C.12-4. */
const ESCAPES: ReadonlyMap<string, Designation> = new Map<string, Designation>([
  ["(B", { g0: "ascii" }],
  ["(J", { g0: "ascii" }], // JIS X 0201 romaji: ASCII but for ¥ and ‾, kept as \ and ~
  ["$B", { g0: "jisX0208" }],
  ["$@", { g0: "jisX0208" }], // JIS C 6226-1978, the older designation of the same set
  ["$(D", { g0: "jisX0212" }],
  ["-A", { g1: latin1 }],
  ["-B", { g1: LATIN2 }],
  ["-C", { g1: LATIN3 }],
  ["-D", { g1: LATIN4 }],
  ["-F", { g1: GREEK }],
  ["-G", { g1: ARABIC }],
  ["-H", { g1: HEBREW }],
  ["-L", { g1: CYRILLIC }],
  ["-M", { g1: LATIN5 }],
  ["-T", { g1: THAI }],
  ["-b", { g1: LATIN9 }],
  [")I", { g1: KATAKANA }],
  ["$)C", { g1: KOREAN }],
  ["$)A", { g1: GB2312 }],
]);

/** Reads the escape sequence at bytes[at] (ESC, intermediates 0x20-0x2F, a final byte). */
function readEscape(bytes: Uint8Array, at: number): [Designation, number] | undefined {
  let key = "";
  for (let i = at + 1; i < bytes.length && i <= at + 4; i++) {
    const b = bytes[i] as number;
    key += String.fromCharCode(b);
    if (b >= 0x30 && b <= 0x7e) {
      const designation = ESCAPES.get(key);
      return designation && [designation, i + 1 - at];
    }
    if (b < 0x20 || b > 0x2f) return undefined;
  }
  return undefined;
}

const isGraphicGL = (b: number): boolean => b >= 0x21 && b <= 0x7e;

/**
 * Decodes a run in one state. A multi-byte G0 (JIS X 0208/0212) is 7-bit pairs; they become
 * EUC-JP by setting the high bit, with the 0x8F prefix for JIS X 0212. Controls and space in
 * between, and GR bytes, belong to G1.
 */
function decodeRun(bytes: Uint8Array, start: number, end: number, g0: G0, g1: Decode): string {
  if (g0 === "ascii") return g1(bytes, start, end);
  let out = "";
  for (let i = start; i < end;) {
    let j = i;
    if (isGraphicGL(bytes[i] as number)) {
      while (j < end && isGraphicGL(bytes[j] as number)) j++;
      const euc: number[] = [];
      for (let k = i; k < j; k++) {
        if (g0 === "jisX0212" && (k - i) % 2 === 0) euc.push(0x8f);
        euc.push((bytes[k] as number) | 0x80);
      }
      out += eucJp(Uint8Array.from(euc), 0, euc.length);
    } else {
      while (j < end && !isGraphicGL(bytes[j] as number)) j++;
      out += g1(bytes, i, j);
    }
    i = j;
  }
  return out;
}

const delimiters = (chars: string): Uint8Array => {
  const table = new Uint8Array(0x80);
  for (const c of chars) table[c.charCodeAt(0)] = 1;
  return table;
};
/** Where the initial set is active again (PS3.5 §6.1.2.5.3): line ends, FF, TAB, and the delimiters. */
const CONTROLS = "\t\n\f\r";
const PN_DELIMITERS = delimiters(`${CONTROLS}\\^=`);
const MULTI_VALUED_DELIMITERS = delimiters(`${CONTROLS}\\`);
// LT, ST and UT hold one value: a backslash there is text, not a delimiter.
const SINGLE_VALUED_DELIMITERS = delimiters(CONTROLS);

/** ISO 2022 code extensions: split at escapes, back to the initial state after each delimiter. */
function decodeExtended(bytes: Uint8Array, initial: Decode, delims: Uint8Array): string {
  let g0: G0 = "ascii";
  let g1 = initial;
  let out = "";
  let start = 0;
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i] as number;
    if (b === ESC) {
      const sequence = readEscape(bytes, i);
      if (sequence !== undefined) {
        out += decodeRun(bytes, start, i, g0, g1);
        const [designation, length] = sequence;
        g0 = designation.g0 ?? g0;
        g1 = designation.g1 ?? g1;
        i += length;
        start = i;
        continue;
      }
      // An unknown escape stays in the text as U+001B and what follows.
    } else if (delims[b] === 1 && (g0 === "ascii" || b < 0x21)) {
      // Under a two-byte G0, 0x3D, 0x5C and 0x5E are halves of characters: the writer must have
      // gone back to the initial set before any delimiter (PS3.5 §6.1.2.5.3).
      out += decodeRun(bytes, start, i + 1, g0, g1);
      g0 = "ascii";
      g1 = initial;
      start = i + 1;
    }
    i++;
  }
  return out + decodeRun(bytes, start, bytes.length, g0, g1);
}

/** VRs whose value is subject to Specific Character Set (PS3.5 §6.1.2.3). */
const TEXT_VR_DELIMITERS: ReadonlyMap<string, Uint8Array> = new Map([
  ["PN", PN_DELIMITERS],
  ["SH", MULTI_VALUED_DELIMITERS],
  ["LO", MULTI_VALUED_DELIMITERS],
  ["UC", MULTI_VALUED_DELIMITERS],
  ["ST", SINGLE_VALUED_DELIMITERS],
  ["LT", SINGLE_VALUED_DELIMITERS],
  ["UT", SINGLE_VALUED_DELIMITERS],
]);

/** Below this length a JS loop beats the two native calls. */
const NATIVE_SCAN = 256;

/** Decodes the raw bytes of one element value (all values, backslashes included) to a JS string. */
export function decodeText(bytes: Uint8Array, charsets: readonly string[], vr: string): string {
  // Fast path: ASCII without escapes reads the same in every character set.
  const n = bytes.length;
  let i = 0;
  if (n > NATIVE_SCAN) {
    if (isAscii(bytes) && bytes.indexOf(ESC) < 0) return utf8.decode(bytes);
  } else {
    while (i < n && (bytes[i] as number) < 0x80 && bytes[i] !== ESC) i++;
    if (i === n) return utf8.decode(bytes);
  }
  const delims = TEXT_VR_DELIMITERS.get(vr);
  if (delims === undefined) return latin1(bytes, 0, n);
  const first = lookup(charsets[0] ?? "");
  if (first.standAlone || bytes.indexOf(ESC, i) < 0) return first.decode(bytes, 0, n);
  return decodeExtended(bytes, first.decode, delims);
}

/**
 * Normalizes the values of (0008,0005) as found in a dataset (trims spaces, handles an empty
 * first value meaning default repertoire). An empty list stays empty (default repertoire).
 */
export function parseSpecificCharacterSet(values: readonly string[]): string[] {
  const terms = values.flatMap((value) => value.split("\\")).map((term) => term.trim());
  if (terms.length === 0) return [];
  const [first = "", ...extensions] = terms;
  const rest = extensions.filter((term) => term !== "");
  // PS3.3 C.12.1.1.2: an empty value 1 is the default repertoire, ISO 2022 IR 6 when extended.
  return [first !== "" ? first : rest.length > 0 ? "ISO 2022 IR 6" : "ISO_IR 6", ...rest];
}

/** True for a defined term known here; callers warn on others (misspellings like "ISO IR 100" still decode, the rest as latin1). */
export function isKnownCharset(term: string): boolean {
  return TERMS.has(term);
}
