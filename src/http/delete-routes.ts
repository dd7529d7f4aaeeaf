/**
 * DELETE {root}/studies/{study}[/series/{series}[/instances/{instance}]]: removes index rows
 * first (readers stop seeing the data at once), then the files. Off unless allowDelete is set.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { DicomwebError, notFoundReason, type ScopeParams, scopeFromPath } from "../dicomweb/wado.js";
import type { PixelService } from "../dicomweb/pixels.js";
import { noteInstances } from "../gateway/audit/note.js";
import type { RouteContext } from "./context.js";

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
    const scope = scopeFromPath(request.params);
    const rows = ctx.archive.index.instances(scope);
    noteInstances(request, rows);
    const removed = await ctx.archive.delete(scope);
    for (const row of rows) await ctx.pixels.forget(row);
    if (removed === 0) throw new DicomwebError(404, notFoundReason(scope));
    return reply.code(200).type("application/json; charset=utf-8").send({ deletedInstances: removed });
  };
  app.delete(`${root}/studies/:study`, remove);
  app.delete(`${root}/studies/:study/series/:series`, remove);
  app.delete(`${root}/studies/:study/series/:series/instances/:instance`, remove);
}
