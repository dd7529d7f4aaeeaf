/**
 * Audit hooks: after each DICOMweb response (and each 401/403 anywhere) a record of who, what,
 * when, from where, outcome and bytes goes to the AuditRecorder's queues — after the response is
 * sent, so recording never delays it. Routes report what they touched with noteAccess()
 * (src/gateway/audit/note.ts); patients are filled in here from the index.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Config } from "../config.js";
import { AuditRecorder, type AuditRecord, omittedEntities, outcomeOfStatus, PatientLookup } from "../gateway/audit/index.js";
import type { AuditEntity } from "../gateway/audit/record.js";
import { type AccessTarget, ANONYMOUS, classifyRequest, pathBelowDicomwebRoot } from "../gateway/request-state.js";
import type { Archive } from "../store/archive.js";
import { requestBytes, serverMetricsRegistry } from "./metrics.js";

/** Reasons of error replies (`{error}`), captured in onSend for the record's outcome description. */
const reasons = new WeakMap<FastifyRequest, string>();

function reasonOf(payload: unknown): string | undefined {
  const text = typeof payload === "string" ? payload : Buffer.isBuffer(payload) ? payload.toString("utf8") : undefined;
  if (!text || text.length > 8192) return undefined;
  try {
    const body = JSON.parse(text) as { error?: unknown };
    return typeof body.error === "string" ? body.error : undefined;
  } catch {
    return undefined;
  }
}

/** A copy without the keys whose value is undefined, in the same order (a plain loop: this runs several times per request). */
function stripUndefined<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const key in o) {
    const value = o[key];
    if (value !== undefined) out[key] = value;
  }
  return out as T;
}

/** The DICOMweb target of a request, or undefined outside the DICOMweb root. */
function targetOf(request: FastifyRequest, root: string): AccessTarget | undefined {
  const below = pathBelowDicomwebRoot(request.url, root);
  return below === undefined ? undefined : classifyRequest(request.method, below);
}

/**
 * Opens the recorder (its sinks and spools), adds the hooks to the root instance and records
 * application start/stop. Call before the routes are registered; returns the recorder (readiness).
 * With `audit: false` nothing is recorded and undefined is returned.
 */
export async function installAudit(app: FastifyInstance, config: Config, archive: Archive): Promise<AuditRecorder | undefined> {
  if (config.audit === false) return undefined;
  const recorder = await AuditRecorder.open({
    settings: config.audit,
    dataDir: archive.dataDir,
    registry: serverMetricsRegistry(app),
    log: { warn: (message) => app.log.warn(message) },
  });
  const patients = new PatientLookup(archive.index);
  const root = config.dicomwebPath;
  app.addHook("onClose", async () => recorder.close());

  // Callback-style hooks: they run on every request, and a promise each adds up on a cached image.
  // A deleted study's patient cannot be looked up afterwards: remember it first.
  app.addHook("preHandler", (request, _reply, done) => {
    if (request.method === "DELETE") {
      const target = targetOf(request, root);
      if (target?.behaviour === "delete" && target.studyUid) patients.get(target.studyUid);
    }
    done();
  });

  app.addHook("onSend", (request, reply, payload, done) => {
    if (reply.statusCode >= 400) {
      const reason = reasonOf(payload);
      if (reason) reasons.set(request, reason);
    }
    done(null, payload);
  });

  app.addHook("onResponse", (request, reply, done) => {
    try {
      const record = buildRecord(request, reply, root, patients, recorder.source);
      if (record) recorder.record(record);
    } catch (err) {
      // Never fail a finished request for audit; but say it loudly.
      request.log.error({ err }, "could not build the audit record of this request");
    }
    done();
  });
  return recorder;
}

function buildRecord(
  request: FastifyRequest,
  reply: FastifyReply,
  root: string,
  patients: PatientLookup,
  source: string,
): AuditRecord | undefined {
  const status = reply.statusCode;
  const target = targetOf(request, root);
  const refused = status === 401 || status === 403;
  if (!target && !refused) return undefined; // landing page, metrics, health: no patient data
  const [path, ...rest] = request.url.split("?");
  const query = rest.join("?");
  const principal = request.principal ?? ANONYMOUS;
  if (target?.behaviour === "store") for (const e of request.accessed ?? []) if (e.studyUid) patients.forget(e.studyUid);
  const entities: AuditEntity[] = (request.accessed ?? []).map((e) => {
    if (e.patientId !== undefined || !e.studyUid) return stripUndefined({ ...e });
    return stripUndefined({ ...e, ...patients.get(e.studyUid) });
  });
  // A request refused or failed before the route noted anything still names its target.
  if (entities.length === 0 && target?.studyUid) {
    entities.push(
      stripUndefined({ studyUid: target.studyUid, seriesUid: target.seriesUid, sopUid: target.sopUid, ...patients.get(target.studyUid) }),
    );
  }
  const bytes = requestBytes(request, reply);
  const omitted = omittedEntities(request);
  return stripUndefined({
    id: randomUUID(),
    time: new Date().toISOString(),
    category: refused ? ("security-alert" as const) : ("dicomweb" as const),
    transaction: target?.behaviour,
    requestId: request.id,
    method: request.method,
    path,
    query: query === "" ? undefined : query,
    principal: stripUndefined({
      kind: principal.kind,
      subject: principal.subject,
      clientId: principal.clientId,
      issuer: principal.issuer,
      name: principal.name,
      roles: [...principal.roles],
      patient: principal.patient,
    }),
    client: stripUndefined({ ip: request.ip, userAgent: request.headers["user-agent"] }),
    server: stripUndefined({ app: source, host: request.host }),
    target: target ? stripUndefined({ studyUid: target.studyUid, seriesUid: target.seriesUid, sopUid: target.sopUid }) : undefined,
    entities,
    entitiesOmitted: omitted > 0 ? omitted : undefined,
    status,
    ...outcomeOfStatus(status),
    reason: reasons.get(request),
    bytesSent: bytes.sent,
    bytesReceived: bytes.received,
    durationMs: Math.round(reply.elapsedTime * 10) / 10,
  });
}
