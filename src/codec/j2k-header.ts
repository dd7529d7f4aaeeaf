/**
 * JPEG 2000 main header reading (ITU-T T.800 Annex A; Part 15 HTJ2K adds the CAP marker): what
 * the codestream holds before any decoder sees it. Decoders are chosen from this (openjph given a
 * classic J2K codestream returns an empty buffer without error: notes/libraries.md T11) and their
 * output is checked against it.
 */
import { CodecError } from "./errors.js";

export interface J2kComponent {
  precision: number;
  signed: boolean;
  dx: number;
  dy: number;
}

export interface J2kHeader {
  /** Offset of SOC in the given bytes (non-zero when a JP2 file wraps the codestream). */
  offset: number;
  width: number;
  height: number;
  components: J2kComponent[];
  /** Part 15 (HTJ2K): a CAP marker, or Rsiz bit 14. */
  highThroughput: boolean;
  /** Multiple component transform (RCT when reversible, ICT when not). */
  mct: boolean;
  /** 5-3 reversible wavelet. */
  reversible: boolean;
  /** 0 LRCP, 1 RLCP, 2 RPCL, 3 PCRL, 4 CPRL. */
  progressionOrder: number;
  decompositions: number;
  /** A TLM marker segment is present in the main header. */
  tlm: boolean;
}

const u16 = (b: Uint8Array, at: number): number => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
const u32 = (b: Uint8Array, at: number): number => u16(b, at) * 65536 + u16(b, at + 2);

/** Where the codestream starts: 0 for a raw codestream, inside the jp2c box for a JP2 file. */
function codestreamOffset(b: Uint8Array): number {
  if (b[0] === 0xff && b[1] === 0x4f) return 0;
  // JP2 signature box: 0000000C 6A502020 0D0A870A
  if (u32(b, 0) === 12 && u32(b, 4) === 0x6a502020) {
    let at = 0;
    while (at + 8 <= b.length) {
      let length = u32(b, at);
      const type = u32(b, at + 4);
      let header = 8;
      if (length === 1) {
        length = u32(b, at + 8) * 2 ** 32 + u32(b, at + 12);
        header = 16;
      } else if (length === 0) length = b.length - at;
      if (type === 0x6a703263) return at + header; // "jp2c"
      if (length < header) break;
      at += length;
    }
  }
  throw new CodecError("CORRUPT", "not a JPEG 2000 codestream: no SOC marker (FF4F) and no JP2 codestream box");
}

export function readJ2kHeader(b: Uint8Array): J2kHeader {
  const offset = codestreamOffset(b);
  if (u16(b, offset + 2) !== 0xff51) throw new CodecError("CORRUPT", "JPEG 2000 codestream without SIZ right after SOC");
  const siz = offset + 4;
  const lsiz = u16(b, siz);
  const rsiz = u16(b, siz + 2);
  const xsiz = u32(b, siz + 4);
  const ysiz = u32(b, siz + 8);
  const xo = u32(b, siz + 12);
  const yo = u32(b, siz + 16);
  const count = u16(b, siz + 36);
  if (siz + lsiz > b.length || lsiz < 38 + 3 * count) throw new CodecError("CORRUPT", "JPEG 2000 SIZ marker segment is truncated");
  const components: J2kComponent[] = [];
  for (let i = 0; i < count; i++) {
    const c = siz + 38 + i * 3;
    const ssiz = b[c] ?? 0;
    components.push({ precision: (ssiz & 0x7f) + 1, signed: (ssiz & 0x80) !== 0, dx: b[c + 1] ?? 1, dy: b[c + 2] ?? 1 });
  }
  const header: J2kHeader = {
    offset,
    width: xsiz - xo,
    height: ysiz - yo,
    components,
    highThroughput: (rsiz & 0x4000) !== 0,
    mct: false,
    reversible: true,
    progressionOrder: 0,
    decompositions: 0,
    tlm: false,
  };
  let at = siz + lsiz;
  while (at + 4 <= b.length) {
    const marker = u16(b, at);
    if (marker === 0xff90 || marker === 0xff93 || marker === 0xffd9) break; // SOT, SOD, EOC
    const length = u16(b, at + 2);
    if ((marker & 0xff00) !== 0xff00 || length < 2) throw new CodecError("CORRUPT", `JPEG 2000 main header: bad marker at byte ${at}`);
    const body = at + 4;
    if (marker === 0xff50)
      header.highThroughput = true; // CAP
    else if (marker === 0xff55) header.tlm = true;
    else if (marker === 0xff52) {
      // COD: Scod, progression order, layers (2), MCT, decompositions, xcb, ycb, style, transform
      header.progressionOrder = b[body + 1] ?? 0;
      header.mct = (b[body + 4] ?? 0) !== 0;
      header.decompositions = b[body + 5] ?? 0;
      header.reversible = (b[body + 9] ?? 1) === 1;
    }
    at += 2 + length;
  }
  return header;
}
