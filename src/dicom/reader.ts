/**
 * Part 10 and bare dataset reader (PS3.10 §7, PS3.5 §7).
 *
 * Written here rather than taken from dicom-parser because a server needs what that library does
 * not give: a partial dataset plus a typed error on truncated or malformed input (it throws and
 * loses everything), files without preamble or file meta, per-dataset detection of a VR encoding
 * that contradicts the transfer syntax, bounded inflation of deflated files, UN re-interpretation
 * and a nesting limit. Values are never copied: elements keep views of the input.
 */
import { inflateRawSync } from "node:zlib";
import { Dataset, type Element, type EncapsulatedPixelData, type Fragment, latin1Trim } from "./dataset.js";
import { lookupPrivateTag, lookupTag } from "./dictionary.js";
import { DicomError } from "./errors.js";
import { isPrivateCreatorTag, isPrivateTag, type Tag, Tags, tagElement, tagGroup, tagToHex } from "./tag.js";
import { lookupTransferSyntax, type TransferSyntax, TransferSyntaxUids } from "./transfer-syntax.js";
import { hasLongLength, isVr, type Vr } from "./vr.js";

export interface ReadOptions {
  /** Stop before the first top-level element whose tag is ≥ this one (e.g. PixelData for a header read). */
  untilTag?: Tag;
  /** Deepest sequence nesting accepted (hostile input guard). Default 64, at most 1000. */
  maxDepth?: number;
  /** Largest inflated size of a deflated dataset (deflate-bomb guard). Default 1 GiB. */
  maxInflatedBytes?: number;
}

export interface ReadResult {
  /** File meta information (group 0002); empty for a bare dataset or a legacy file without it. */
  meta: Dataset;
  dataset: Dataset;
  /** The transfer syntax the dataset was encoded with (declared, or detected when absent). */
  transferSyntaxUid: string;
  /** True when the input had the 128-byte preamble and "DICM". */
  hasPreamble: boolean;
  /** Set when the input could not be read to its end: `dataset` holds what was read before. */
  error?: DicomError;
  /** Things that were tolerated: say what was odd about the input. */
  warnings: string[];
  /** The buffer the dataset's element positions refer to (the inflated one for deflated files). */
  source: Uint8Array;
}

const UNDEFINED_LENGTH = 0xffffffff;
/** Each nesting level costs a few stack frames: stay well inside Node's default stack. */
const MAX_DEPTH = 1000;

/** Reads a Part 10 file, a file without preamble/meta, or a bare dataset (detected from its first bytes). */
export function readDicom(input: Uint8Array, options: ReadOptions = {}): ReadResult {
  const warnings: string[] = [];
  const meta = new Dataset(true);
  let pos = 0;
  let hasPreamble = false;
  if (input.length >= 132 && isDicmAt(input, 128)) {
    hasPreamble = true;
    pos = 132;
  } else if (isDicmAt(input, 0)) {
    warnings.push("no 128-byte preamble before DICM");
    pos = 4;
  }
  let metaError: DicomError | undefined;
  if (input.length >= pos + 6 && readU16(input, pos, true) === 0x0002) {
    try {
      pos = readMeta(input, pos, meta, warnings);
    } catch (e) {
      metaError = asDicomError(e);
    }
  } else if (hasPreamble) {
    warnings.push("file meta information is missing");
  }
  const declared = meta.get(Tags.TransferSyntaxUID)?.bytes;
  let syntax: TransferSyntax;
  let transferSyntaxUid: string;
  if (declared) {
    transferSyntaxUid = latin1Trim(declared);
    const known = lookupTransferSyntax(transferSyntaxUid);
    if (known) syntax = known;
    else {
      // Every transfer syntax not defined as native is explicit VR LE with encapsulated pixel data (PS3.5 §10).
      warnings.push(`unknown transfer syntax ${transferSyntaxUid}: read as explicit VR little endian, encapsulated`);
      syntax = { uid: transferSyntaxUid, name: "unknown", explicitVr: true, littleEndian: true, deflated: false, encapsulated: true };
    }
  } else {
    syntax = detectSyntax(input, pos);
    transferSyntaxUid = syntax.uid;
    if (pos > 0 || meta.size > 0) warnings.push(`no transfer syntax in file meta; detected ${syntax.name}`);
  }

  let source = input;
  const dataset = new Dataset(syntax.littleEndian);
  const result: ReadResult = { meta, dataset, transferSyntaxUid, hasPreamble, warnings, source };
  if (metaError) {
    result.error = metaError;
    return result;
  }
  if (pos === 0 && meta.size === 0 && input.length < 8) {
    result.error = new DicomError("NOT_DICOM", "input is too short to be a DICOM dataset", 0);
    return result;
  }
  if (syntax.deflated) {
    try {
      source = inflateRawSync(input.subarray(pos), { maxOutputLength: options.maxInflatedBytes ?? 1 << 30 });
    } catch (e) {
      const limit = (e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE";
      result.error = limit
        ? new DicomError("DEFLATE_LIMIT", "deflated dataset inflates beyond the allowed size", pos)
        : new DicomError("DEFLATE_ERROR", `deflated dataset cannot be inflated: ${(e as Error).message}`, pos);
      return result;
    }
    result.source = source;
    pos = 0;
  }
  const reader = new Reader(source, options, warnings);
  try {
    reader.readDataset(dataset, pos, source.length, syntax.explicitVr, 0, false, options.untilTag);
  } catch (e) {
    result.error = asDicomError(e);
  }
  return result;
}

/** Like readDicom but throws the error instead of returning a partial dataset. */
export function readDicomStrict(input: Uint8Array, options: ReadOptions = {}): ReadResult {
  const result = readDicom(input, options);
  if (result.error) throw result.error;
  return result;
}

function asDicomError(e: unknown): DicomError {
  if (e instanceof DicomError) return e;
  // Nesting deeper than the JS stack allows, when a caller raised maxDepth above MAX_DEPTH's worth of stack.
  if (e instanceof RangeError && /call stack/i.test(e.message)) return new DicomError("TOO_DEEP", "sequences nest too deeply to read");
  throw e;
}

const isDicmAt = (b: Uint8Array, at: number): boolean => b[at] === 0x44 && b[at + 1] === 0x49 && b[at + 2] === 0x43 && b[at + 3] === 0x4d;

const readU16 = (b: Uint8Array, at: number, le: boolean): number =>
  le ? (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) : ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);

