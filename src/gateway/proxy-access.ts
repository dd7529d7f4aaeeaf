/**
 * Per-study authorization in proxy mode, with the same rules as the archive. The archive evaluates
 * grants in its own index; a proxy asks the upstream for what the rules look at (Patient ID,
 * Issuer of Patient ID, Institution Name of a study) and remembers it for a minute:
 *
 * - a request inside one study (retrieve, metadata, frames, rendered, bulk data, delete, a search
 *   below /studies/{uid}) is checked before it reaches the upstream: 403 outside the grant, 404
 *   for a study the upstream does not have;
 * - a search across studies goes to the upstream with the attributes the rules need added as
 *   includefields, and each result is kept only when a rule allows it (no study, and no count,
 *   outside the grant leaks: the upstream's "N additional results" warning loses its number);
 * - STOW by a caller limited by patient or institution is refused (403): the gateway forwards the
 *   instances without reading them, so it cannot check whose they are.
 * Grants that only name studies (share tokens, studyUids rules) need no upstream question.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { DicomJsonDataset } from "../dicom/index.js";
import { ACCESS_TAGS, type AccessAttributes, type AccessFilter, type AccessRule, ruleAllows, rulesForScope } from "../store/access.js";
import { accessFor } from "./http-auth.js";
import { type AccessTarget, classifyRequest, pathBelowDicomwebRoot } from "./request-state.js";
import { accessAttributesOf, firstString } from "./upstream/datasets.js";

/** The attributes of a study that rules look at, from the upstream (undefined: it has no such study). */
export type StudyAttributesLookup = (studyUid: string) => Promise<AccessAttributes | undefined>;

const namesStudiesOnly = (r: AccessRule): boolean =>
  r.patientId === undefined && r.issuerOfPatientId === undefined && r.institutionName === undefined;

/** True when some rule looks at patient or institution attributes (the upstream must be asked). */
export const needsAttributes = (filter: AccessFilter): boolean => !filter.every(namesStudiesOnly);

/** The tags of the attributes the rules look at (what a search must return to be filtered). */
export function attributeTags(filter: AccessFilter): string[] {
  const keys = Object.keys(ACCESS_TAGS) as Array<keyof typeof ACCESS_TAGS>;
  return keys.filter((key) => filter.some((rule) => rule[key] !== undefined)).map((key) => ACCESS_TAGS[key]);
}

/** The StudyInstanceUID values a search is limited to (UID list matching: comma or backslash separated). */
function searchedStudies(url: string): string[] | undefined {
  const q = url.indexOf("?");
  if (q < 0) return undefined;
  const params = new URLSearchParams(url.slice(q + 1));
  const values = [...params.entries()].filter(([k]) => k === "StudyInstanceUID" || k === "0020000D").map(([, v]) => v);
  if (values.length === 0) return undefined;
  return values.flatMap((v) => v.split(/[,\\]/)).filter((v) => v !== "");
}

export interface Refusal {
  status: 403 | 404;
  reason: string;
}

/** Why this request must be refused in proxy mode, or undefined when its grant allows it (or results are filtered). */
export async function proxyAccessProblem(
  request: FastifyRequest,
  target: AccessTarget,
  lookup: StudyAttributesLookup,
): Promise<Refusal | undefined> {
  const filter = accessFor(request, target.behaviour);
  if (filter === undefined) return undefined;
  const attributeRules = needsAttributes(filter);
  if (target.behaviour === "store" && attributeRules) {
    return {
      status: 403,
      reason:
        "in proxy mode a caller limited to some patients or institutions cannot store: the gateway forwards instances without reading them",
    };
  }
  // A study-level request needs a rule for the whole study; a series-level one a rule naming that series (or all).
  const scoped = rulesForScope(filter, target.seriesUid);
  if (target.studyUid !== undefined) {
    const studyUid = target.studyUid;
    let attributes: AccessAttributes = { studyUid };
    if (scoped.some((r) => !namesStudiesOnly(r))) {
      const found = await lookup(studyUid);
      if (!found) return { status: 404, reason: `study ${studyUid} is not stored` };
      attributes = found;
    }
    return scoped.some((r) => ruleAllows(r, { ...attributes, seriesUid: target.seriesUid }))
      ? undefined
      : { status: 403, reason: `study ${studyUid} is outside this caller's grant` };
  }
  // Searches across studies: filtered result by result when the rules look at attributes (filterSearchResults).
  if (target.behaviour === "search" && attributeRules) return undefined;
  const studies = target.behaviour === "search" ? searchedStudies(request.url) : undefined;
  if (scoped.length === 0 || studies === undefined || studies.length === 0) {
    return {
      status: 403,
      reason:
        target.behaviour === "search"
          ? "this caller's access is limited to some studies: name the study (StudyInstanceUID) to search in"
          : `this caller's access is limited to some studies: ${target.behaviour} is allowed only on a URL that names the study`,
    };
  }
  const outside = studies.find((studyUid) => !scoped.some((r) => ruleAllows(r, { studyUid, seriesUid: target.seriesUid })));
  return outside === undefined ? undefined : { status: 403, reason: `study ${outside} is outside this caller's grant` };
}

/** preHandler of one upstream's routes: 403/404 with the reason when the grant does not cover the request. */
export function proxyAccessGuard(dicomwebPath: string, lookup: StudyAttributesLookup) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const below = pathBelowDicomwebRoot(request.url, dicomwebPath);
    const target = below === undefined ? undefined : classifyRequest(request.method, below);
    if (target === undefined) return;
    const problem = await proxyAccessProblem(request, target, lookup);
    if (problem !== undefined) await reply.code(problem.status).send({ error: problem.reason });
  };
}

/**
 * Keeps only the search results inside the caller's grant. Study and series UIDs come from each
 * result; patient and institution attributes from the result when the upstream returned them
 * (they were asked for as includefields), else from the study lookup (one per study, remembered).
 */
export async function filterSearchResults(
  request: FastifyRequest,
  results: DicomJsonDataset[],
  lookup: StudyAttributesLookup,
): Promise<DicomJsonDataset[]> {
  const filter = accessFor(request, "search");
  if (filter === undefined) return results;
  const needed = attributeTags(filter);
  const kept: DicomJsonDataset[] = [];
  for (const ds of results) {
    const studyUid = firstString(ds, "0020000D");
    if (studyUid === undefined) continue;
    let attributes: AccessAttributes = { studyUid, seriesUid: firstString(ds, "0020000E") };
    if (needed.length > 0) {
      const inResult = needed.every((tag) => tag in ds);
      const found = inResult ? accessAttributesOf(ds, studyUid) : await lookup(studyUid);
      if (!found) continue;
      attributes = { ...found, seriesUid: attributes.seriesUid };
    }
    if (filter.some((rule) => ruleAllows(rule, attributes))) kept.push(ds);
  }
  return kept;
}
