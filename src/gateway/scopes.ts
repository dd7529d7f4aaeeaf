/**
 * Scopes → DICOMweb behaviours. Two vocabularies are accepted:
 *
 * - Plain DICOMweb scopes: `dicomweb.search`, `dicomweb.retrieve`, `dicomweb.render`,
 *   `dicomweb.store`, `dicomweb.delete`, `dicomweb.read` (search + retrieve + render),
 *   `dicomweb.write` (store + delete), `dicomweb.*` (all).
 * - SMART on FHIR scopes on ImagingStudy (or `*`), v2 `<context>/ImagingStudy.<cruds>` and v1
 *   `<context>/ImagingStudy.read|write|*`, context `patient`, `user` or `system`:
 *   r or s → search + retrieve + render; c or u → store; d → delete; v1 read → r+s,
 *   write → c+u+d, `*` → all.
 *
 * A `patient/` scope only counts with a SMART `patient` claim, and then restricts that behaviour
 * to the patient's studies; `user/`, `system/` and `dicomweb.*` scopes are limited only by the
 * rule-based grants. A scope with a SMART v2 query (`?category=…`) or anything unknown grants
 * nothing: a scope we do not understand is never read as wider than it is.
 */
import type { Behaviour } from "./request-state.js";

/** Where a scope applies: every study the rules allow, or the launch patient's only. */
export type ScopeContext = "any" | "patient";

const READ: readonly Behaviour[] = ["search", "retrieve", "render"];
const ALL: readonly Behaviour[] = ["search", "retrieve", "render", "store", "delete"];

const PLAIN: Readonly<Record<string, readonly Behaviour[]>> = {
  "dicomweb.search": ["search"],
  "dicomweb.retrieve": ["retrieve"],
  "dicomweb.render": ["render"],
  "dicomweb.store": ["store"],
  "dicomweb.delete": ["delete"],
  "dicomweb.read": READ,
  "dicomweb.write": ["store", "delete"],
  "dicomweb.*": ALL,
};

const SMART = /^(patient|user|system)\/(ImagingStudy|\*)\.(\*|read|write|c?r?u?d?s?)$/;

function smartPermissions(permissions: string): Behaviour[] {
  if (permissions === "*") return [...ALL];
  if (permissions === "read") return [...READ];
  if (permissions === "write") return ["store", "delete"];
  const out = new Set<Behaviour>();
  if (permissions.includes("r") || permissions.includes("s")) for (const b of READ) out.add(b);
  if (permissions.includes("c") || permissions.includes("u")) out.add("store");
  if (permissions.includes("d")) out.add("delete");
  return [...out];
}

/** What one scope grants: behaviours and their context, or undefined when it grants nothing here. */
export function parseScope(scope: string): { behaviours: Behaviour[]; context: ScopeContext } | undefined {
  const plain = PLAIN[scope];
  if (plain) return { behaviours: [...plain], context: "any" };
  const m = SMART.exec(scope);
  if (!m || m[3] === "") return undefined;
  return { behaviours: smartPermissions(m[3] ?? ""), context: m[1] === "patient" ? "patient" : "any" };
}

/** For each behaviour the scopes grant, the widest context granting it. */
export function behavioursOf(scopes: readonly string[]): Map<Behaviour, ScopeContext> {
  const out = new Map<Behaviour, ScopeContext>();
  for (const scope of scopes) {
    const parsed = parseScope(scope);
    if (!parsed) continue;
    for (const b of parsed.behaviours) if (out.get(b) !== "any") out.set(b, parsed.context);
  }
  return out;
}

/** Scopes that would grant a behaviour, for the 403 `scope` attribute (RFC 6750 §3). */
export function scopesFor(behaviour: Behaviour): string[] {
  const smart = behaviour === "store" ? "c" : behaviour === "delete" ? "d" : "rs";
  return [`dicomweb.${behaviour}`, `user/ImagingStudy.${smart}`, `patient/ImagingStudy.${smart}`, `system/ImagingStudy.${smart}`];
}
