/** Byte-order conversion of encoded values (PS3.5 §7.3). */
import { swapUnit, type Vr } from "./vr.js";

/** Reverses every `unit`-byte word (2 for OW/US, 4 for OF/UL, 8 for OD/FD); a copy, or the input when unit is 1. */
export function swapBytes(bytes: Uint8Array, unit: number): Uint8Array {
  if (unit === 1) return bytes;
  const out = new Uint8Array(bytes.length);
  const n = bytes.length - (bytes.length % unit);
  for (let i = 0; i < n; i += unit) {
    for (let j = 0; j < unit; j++) out[i + j] = bytes[i + unit - 1 - j] as number;
  }
  out.set(bytes.subarray(n), n);
  return out;
}

/** Values have even length (PS3.5 §7.1.1): one padding byte is appended to an odd one (a copy). */
export function padEven(bytes: Uint8Array, pad: number): Uint8Array {
  if (bytes.length % 2 === 0) return bytes;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  out[bytes.length] = pad;
  return out;
}

/** Big endian value bytes of `vr` to little endian (or back): swaps in the VR's unit size. */
export const swapBytesForVr = (bytes: Uint8Array, vr: Vr): Uint8Array => swapBytes(bytes, swapUnit(vr));
