/**
 * What part of the archive a caller may touch, in terms the index can evaluate: a list of rules,
 * any of which lets a study (and, when the rule names series, only those series of it) through.
 * The gateway's policy engine (src/gateway/policy.ts) builds these from scopes, the SMART patient
 * context, share tokens and the configured rule-based grants; backends turn them into an AND-ed
 * clause of every query (QIDO) and into the existence checks of retrieve, render, store and delete,
 * so a study outside the grant looks exactly like a study that is not stored.
 */

/** One grant. Every field given must match (AND); an empty rule allows every study. */
export interface AccessRule {
  /** Patient ID (0010,0020) of the study. */
  patientId?: string;
  /** Issuer of Patient ID (0010,0021) of the study. */
  issuerOfPatientId?: string;
  /** Institution Name (0008,0080) of the study (as stored with its latest instance). */
  institutionName?: string;
  /** Only these studies. */
  studyUids?: readonly string[];
  /** Only these series of the allowed studies (a share token for one series). */
  seriesUids?: readonly string[];
}

/** Any rule allows (OR). An empty list allows nothing. */
export type AccessFilter = readonly AccessRule[];

/** Everything, or what an AccessFilter lets through. */
export type Access = "all" | AccessFilter;

/** The attributes of a study (or of an instance about to be stored) that rules look at. */
export interface AccessAttributes {
  studyUid: string;
  seriesUid?: string;
  patientId?: string;
  issuerOfPatientId?: string;
  institutionName?: string;
}

/** The DICOM tags of the attributes rules look at (a proxy asks its upstream for them). */
export const ACCESS_TAGS = { patientId: "00100020", issuerOfPatientId: "00100021", institutionName: "00080080" } as const;

/** True when the rule allows an entity with these attributes (a series-restricted rule needs the series). */
export function ruleAllows(rule: AccessRule, a: AccessAttributes): boolean {
  if (rule.patientId !== undefined && rule.patientId !== a.patientId) return false;
  if (rule.issuerOfPatientId !== undefined && rule.issuerOfPatientId !== a.issuerOfPatientId) return false;
  if (rule.institutionName !== undefined && rule.institutionName !== a.institutionName) return false;
  if (rule.studyUids !== undefined && !rule.studyUids.includes(a.studyUid)) return false;
  if (rule.seriesUids !== undefined && (a.seriesUid === undefined || !rule.seriesUids.includes(a.seriesUid))) return false;
  return true;
}

export const accessAllows = (access: Access, a: AccessAttributes): boolean =>
  access === "all" || access.some((rule) => ruleAllows(rule, a));

/**
 * The rules that open a whole scope: for a study, only rules without a series restriction (a
 * viewer must not get a partial study as if it were whole); for a series, rules that allow all
 * series or name this one (with the series restriction then satisfied).
 */
export function rulesForScope(filter: AccessFilter, seriesUid: string | undefined): AccessFilter {
  const out: AccessRule[] = [];
  for (const rule of filter) {
    if (rule.seriesUids === undefined) out.push(rule);
    else if (seriesUid !== undefined && rule.seriesUids.includes(seriesUid)) {
      const { seriesUids: _omit, ...rest } = rule;
      out.push(rest);
    }
  }
  return out;
}
