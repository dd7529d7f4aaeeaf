/** The HTTP server. Until the archive lands it serves the landing page and a health check. */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";

export interface ServerOptions {
  host: string;
  port: number;
}

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

const landingPage = fileURLToPath(new URL("../../../web/index.html", import.meta.url));

export function buildApp(): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get("/", async (_req, reply) => {
    reply.type("text/html; charset=utf-8");
    return readFile(landingPage);
  });
  app.get("/healthz", async () => ({ status: "ok" }));
  return app;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const app = buildApp();
  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  return { app, url: `http://${host}:${port}/`, close: () => app.close() };
}
