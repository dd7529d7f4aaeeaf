/**
 * The seam where per-study authorization filters search results in proxy mode: the proxy's QIDO
 * route calls filterSearchResults(request, results) after the upstream answered and before
 * anything is sent, so no study (and no count) outside the caller's grants leaks. The
 * authorization policy replaces the body of this function; until then every result passes.
 */
import type { FastifyRequest } from "fastify";
import type { DicomJsonDataset } from "../dicom/index.js";

export type SearchResultFilter = (request: FastifyRequest, results: DicomJsonDataset[]) => DicomJsonDataset[] | Promise<DicomJsonDataset[]>;

export const filterSearchResults: SearchResultFilter = (_request, results) => results;
