/**
 * The SQL of an AccessFilter (access.ts) over the SQLite schema: one parenthesized predicate that
 * is AND-ed into a query, so LIMIT, OFFSET and counts only ever see allowed rows.
 */
import type { AccessFilter, AccessRule } from "./access.js";

export interface SqlPart {
  sql: string;
  params: unknown[];
}

const list = (values: readonly string[], params: unknown[]): string => {
  params.push(...values);
  return values.length > 0 ? `(${values.map(() => "?").join(", ")})` : "(NULL)";
};

/** Study-level terms of a rule on the study alias `st`. */
function studyTerms(rule: AccessRule, st: string, params: unknown[]): string[] {
  const terms: string[] = [];
  if (rule.patientId !== undefined) {
    terms.push(`${st}.patient_id = ?`);
    params.push(rule.patientId);
  }
  if (rule.issuerOfPatientId !== undefined) {
    terms.push(`${st}.issuer_of_patient_id = ?`);
    params.push(rule.issuerOfPatientId);
  }
  if (rule.institutionName !== undefined) {
    terms.push(`${st}.institution_name = ?`);
    params.push(rule.institutionName);
  }
  if (rule.studyUids !== undefined) terms.push(`${st}.study_uid IN ${list(rule.studyUids, params)}`);
  return terms;
}

/**
 * The predicate "this row is allowed". `st` is the study alias; `seriesUidExpr` the SQL of the row's
 * Series Instance UID when the row is a series or below (a series restriction then applies to it),
 * undefined for a study row (a series-restricted rule then needs one allowed series in the study).
 */
export function accessSql(filter: AccessFilter, st: string, seriesUidExpr?: string): SqlPart {
  const params: unknown[] = [];
  if (filter.length === 0) return { sql: "0", params };
  const alternatives = filter.map((rule) => {
    const terms = studyTerms(rule, st, params);
    if (rule.seriesUids !== undefined) {
      if (seriesUidExpr !== undefined) terms.push(`${seriesUidExpr} IN ${list(rule.seriesUids, params)}`);
      else {
        terms.push(`EXISTS (SELECT 1 FROM series ax WHERE ax.study_pk = ${st}.pk AND ax.series_uid IN ${list(rule.seriesUids, params)})`);
      }
    }
    return terms.length > 0 ? `(${terms.join(" AND ")})` : "1";
  });
  return { sql: `(${alternatives.join(" OR ")})`, params };
}

/** True when some rule limits series: then what a study shows of its series (counts, modalities) must be limited too. */
export const restrictsSeries = (filter: AccessFilter | undefined): filter is AccessFilter =>
  filter !== undefined && filter.some((r) => r.seriesUids !== undefined);
