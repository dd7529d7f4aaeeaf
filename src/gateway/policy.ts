/**
 * The one policy engine: from a Principal (and a share grant) to what each DICOMweb behaviour may
 * touch. Every enforcement point asks this, so QIDO filtering, WADO/rendered/frames/bulk data
 * existence checks, STOW per-instance checks and DELETE all follow the same decision.
 *
 * Per behaviour:
 * - not granted by any scope → refused (403 insufficient_scope, 401 without credentials);
 * - granted by a `user/`, `system/` or `dicomweb.` scope → the rule-based grants (everything when
 *   no rules are configured);
 * - granted only by `patient/` scopes → the rule-based grants ∩ the SMART launch patient (PatientID,
 *   and Issuer of Patient ID when `auth.patientIdIssuer` is set); without a `patient` claim, nothing;
 * - a share token → search, retrieve and render of its study (series) only.
 */
import type { AuthConfig } from "../config.js";
import type { Access, AccessRule } from "../store/access.js";
import { behavioursOf } from "./scopes.js";
import type { Behaviour, Principal } from "./request-state.js";
import type { ShareGrant } from "./share-tokens.js";

/** What a request may do: the Access of each granted behaviour (absent: not granted). */
export type Decision = ReadonlyMap<Behaviour, Access>;

type Rule = AuthConfig["rules"][number];

function ruleApplies(rule: Rule, p: Principal): boolean {
  const w = rule.when;
  if (w.role !== undefined && !p.roles.includes(w.role)) return false;
  if (w.subject !== undefined && w.subject !== p.subject) return false;
  if (w.client !== undefined && w.client !== p.clientId) return false;
  if (w.scope !== undefined && !p.scopes.includes(w.scope)) return false;
  return true;
}

/** What the configured rules let this principal see: everything without rules, else the union of its rules' grants. */
export function ruleAccess(rules: readonly Rule[], p: Principal): Access {
  if (rules.length === 0) return "all";
  const grants: AccessRule[] = [];
  for (const rule of rules) {
    if (!ruleApplies(rule, p)) continue;
    if (rule.allow === "all") return "all";
    grants.push({ ...rule.allow });
  }
  return grants;
}

/** Narrows an Access to one patient; a grant naming another patient (or issuer) drops out. */
export function restrictToPatient(access: Access, patient: { patientId: string; issuerOfPatientId?: string }): Access {
  const only: AccessRule = {
    patientId: patient.patientId,
    ...(patient.issuerOfPatientId !== undefined ? { issuerOfPatientId: patient.issuerOfPatientId } : {}),
  };
  if (access === "all") return [only];
  return access
    .filter(
      (r) =>
        (r.patientId === undefined || r.patientId === only.patientId) &&
        (r.issuerOfPatientId === undefined || only.issuerOfPatientId === undefined || r.issuerOfPatientId === only.issuerOfPatientId),
    )
    .map((r) => ({ ...r, ...only }));
}

export function decide(auth: AuthConfig, principal: Principal, share?: ShareGrant): Decision {
  const out = new Map<Behaviour, Access>();
  if (share) {
    const rule: AccessRule = { studyUids: [share.studyUid], ...(share.seriesUid !== undefined ? { seriesUids: [share.seriesUid] } : {}) };
    for (const b of ["search", "retrieve", "render"] as const) out.set(b, [rule]);
    return out;
  }
  const base = ruleAccess(auth.rules, principal);
  for (const [behaviour, context] of behavioursOf(principal.scopes)) {
    if (context === "any") out.set(behaviour, base);
    else if (principal.patient !== undefined) {
      out.set(behaviour, restrictToPatient(base, { patientId: principal.patient, issuerOfPatientId: auth.patientIdIssuer }));
    }
  }
  return out;
}

/** Everything allowed (no auth configured): what every request gets then. */
export const ALLOW_ALL: Decision = new Map<Behaviour, Access>([
  ["search", "all"],
  ["retrieve", "all"],
  ["render", "all"],
  ["store", "all"],
  ["delete", "all"],
]);