const readU32 = (b: Uint8Array, at: number, le: boolean): number =>
  le
    ? ((b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) | ((b[at + 2] ?? 0) << 16) | ((b[at + 3] ?? 0) << 24)) >>> 0
    : (((b[at] ?? 0) << 24) | ((b[at + 1] ?? 0) << 16) | ((b[at + 2] ?? 0) << 8) | (b[at + 3] ?? 0)) >>> 0;

/** Two bytes that form a VR name (upper-case letters of a defined VR). */
const vrAt = (b: Uint8Array, at: number): Vr | undefined => {
  const c0 = b[at];
  const c1 = b[at + 1];
  if (c0 === undefined || c1 === undefined || c0 < 0x41 || c0 > 0x5a || c1 < 0x41 || c1 > 0x5a) return undefined;
  const vr = String.fromCharCode(c0, c1);
  return isVr(vr) ? vr : undefined;
};

/** Reads group 0002 (always explicit VR little endian; tolerates implicit VR and a missing group length). */
function readMeta(b: Uint8Array, start: number, meta: Dataset, warnings: string[]): number {
  const explicit = vrAt(b, start + 4) !== undefined;
  if (!explicit) warnings.push("file meta information is encoded in implicit VR");
  let pos = start;
  let end = b.length;
  while (pos + 8 <= end && readU16(b, pos, true) === 0x0002) {
    const tag = readU32Tag(b, pos, true);
    let vr: Vr;
    let length: number;
    let valueAt: number;
    if (explicit) {
      vr = vrAt(b, pos + 4) ?? "UN";
      if (hasLongLength(vr)) {
        length = readU32(b, pos + 8, true);
        valueAt = pos + 12;
      } else {
        length = readU16(b, pos + 6, true);
        valueAt = pos + 8;
      }
    } else {
      const entry = lookupTag(tag);
      vr = entry && isVr(entry.vr) ? entry.vr : "UN";
      length = readU32(b, pos + 4, true);
      valueAt = pos + 8;
    }
    if (length === UNDEFINED_LENGTH || valueAt + length > b.length) {
      throw new DicomError("TRUNCATED", `file meta element (${tagToHex(tag)}) runs past the end of the input`, pos);
    }
    meta.set({ tag, vr, bytes: b.subarray(valueAt, valueAt + length), position: valueAt });
    pos = valueAt + length;
    if (tag === Tags.FileMetaInformationGroupLength && length === 4) {
      end = Math.min(b.length, pos + readU32(b, valueAt, true));
    }
  }
  if (!meta.has(Tags.FileMetaInformationGroupLength)) warnings.push("file meta information has no group length");
  return pos;
}

