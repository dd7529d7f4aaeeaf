/**
 * What routes call to report the patient data they touched (one line each, so the routes stay
 * readable). Lists are capped: a QIDO page or a whole-study retrieve can name thousands of
 * objects; the record keeps the first ones and how many were left out.
 */
import type { FastifyRequest } from "fastify";
import type { DicomJsonDataset } from "../../dicom/index.js";
import type { IngestResult } from "../../store/ingest-result.js";
import { type AccessedEntity, noteAccess } from "../request-state.js";
import { patientOfDataset } from "./patients.js";

/** Search results recorded per request (BALP: the patients in the results; DICOM: the studies). */
export const MAX_SEARCH_ENTITIES = 100;
/** Instances recorded per retrieve, store or delete. */
export const MAX_INSTANCE_ENTITIES = 1000;

const omitted = new WeakMap<FastifyRequest, number>();

/** How many entities a request touched beyond those noted. */
export function omittedEntities(request: FastifyRequest): number {
  return omitted.get(request) ?? 0;
}

function noteCapped(request: FastifyRequest, entities: AccessedEntity[], cap: number): void {
  const room = Math.max(0, cap - (request.accessed?.length ?? 0));
  noteAccess(request, ...entities.slice(0, room));
  if (entities.length > room) omitted.set(request, omittedEntities(request) + entities.length - room);
}

const uidOf = (ds: DicomJsonDataset, tag: string): string | undefined => {
  const v = ds[tag]?.Value?.[0];
  return typeof v === "string" ? v : undefined;
};

/** QIDO: the patients and studies (series, instances) of the returned matches. */
export function noteSearchResults(request: FastifyRequest, matches: readonly DicomJsonDataset[]): void {
  const entities = matches.map((m): AccessedEntity => {
    const { patientId, patientIdIssuer } = patientOfDataset(m);
    return { patientId, patientIdIssuer, studyUid: uidOf(m, "0020000D"), seriesUid: uidOf(m, "0020000E"), sopUid: uidOf(m, "00080018") };
  });
  noteCapped(request, entities, MAX_SEARCH_ENTITIES);
}

/** WADO, rendered, DELETE: the instances (or the study/series scope) the request read or removed. */
export function noteInstances(
  request: FastifyRequest,
  rows: ReadonlyArray<{ studyUid: string; seriesUid?: string; sopUid?: string }>,
): void {
  noteCapped(
    request,
    rows.map((r) => ({ studyUid: r.studyUid, seriesUid: r.seriesUid, sopUid: r.sopUid })),
    MAX_INSTANCE_ENTITIES,
  );
}

/** STOW: the instances stored (identical re-sends too: the client sent them again). */
export function noteStored(request: FastifyRequest, results: readonly IngestResult[]): void {
  const stored = results.flatMap((r) => (r.ok ? [{ studyUid: r.studyUid, seriesUid: r.seriesUid, sopUid: r.sopUid }] : []));
  noteInstances(request, stored);
}
