/**
 * The seam where per-study authorization filters search results in proxy mode: the proxy's QIDO
 * route calls filterSearchResults(request, results) after the upstream answered and before
 * anything is sent, so no study (and no count) outside the caller's grants leaks. The
 * grant is applied to each result by its Study (and Series) Instance UID.
 */
import type { FastifyRequest } from "fastify";
import type { DicomJsonDataset } from "../dicom/index.js";
import { ruleAllows } from "../store/access.js";
import { accessFor } from "./http-auth.js";

export type SearchResultFilter = (request: FastifyRequest, results: DicomJsonDataset[]) => DicomJsonDataset[] | Promise<DicomJsonDataset[]>;

/**
 * Keeps only results inside the caller's grant (defence in depth: the proxy-access guard already
 * refused searches that are not limited to granted studies, but an upstream may ignore a filter).
 */
export const filterSearchResults: SearchResultFilter = (request, results) => {
  const filter = accessFor(request, "search");
  if (filter === undefined) return results;
  return results.filter((r) => {
    const studyUid = r["0020000D"]?.Value?.[0];
    const seriesUid = r["0020000E"]?.Value?.[0];
    return (
      typeof studyUid === "string" &&
      filter.some((rule) => ruleAllows(rule, { studyUid, seriesUid: typeof seriesUid === "string" ? seriesUid : undefined }))
    );
  });
};