const readU32Tag = (b: Uint8Array, at: number, le: boolean): Tag => ((readU16(b, at, le) << 16) | readU16(b, at + 2, le)) >>> 0;

/** Guesses the encoding of a dataset that has no declared transfer syntax, from its first element. */
function detectSyntax(b: Uint8Array, at: number): TransferSyntax {
  const groupLe = readU16(b, at, true);
  const groupBe = readU16(b, at, false);
  // Data sets start with a low group number (0008 typically): whichever byte order gives the smaller one.
  const littleEndian = groupLe <= groupBe;
  const explicit = vrAt(b, at + 4) !== undefined;
  const uid = !littleEndian
    ? TransferSyntaxUids.ExplicitVRBigEndian
    : explicit
      ? TransferSyntaxUids.ExplicitVRLittleEndian
      : TransferSyntaxUids.ImplicitVRLittleEndian;
  return lookupTransferSyntax(uid) as TransferSyntax;
}

class Reader {
  private readonly maxDepth: number;

  constructor(
    private readonly b: Uint8Array,
    options: ReadOptions,
    private readonly warnings: string[],
  ) {
    this.maxDepth = Math.min(options.maxDepth ?? 64, MAX_DEPTH);
  }

  private truncated(what: string, at: number): DicomError {
    return new DicomError("TRUNCATED", `input ends inside ${what}`, at);
  }

  /**
   * Reads elements into `ds` from `pos` until `end`, or until an item delimiter when `inItem` and
   * the item has undefined length. Returns the position after the last byte consumed.
   */
  readDataset(ds: Dataset, start: number, end: number, explicitHint: boolean, depth: number, inItem: boolean, untilTag?: Tag): number {
    const b = this.b;
    const le = ds.littleEndian;
    let pos = start;
    const explicit = this.checkExplicit(pos, end, explicitHint, le);
    while (pos < end) {
      if (pos + 8 > end) {
        // Trailing padding of fewer than 8 zero bytes is common and harmless.
        if (b.subarray(pos, end).every((x) => x === 0)) return end;
        throw this.truncated("an element header", pos);
      }
      const tag = readU32Tag(b, pos, le);
      if (tag === Tags.ItemDelimitationItem) {
        if (!inItem) this.warnings.push(`stray item delimiter at byte ${pos}`);
        return pos + 8;
      }
      if (tag === Tags.SequenceDelimitationItem) {
        // Ends the item that should have been closed first; leave it for the sequence reader.
        if (inItem) return pos;
        this.warnings.push(`stray sequence delimiter at byte ${pos}`);
        pos += 8;
        continue;
      }
      if (untilTag !== undefined && tag >= untilTag) return pos;
      const headerAt = pos;
      let vr: Vr | undefined;
      let length: number;
      if (explicit) {
        vr = vrAt(b, pos + 4);
        if (!vr) {
          throw new DicomError(
            "INVALID_VR",
            `element (${tagToHex(tag)}) has an invalid VR "${String.fromCharCode(b[pos + 4] ?? 0, b[pos + 5] ?? 0)}"`,
            pos + 4,
          );
        }
        if (hasLongLength(vr)) {
          length = readU32(b, pos + 8, le);
          pos += 12;
        } else {
          length = readU16(b, pos + 6, le);
          pos += 8;
        }
      } else {
        length = readU32(b, pos + 4, le);
        pos += 8;
        vr = this.implicitVr(ds, tag);
      }
      let element: { element: Element; next: number };
      try {
        element = this.readValue(ds, tag, vr, length, pos, end, explicit, depth, headerAt);
      } catch (e) {
        throw e instanceof DicomError ? e.within(`in (${tagToHex(tag)})`) : e;
      }
      ds.set(element.element);
      pos = element.next;
    }
    return pos;
  }

  /** pydicom-compatible guard: a dataset whose first element contradicts the declared VR encoding is read as it is. */
  private checkExplicit(pos: number, end: number, hint: boolean, le: boolean): boolean {
    if (pos + 8 > end) return hint;
    const tag = readU32Tag(this.b, pos, le);
    if (tagGroup(tag) === 0xfffe) return hint;
    const looksExplicit = vrAt(this.b, pos + 4) !== undefined;
    if (looksExplicit !== hint) {
      this.warnings.push(`dataset at byte ${pos} is encoded in ${looksExplicit ? "explicit" : "implicit"} VR, not as declared`);
    }
    return looksExplicit;
  }

