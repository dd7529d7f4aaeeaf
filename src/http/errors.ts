/**
 * Error replies: every 4xx/5xx carries a JSON body `{ "error": reason }` whose reason says what
 * was wrong and what to do. Services throw DicomwebError (status + reason); this turns it,
 * and Fastify's own errors (bad JSON, body too large), into that shape.
 */
import type { FastifyError, FastifyInstance } from "fastify";
import { DicomwebError } from "../dicomweb/wado.js";

export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | DicomwebError | Error, request, reply) => {
    const status =
      error instanceof DicomwebError
        ? error.status
        : "statusCode" in error && typeof error.statusCode === "number"
          ? error.statusCode
          : 500;
    if (status >= 500) request.log.error({ err: error }, "request failed");
    const reason = status >= 500 && !(error instanceof DicomwebError) ? `internal error: ${error.message}` : error.message;
    if (reply.sent || reply.raw.headersSent) {
      // A streamed response failed half-way: the only honest signal left is a broken connection.
      reply.raw.destroy(error);
      return;
    }
    void reply.code(status).type("application/json; charset=utf-8").send({ error: reason });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .type("application/json; charset=utf-8")
      .send({ error: `no resource at ${request.method} ${request.url.split("?")[0]}; the DICOMweb root is listed on the landing page /` });
  });
}
