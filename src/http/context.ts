/** What every route plugin gets: the archive and how to build public URLs for a request. */
import type { FastifyRequest } from "fastify";
import type { Archive } from "../store/archive.js";

export interface RouteContext {
  archive: Archive;
  /** Path prefix of the DICOMweb root on this server, e.g. "/dicomweb". */
  dicomwebPrefix: string;
  /** Absolute public URL of the DICOMweb root for this request (no trailing slash), e.g. "http://127.0.0.1:8042/dicomweb". */
  publicBase(request: FastifyRequest): string;
}