  /** The VR of an element in implicit VR encoding: from the dictionary, the private dictionary, or UN. */
  private implicitVr(ds: Dataset, tag: Tag): Vr {
    if (isPrivateTag(tag)) {
      if (isPrivateCreatorTag(tag)) return "LO";
      const creator = ds.privateCreatorOf(tag);
      const entry = creator ? lookupPrivateTag(tag, creator) : undefined;
      return entry ? resolveAmbiguousVr(entry.vr, tag, ds, false) : "UN";
    }
    const entry = lookupTag(tag);
    if (!entry) return "UN";
    return resolveAmbiguousVr(entry.vr, tag, ds, false);
  }

  private readValue(
    ds: Dataset,
    tag: Tag,
    declaredVr: Vr,
    length: number,
    pos: number,
    end: number,
    explicit: boolean,
    depth: number,
    headerAt: number,
  ): { element: Element; next: number } {
    let vr = declaredVr;
    // An explicit UN whose VR is known (standard dictionary, private creator, known private
    // creator's dictionary) is re-read with that VR (PS3.5 §6.2.2 note), as pydicom does.
    let itemsExplicit = explicit;
    let itemsLittleEndian = ds.littleEndian;
    if (vr === "UN" && explicit && length !== UNDEFINED_LENGTH) {
      const known = isPrivateTag(tag) ? (ds.littleEndian ? this.implicitVr(ds, tag) : "UN") : undefined;
      if (known && known !== "UN" && known !== "SQ") vr = known;
    }
    if (vr === "UN" && !isPrivateTag(tag)) {
      const entry = lookupTag(tag);
      if (entry && entry.vr !== "UN") {
        vr = resolveAmbiguousVr(entry.vr, tag, ds, !explicit);
        if (vr === "SQ") {
          itemsExplicit = false;
          itemsLittleEndian = true;
        }
      }
    }
    if (length === UNDEFINED_LENGTH) {
      if (tag === Tags.PixelData) {
        // Encapsulated pixel data is OB whatever the file says (PS3.5 A.4).
        const { encapsulated, next } = this.readEncapsulated(pos, end, ds.littleEndian);
        return { element: { tag, vr: "OB", encapsulated, position: pos }, next };
      }
      if (vr === "SQ" || vr === "UN") {
        // Undefined-length UN holds a sequence encoded in implicit VR little endian (PS3.5 §6.2.2).
        if (vr === "UN") {
          itemsExplicit = false;
          itemsLittleEndian = true;
        }
        const { items, next } = this.readSequence(ds, pos, end, true, itemsExplicit, itemsLittleEndian, depth);
        return { element: { tag, vr: "SQ", items, position: pos }, next };
      }
      throw new DicomError("INVALID_LENGTH", `element (${tagToHex(tag)}) ${vr} has undefined length`, headerAt);
    }
    if (pos + length > end) {
      throw new DicomError(
        "TRUNCATED",
        `element (${tagToHex(tag)}) ${vr} declares ${length} bytes but only ${Math.max(0, end - pos)} remain`,
        headerAt,
      );
    }
    const valueEnd = pos + length;
    if (vr === "SQ" || (vr === "UN" && !explicit && this.startsWithItem(pos, valueEnd, ds.littleEndian))) {
      const { items } = this.readSequence(ds, pos, valueEnd, false, itemsExplicit, itemsLittleEndian, depth);
      return { element: { tag, vr: "SQ", items, position: pos }, next: valueEnd };
    }
    return { element: { tag, vr, bytes: this.b.subarray(pos, valueEnd), position: pos }, next: valueEnd };
  }

  /** A private element of unknown VR whose value is a well-formed item is a sequence (as pydicom infers). */
  private startsWithItem(pos: number, end: number, le: boolean): boolean {
    if (end - pos < 8 || readU32Tag(this.b, pos, le) !== Tags.Item) return false;
    const len = readU32(this.b, pos + 4, le);
    return len === UNDEFINED_LENGTH || pos + 8 + len <= end;
  }

