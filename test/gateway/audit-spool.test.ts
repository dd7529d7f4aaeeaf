/**
 * Audit that cannot be delivered is not lost silently: refused requests are recorded as security
 * alerts; a sink that fails spools to disk, the spool survives a restart and is delivered first;
 * a full spool drops records only with a count, a warning and a failing readiness check.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Registry } from "prom-client";
import { parseConfig } from "../../src/config.js";
import { type AuditRecord, AuditRecorder, readJsonlAudit, toDicomAuditMessages, toFhirAuditEvents } from "../../src/gateway/audit/index.js";
import { DurableSink } from "../../src/gateway/audit/durable-sink.js";
import type { AuditSink } from "../../src/gateway/audit/sink.js";
import { Spool } from "../../src/gateway/audit/spool.js";
import { buildApp } from "../../src/http/server.js";
import { openArchive } from "../../src/store/file-archive.js";
import { httpRequest } from "../helpers/archive-harness.js";
import { requireTools, TOOLS } from "../helpers/tools.js";
import { elements, schemaProblems, waitFor } from "./audit-helpers.js";

const record = (n: number): AuditRecord => ({
  id: `r${n}`,
  time: new Date().toISOString(),
  category: "dicomweb",
  transaction: "retrieve",
  requestId: `req-${n}`,
  server: { app: "voxelgate" },
  entities: [{ studyUid: `1.2.3.${n}` }],
  outcome: "success",
  outcomeCode: 0,
});

/** A sink that fails while `failing` is set and keeps what it took. */
class ToggleSink implements AuditSink {
  readonly name = "toggle";
  readonly description = "a test sink";
  failing = true;
  readonly taken: AuditRecord[] = [];
  async write(records: readonly AuditRecord[]): Promise<void> {
    if (this.failing) throw new Error("receiver unreachable");
    this.taken.push(...records);
  }
  async close(): Promise<void> {}
}

test("a failing sink spools to disk; after a restart the spool is delivered first, in order", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-spool-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const counts: Record<string, number> = {};
  const options = (spool: Spool) => ({
    spool,
    retryMinMs: 20,
    retryMaxMs: 50,
    count: (outcome: string, n: number) => (counts[outcome] = (counts[outcome] ?? 0) + n),
    warn: () => undefined,
  });
  const first = new ToggleSink();
  const durable = new DurableSink(first, options(await Spool.open(dir, 1 << 20)));
  for (let i = 1; i <= 5; i++) durable.enqueue(record(i));
  await durable.close(); // process stops while the sink is down
  assert.equal(first.taken.length, 0);
  assert.equal(counts.spooled, 5);
  assert.equal(durable.health().spooled, 5);

  // Next process: the spool left on disk is delivered before new records.
  const second = new ToggleSink();
  second.failing = false;
  const spool = await Spool.open(dir, 1 << 20);
  assert.equal(spool.count, 5);
  const next = new DurableSink(second, options(spool));
  next.enqueue(record(6));
  await waitFor("all six records delivered", () => (second.taken.length === 6 ? true : undefined));
  assert.deepEqual(
    second.taken.map((r) => r.id),
    ["r1", "r2", "r3", "r4", "r5", "r6"],
  );
  await next.flush();
  assert.equal(next.health().spooled, 0);
  assert.equal(next.health().up, true);
});

