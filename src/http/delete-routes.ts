/**
 * DELETE {root}/studies/{study}[/series/{series}[/instances/{instance}]]: removes index rows
 * first (readers stop seeing the data at once), then the files. Off unless allowDelete is set.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { isValidUid } from "../dicom/index.js";
import { DicomwebError, notFoundReason } from "../dicomweb/wado.js";
import type { PixelService } from "../dicomweb/pixels.js";
import type { Scope } from "../store/types.js";
import type { RouteContext } from "./context.js";

interface ScopeParams {
  study: string;
  series?: string;
  instance?: string;
}

export async function deleteRoutes(
  app: FastifyInstance,
  ctx: RouteContext & { allowDelete: boolean; pixels: PixelService },
): Promise<void> {
  const root = ctx.dicomwebPrefix;
  const remove = async (request: FastifyRequest<{ Params: ScopeParams }>, reply: FastifyReply) => {
    if (!ctx.allowDelete) {
      reply.header("Allow", "GET, HEAD, POST, OPTIONS");
      throw new DicomwebError(
        405,
        'deleting is disabled on this server; start it with "allowDelete": true in the config file to enable DELETE',
      );
    }
    const { study, series, instance } = request.params;
    for (const uid of [study, series, instance]) {
      if (uid !== undefined && !isValidUid(uid))
        throw new DicomwebError(400, `${JSON.stringify(uid).slice(0, 80)} in the URL is not a valid DICOM UID`);
    }
    const scope: Scope = { studyUid: study, seriesUid: series, sopUid: instance };
    const rows = ctx.archive.index.instances(scope);
    const removed = await ctx.archive.delete(scope);
    for (const row of rows) await ctx.pixels.forget(row);
    if (removed === 0) throw new DicomwebError(404, notFoundReason(scope));
    return reply.code(200).type("application/json; charset=utf-8").send({ deletedInstances: removed });
  };
  app.delete(`${root}/studies/:study`, remove);
  app.delete(`${root}/studies/:study/series/:series`, remove);
  app.delete(`${root}/studies/:study/series/:series/instances/:instance`, remove);
}