  private readSequence(
    parent: Dataset,
    start: number,
    end: number,
    undefinedLength: boolean,
    explicit: boolean,
    littleEndian: boolean,
    depth: number,
  ): { items: Dataset[]; next: number } {
    if (depth >= this.maxDepth) throw new DicomError("TOO_DEEP", `sequences nest deeper than ${this.maxDepth} levels`, start);
    const b = this.b;
    const items: Dataset[] = [];
    let pos = start;
    while (pos < end) {
      if (pos + 8 > end) throw this.truncated("a sequence item header", pos);
      const tag = readU32Tag(b, pos, littleEndian);
      const length = readU32(b, pos + 4, littleEndian);
      if (tag === Tags.SequenceDelimitationItem) return { items, next: pos + 8 };
      if (tag !== Tags.Item) {
        throw new DicomError("INVALID_ITEM", `expected an item tag (FFFE,E000) in a sequence, found (${tagToHex(tag)})`, pos);
      }
      pos += 8;
      const item = new Dataset(littleEndian, parent);
      try {
        if (length === UNDEFINED_LENGTH) {
          pos = this.readDataset(item, pos, end, explicit, depth + 1, true);
        } else {
          if (pos + length > end) throw this.truncated("a sequence item", pos - 8);
          this.readDataset(item, pos, pos + length, explicit, depth + 1, true);
          pos += length;
        }
      } catch (e) {
        throw e instanceof DicomError ? e.within(`item ${items.length + 1}`) : e;
      }
      items.push(item);
    }
    if (undefinedLength) throw this.truncated("a sequence of undefined length (no sequence delimiter)", pos);
    return { items, next: pos };
  }

  /** Encapsulated pixel data: Basic Offset Table item then one item per fragment (PS3.5 A.4). */
  private readEncapsulated(start: number, end: number, le: boolean): { encapsulated: EncapsulatedPixelData; next: number } {
    const b = this.b;
    const fragments: Fragment[] = [];
    let basicOffsetTable: number[] | undefined;
    let pos = start;
    while (pos + 8 <= end) {
      const tag = readU32Tag(b, pos, le);
      const length = readU32(b, pos + 4, le);
      if (tag === Tags.SequenceDelimitationItem) {
        const encoded = b.subarray(start, pos);
        return { encapsulated: { basicOffsetTable: basicOffsetTable ?? [], fragments, encoded }, next: pos + 8 };
      }
      if (tag !== Tags.Item) {
        throw new DicomError("INVALID_ITEM", `expected a pixel data item (FFFE,E000), found (${tagToHex(tag)})`, pos);
      }
      if (length === UNDEFINED_LENGTH) throw new DicomError("INVALID_LENGTH", "pixel data fragment has undefined length", pos);
      pos += 8;
      if (pos + length > end) throw this.truncated(`pixel data fragment ${fragments.length + 1}`, pos - 8);
      if (basicOffsetTable === undefined) {
        if (length % 4 !== 0) throw new DicomError("INVALID_LENGTH", `basic offset table length ${length} is not a multiple of 4`, pos - 8);
        basicOffsetTable = [];
        for (let i = 0; i < length; i += 4) basicOffsetTable.push(readU32(b, pos + i, le));
      } else {
        fragments.push({ position: pos, bytes: b.subarray(pos, pos + length) });
      }
      pos += length;
    }
    throw this.truncated("encapsulated pixel data (no sequence delimiter)", pos);
  }
}

/**
 * Picks the VR of an element whose dictionary VR is ambiguous, the way PS3.5 §A and pydicom's
 * `correct_ambiguous_vr` do: US/SS from Pixel Representation, OB/OW from the encoding and Bits Allocated.
 */
export function resolveAmbiguousVr(vr: string, tag: Tag, ds: Dataset, implicit: boolean): Vr {
  switch (vr) {
    case "US or SS": {
      // LUT descriptors' first value is always unsigned; the others follow Pixel Representation.
      const group = tagGroup(tag);
      const el = tagElement(tag);
      if (group === 0x0028 && ((el >= 0x1101 && el <= 0x1103) || el === 0x3002)) return "US";
      return pixelRepresentation(ds) === 1 ? "SS" : "US";
    }
    case "OB or OW": {
      if (implicit) return "OW";
      if (tag === Tags.PixelData) return bitsAllocated(ds) > 8 ? "OW" : "OB";
      return tagGroup(tag) >= 0x6000 && tagGroup(tag) <= 0x60ff ? "OW" : "OB";
    }
    case "US or OW":
      return implicit ? "OW" : "US";
    default:
      return isVr(vr) ? vr : "UN";
  }
}

function pixelRepresentation(ds: Dataset): number {
  for (let d: Dataset | undefined = ds; d; d = d.parent) {
    const el = d.get(Tags.PixelRepresentation);
    if (el?.bytes && el.bytes.length >= 2) return readU16(el.bytes, 0, d.littleEndian);
  }
  return 0;
}

function bitsAllocated(ds: Dataset): number {
  const el = ds.get(Tags.BitsAllocated);
  return el?.bytes && el.bytes.length >= 2 ? readU16(el.bytes, 0, ds.littleEndian) : 16;
}
