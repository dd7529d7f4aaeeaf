/**
 * Per-study authorization in proxy mode. The archive evaluates grants in its own index; a proxy
 * cannot see the upstream's patients or institutions without asking it, so it enforces only the
 * grants that name studies (share tokens, `studyUids` rules) and refuses everything else that is
 * restricted: a caller limited to some studies gets 403, never the upstream's unfiltered answer.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { type AccessRule, ruleAllows, rulesForScope } from "../store/access.js";
import { accessFor } from "./http-auth.js";
import { type AccessTarget, classifyRequest, pathBelowDicomwebRoot } from "./request-state.js";

const namesStudiesOnly = (r: AccessRule): boolean =>
  r.studyUids !== undefined && r.patientId === undefined && r.issuerOfPatientId === undefined && r.institutionName === undefined;

/** The StudyInstanceUID values a search is limited to (UID list matching: comma or backslash separated). */
function searchedStudies(url: string): string[] | undefined {
  const q = url.indexOf("?");
  if (q < 0) return undefined;
  const params = new URLSearchParams(url.slice(q + 1));
  const values = [...params.entries()].filter(([k]) => k === "StudyInstanceUID" || k === "0020000D").map(([, v]) => v);
  if (values.length === 0) return undefined;
  return values.flatMap((v) => v.split(/[,\\]/)).filter((v) => v !== "");
}

/** Why this request must be refused in proxy mode, or undefined when its grant allows it. */
export function proxyAccessProblem(request: FastifyRequest, target: AccessTarget): string | undefined {
  const filter = accessFor(request, target.behaviour);
  if (filter === undefined) return undefined;
  const rules = filter.filter(namesStudiesOnly);
  const refused = `in proxy mode only grants that name studies (share tokens, studyUids rules) are enforced; this caller's access is limited otherwise`;
  if (rules.length === 0) return refused;
  const studies =
    target.studyUid !== undefined ? [target.studyUid] : target.behaviour === "search" ? searchedStudies(request.url) : undefined;
  if (studies === undefined || studies.length === 0) return `${refused}: name the study (StudyInstanceUID) this grant opens`;
  // A study-level request needs a rule for the whole study; a series-level one a rule naming that series (or all).
  const scoped = rulesForScope(rules, target.seriesUid);
  const outside = studies.find((studyUid) => !scoped.some((r) => ruleAllows(r, { studyUid, seriesUid: target.seriesUid })));
  return outside === undefined ? undefined : `study ${outside} is outside this caller's grant`;
}

/** preHandler for proxy mode: 403 with the reason when the grant does not cover the request. */
export function proxyAccessGuard(dicomwebPath: string) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const below = pathBelowDicomwebRoot(request.url, dicomwebPath);
    const target = below === undefined ? undefined : classifyRequest(request.method, below);
    if (target === undefined) return;
    const problem = proxyAccessProblem(request, target);
    if (problem !== undefined) await reply.code(403).send({ error: problem });
  };
}
