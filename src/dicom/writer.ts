/**
 * Part 10 writer (PS3.10 §7): file meta information plus the dataset in explicit or implicit VR
 * little endian, explicit VR big endian, or deflated explicit VR little endian. Encapsulated pixel
 * data is rewritten with one fragment per frame and a Basic Offset Table that points at them.
 *
 * Our own rather than dcmjs's writer: dcmjs corrupts deflated output, throws on empty elements,
 * drops InlineBinary and re-fragments frames (notes/libraries.md T2, T3, T5).
 */
import { deflateRawSync } from "node:zlib";
import { padEven, swapBytes } from "./byte-order.js";
import { Dataset, type Element, type EncapsulatedPixelData, latin1Trim } from "./dataset.js";
import { DicomError } from "./errors.js";
import { frameBytes, locateFrames } from "./frames.js";
import { type Tag, Tags, tagToHex } from "./tag.js";
import { lookupTransferSyntax, type TransferSyntax } from "./transfer-syntax.js";
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from "./uid.js";
import { hasLongLength, paddingByte, swapUnit, type Vr } from "./vr.js";

export interface WritePart10Options {
  transferSyntaxUid: string;
  /** Source AE Title (0002,0016) to record, if any. */
  sourceAeTitle?: string;
}

/** Growable list of chunks; values are appended as views, never copied until the final concat. */
class Chunks {
  readonly list: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array): void {
    this.list.push(b);
    this.length += b.length;
  }
  concat(): Buffer {
    return Buffer.concat(this.list, this.length);
  }
}

/** A complete Part 10 file: preamble, "DICM", file meta information and the dataset. */
export function writePart10(ds: Dataset, options: WritePart10Options): Buffer {
  const syntax = syntaxOf(options.transferSyntaxUid);
  const sopClass = requiredUid(ds, Tags.SOPClassUID, "SOP Class UID");
  const sopInstance = requiredUid(ds, Tags.SOPInstanceUID, "SOP Instance UID");
  const meta = new Dataset(true);
  const put = (tag: Tag, vr: Vr, value: string | Uint8Array) =>
    meta.set({ tag, vr, bytes: typeof value === "string" ? padEven(Buffer.from(value, "latin1"), paddingByte(vr)) : value, position: -1 });
  put(Tags.FileMetaInformationVersion, "OB", Uint8Array.of(0x00, 0x01));
  put(Tags.MediaStorageSOPClassUID, "UI", sopClass);
  put(Tags.MediaStorageSOPInstanceUID, "UI", sopInstance);
  put(Tags.TransferSyntaxUID, "UI", syntax.uid);
  put(Tags.ImplementationClassUID, "UI", IMPLEMENTATION_CLASS_UID);
  put(Tags.ImplementationVersionName, "SH", IMPLEMENTATION_VERSION_NAME);
  if (options.sourceAeTitle) put(Tags.SourceApplicationEntityTitle, "AE", options.sourceAeTitle);

  const metaBody = new Chunks();
  const metaSyntax = syntaxOf("1.2.840.10008.1.2.1");
  for (const el of meta.elements()) writeElement(metaBody, meta, el, metaSyntax);
  const groupLength = Buffer.alloc(12);
  groupLength.writeUInt16LE(0x0002, 0);
  groupLength.writeUInt16LE(0x0000, 2);
  groupLength.write("UL", 4, "latin1");
  groupLength.writeUInt16LE(4, 6);
  groupLength.writeUInt32LE(metaBody.length, 8);

  const header = Buffer.alloc(132);
  header.write("DICM", 128, "latin1");
  const body = writeDataset(ds, syntax.uid);
  return Buffer.concat([header, groupLength, metaBody.concat(), body]);
}

/** The dataset alone (no preamble, no file meta), encoded in the given transfer syntax. */
export function writeDataset(ds: Dataset, transferSyntaxUid: string): Buffer {
  const syntax = syntaxOf(transferSyntaxUid);
  const out = new Chunks();
  for (const el of ds.elements()) {
    if (el.tag >= 0x00020000 && el.tag < 0x00030000) continue; // file meta is written by writePart10 only
    if (el.tag === Tags.PixelData && el.encapsulated) writeEncapsulated(out, ds, el, syntax);
    else writeElement(out, ds, el, syntax);
  }
  const body = out.concat();
  return syntax.deflated ? deflateRawSync(body) : body;
}

/**
 * Encapsulated pixel data with one fragment per frame and a Basic Offset Table (PS3.5 A.4),
 * for codecs that produce frames.
 */
export function encapsulateFrames(frames: readonly Uint8Array[]): EncapsulatedPixelData {
  const basicOffsetTable: number[] = [];
  let offset = 0;
  const fragments = frames.map((f) => {
    basicOffsetTable.push(offset);
    const bytes = padEven(f, 0);
    offset += 8 + bytes.length;
    return { position: -1, bytes };
  });
  return { basicOffsetTable, fragments };
}

