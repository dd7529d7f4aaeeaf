/**
 * GET /ohif-config on the API: what an administrator copies into their own OHIF, with this
 * server's public DICOMweb root.
 *
 * - JSON (default): `{ "dataSources": [...], "defaultDataSourceName": "voxelgate" }`, to merge
 *   into window.config.
 * - `?format=js` (or Accept: text/javascript): a complete app-config.js (`window.config = …`).
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { DicomwebError } from "../dicomweb/wado.js";
import { ohifAppConfigScript, ohifConfigSnippet, ohifWindowConfig } from "./ohif-config.js";

export interface OhifConfigRouteOptions {
  /** Public DICOMweb root for a request (no trailing slash). */
  publicBase(request: FastifyRequest): string;
  transferSyntax: string;
}

export async function ohifConfigRoute(app: FastifyInstance, options: OhifConfigRouteOptions): Promise<void> {
  app.get("/ohif-config", async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const format = typeof query.format === "string" ? query.format : /javascript/.test(request.headers.accept ?? "") ? "js" : "json";
    const root = options.publicBase(request);
    const sourceOptions = { transferSyntax: options.transferSyntax };
    void reply.header("cache-control", "no-cache");
    if (format === "json") return reply.type("application/json; charset=utf-8").send(ohifConfigSnippet(root, sourceOptions));
    if (format === "js")
      return reply.type("text/javascript; charset=utf-8").send(ohifAppConfigScript(ohifWindowConfig(root, sourceOptions)));
    throw new DicomwebError(
      400,
      `format=${format} is not offered: use format=json (data source snippet) or format=js (whole app-config.js)`,
    );
  });
}