test("a full spool drops records with a count and makes readiness fail", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-spool-full-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A port nobody listens on: the TLS sink cannot connect.
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const registry = new Registry();
  const warnings: string[] = [];
  const config = parseConfig({ audit: { jsonl: false, syslog: [{ transport: "tls", host: "127.0.0.1", port }], spoolMaxBytes: 1500 } });
  assert.ok(config.audit);
  const recorder = await AuditRecorder.open({ settings: config.audit, dataDir: dir, registry, log: { warn: (m) => warnings.push(m) } });
  t.after(() => recorder.close());
  for (let i = 1; i <= 10; i++) {
    recorder.record(record(i));
    await recorder.flush();
  }
  const [health] = recorder.health();
  assert.ok(health && health.spooled > 0 && health.dropped > 0 && health.spooled + health.dropped === 11, JSON.stringify(health));
  assert.equal(health.up, false);
  assert.match(recorder.readiness(), /^failing: \d+ audit record\(s\) for syslog over TLS to 127\.0\.0\.1:\d+ were lost/);
  assert.ok(warnings.some((w) => /are lost: the audit spool .* is full/.test(w)));
  const metrics = await registry.metrics();
  const sink = `syslog-tls-127.0.0.1-${port}`;
  assert.match(metrics, new RegExp(`voxelgate_audit_events_total\\{sink="${sink}",outcome="dropped"\\} ${health.dropped}`));
  assert.match(metrics, new RegExp(`voxelgate_audit_spooled_events\\{sink="${sink}"\\} ${health.spooled}`));
  assert.match(metrics, new RegExp(`voxelgate_audit_sink_up\\{sink="${sink}"\\} 0`));
});

test("refused requests (401, 403) are recorded as security alerts with who and what", async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-alerts-"));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = parseConfig({ logLevel: "silent", port: 0, data: dataDir, audit: { fhir: {} } });
  const archive = await openArchive({ dataDir });
  const app = await buildApp(config, archive);
  // Stands in for the identity and authorization hooks of the gateway.
  app.addHook("onRequest", async (request, reply) => {
    const deny = request.headers["x-test-deny"];
    if (deny === "403") {
      request.principal = { kind: "user", subject: "u-42", clientId: "ohif", name: "Dr Who", roles: ["viewer"], scopes: [] };
      return reply.code(403).send({ error: "your grant does not cover this study" });
    }
    if (deny === "401") return reply.code(401).header("WWW-Authenticate", "Bearer").send({ error: "no bearer token" });
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  t.after(async () => {
    await app.close();
    await archive.close();
  });
  const url = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
  const study = "1.2.826.0.1.3680043.10.1139.1";
  assert.equal(
    (await httpRequest(`${url}/dicomweb/studies/${study}/metadata`, { headers: { "x-test-deny": "403", "x-request-id": "deny-403" } }))
      .status,
    403,
  );
  assert.equal((await httpRequest(`${url}/metrics`, { headers: { "x-test-deny": "401", "x-request-id": "deny-401" } })).status, 401);

  const records = await waitFor("two security alerts", async () => {
    const all = (await readJsonlAudit(join(dataDir, "audit"))).filter((r) => r.category === "security-alert");
    return all.length >= 2 ? all : undefined;
  });
  const forbidden = records.find((r) => r.requestId === "deny-403") as AuditRecord;
  assert.deepEqual(forbidden.principal, { kind: "user", subject: "u-42", clientId: "ohif", name: "Dr Who", roles: ["viewer"] });
  assert.deepEqual([forbidden.transaction, forbidden.status, forbidden.outcomeCode], ["retrieve", 403, 4]);
  assert.deepEqual(forbidden.entities, [{ studyUid: study }]);
  assert.equal(forbidden.reason, "your grant does not cover this study");
  const unauthenticated = records.find((r) => r.requestId === "deny-401") as AuditRecord;
  assert.deepEqual([unauthenticated.path, unauthenticated.status, unauthenticated.transaction], ["/metrics", 401, undefined]);

  const [alert] = toFhirAuditEvents(forbidden);
  assert.deepEqual([alert?.type.code, alert?.subtype?.[0]?.code, alert?.outcome], ["110113", "110132", "4"]);
  const [login] = toFhirAuditEvents(unauthenticated);
  assert.deepEqual([login?.type.code, login?.subtype?.[0]?.code], ["110114", "110122"]);
  if (!requireTools(t, TOOLS.xmllint)) return;
  for (const [r, eventId] of [
    [forbidden, "110113"],
    [unauthenticated, "110114"],
  ] as const) {
    const [xml] = toDicomAuditMessages(r);
    assert.ok(xml);
    assert.equal(schemaProblems(xml), undefined);
    assert.equal(elements(xml, "EventID")[0]?.["csd-code"], eventId);
    assert.equal(elements(xml, "EventIdentification")[0]?.EventOutcomeIndicator, "4");
  }
});
