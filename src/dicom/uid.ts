/** UIDs: validation (PS3.5 §9.1) and generation under the 2.25 root from UUIDs (PS3.5 §B.2). */
import { randomUUID } from "node:crypto";

/** Voxelgate's Implementation Class UID (PS3.7 D.3.3.2), made once from a UUID. */
export const IMPLEMENTATION_CLASS_UID = "2.25.334947155154536248914144203915805562181";
export const IMPLEMENTATION_VERSION_NAME = "VOXELGATE_0_1";

/** Why a UID is invalid, or undefined when it is valid. */
export function uidProblem(uid: string): string | undefined {
  if (uid.length === 0) return "is empty";
  if (uid.length > 64) return `is ${uid.length} characters long; the maximum is 64`;
  if (!/^[0-9.]+$/.test(uid)) return "may contain only digits and dots";
  const components = uid.split(".");
  for (const c of components) {
    if (c.length === 0) return "has an empty component";
    if (c.length > 1 && c.startsWith("0")) return `has a component with a leading zero ("${c}")`;
  }
  if (components.length < 2) return "needs at least two components";
  return undefined;
}

export const isValidUid = (uid: string): boolean => uidProblem(uid) === undefined;

/** A new globally unique UID: 2.25 followed by the UUID as a decimal integer. */
export function generateUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, "")}`).toString()}`;
}