function syntaxOf(uid: string): TransferSyntax {
  const syntax = lookupTransferSyntax(uid);
  if (!syntax) throw new DicomError("UNSUPPORTED_TRANSFER_SYNTAX", `cannot write unknown transfer syntax ${uid}`);
  return syntax;
}

function requiredUid(ds: Dataset, tag: Tag, name: string): string {
  const bytes = ds.get(tag)?.bytes;
  const uid = bytes ? latin1Trim(bytes) : "";
  if (!uid) throw new DicomError("CANNOT_ENCODE", `a Part 10 file needs ${name} (${tagToHex(tag)}) in the dataset`);
  return uid;
}

function writeHeader(out: Chunks, tag: Tag, vr: Vr, length: number, syntax: TransferSyntax): void {
  const le = syntax.littleEndian;
  const long = !syntax.explicitVr || hasLongLength(vr);
  const h = Buffer.alloc(syntax.explicitVr && !long ? 8 : syntax.explicitVr ? 12 : 8);
  const u16 = (v: number, at: number) => (le ? h.writeUInt16LE(v, at) : h.writeUInt16BE(v, at));
  const u32 = (v: number, at: number) => (le ? h.writeUInt32LE(v, at) : h.writeUInt32BE(v, at));
  u16(tag >>> 16, 0);
  u16(tag & 0xffff, 2);
  if (!syntax.explicitVr) u32(length, 4);
  else {
    h.write(vr, 4, "latin1");
    if (long) u32(length, 8);
    else u16(length, 6);
  }
  out.push(h);
}

/** An item or delimiter tag with its 32-bit length, in the syntax's byte order. */
function writeItemTag(out: Chunks, tag: Tag, length: number, le: boolean): void {
  const h = Buffer.alloc(8);
  if (le) {
    h.writeUInt16LE(tag >>> 16, 0);
    h.writeUInt16LE(tag & 0xffff, 2);
    h.writeUInt32LE(length, 4);
  } else {
    h.writeUInt16BE(tag >>> 16, 0);
    h.writeUInt16BE(tag & 0xffff, 2);
    h.writeUInt32BE(length, 4);
  }
  out.push(h);
}

function writeElement(out: Chunks, ds: Dataset, el: Element, syntax: TransferSyntax): void {
  if (el.vr === "SQ" || el.items) {
    // Undefined lengths: no need to size nested items up front, and every reader accepts them.
    writeHeader(out, el.tag, "SQ", 0xffffffff, syntax);
    for (const item of el.items ?? []) {
      writeItemTag(out, Tags.Item, 0xffffffff, syntax.littleEndian);
      for (const child of item.elements()) writeElement(out, item, child, syntax);
      writeItemTag(out, Tags.ItemDelimitationItem, 0, syntax.littleEndian);
    }
    writeItemTag(out, Tags.SequenceDelimitationItem, 0, syntax.littleEndian);
    return;
  }
  if (el.encapsulated) {
    throw new DicomError("CANNOT_ENCODE", `encapsulated (${tagToHex(el.tag)}) can only be written as Pixel Data`);
  }
  let value = padEven(el.bytes ?? new Uint8Array(0), paddingByte(el.vr));
  if (ds.littleEndian !== syntax.littleEndian) value = swapBytes(value, swapUnit(el.vr));
  // A value too long for a 16-bit length field can only be written as UN (as DCMTK does).
  const vr: Vr = syntax.explicitVr && !hasLongLength(el.vr) && value.length > 0xffff ? "UN" : el.vr;
  writeHeader(out, el.tag, vr, value.length, syntax);
  if (value.length > 0) out.push(value);
}

function writeEncapsulated(out: Chunks, ds: Dataset, el: Element, syntax: TransferSyntax): void {
  if (!syntax.encapsulated) {
    throw new DicomError("CANNOT_ENCODE", `pixel data is compressed; writing it as ${syntax.name} needs decompression (transcoding)`);
  }
  // Rebuild as one fragment per frame; keep the fragments as they are when frames cannot be found.
  let enc: EncapsulatedPixelData;
  try {
    enc = encapsulateFrames(locateFrames(ds).frames.map(frameBytes));
  } catch {
    enc = { basicOffsetTable: [], fragments: el.encapsulated?.fragments ?? [] };
  }
  writeHeader(out, el.tag, "OB", 0xffffffff, syntax);
  const table = Buffer.alloc(enc.basicOffsetTable.length * 4);
  enc.basicOffsetTable.forEach((o, i) => {
    table.writeUInt32LE(o, i * 4);
  });
  writeItemTag(out, Tags.Item, table.length, true);
  if (table.length > 0) out.push(table);
  for (const f of enc.fragments) {
    const bytes = padEven(f.bytes, 0);
    writeItemTag(out, Tags.Item, bytes.length, true);
    out.push(bytes);
  }
  writeItemTag(out, Tags.SequenceDelimitationItem, 0, true);
}
