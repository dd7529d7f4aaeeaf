/**
 * The audit pipeline: record() hands a record to every configured sink's queue and returns at
 * once (a response never waits for audit); each sink delivers in the background behind its own
 * spool. Health and Prometheus metrics per sink; Application Activity start/stop recorded.
 */
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { Counter, Gauge, type Registry } from "prom-client";
import { DurableSink, type SinkHealth } from "./durable-sink.js";
import { FhirSink } from "./fhir-sink.js";
import { JsonlSink } from "./jsonl-sink.js";
import type { AuditRecord } from "./record.js";
import type { AuditSink } from "./sink.js";
import { Spool } from "./spool.js";
import { SyslogSink, type SyslogTarget } from "./syslog.js";

/** The `audit` block of the configuration (src/config.ts), defaults applied. */
export interface AuditSettings {
  jsonl: false | { dir?: string };
  fhir?: { dir?: string };
  syslog: SyslogTarget[];
  spoolDir?: string;
  spoolMaxBytes: number;
  retryMaxSeconds: number;
  /** AuditSourceID / FHIR observer (default "voxelgate"). */
  sourceId?: string;
}

export interface AuditLogger {
  warn(message: string): void;
}

export interface AuditRecorderOptions {
  settings: AuditSettings;
  dataDir: string;
  /** Where the metrics go (the server's /metrics registry). */
  registry?: Registry;
  log: AuditLogger;
  /** First retry delay after a sink failure (default 500 ms). */
  retryMinMs?: number;
}

/** Folders the sinks write to, relative paths resolved against the working directory. */
export function auditFolders(settings: AuditSettings, dataDir: string): { jsonl?: string; fhir?: string; spool: string } {
  const base = join(dataDir, "audit");
  return {
    jsonl: settings.jsonl === false ? undefined : resolve(settings.jsonl.dir ?? base),
    fhir: settings.fhir ? resolve(settings.fhir.dir ?? join(base, "fhir")) : undefined,
    spool: resolve(settings.spoolDir ?? join(base, "spool")),
  };
}

export class AuditRecorder {
  private constructor(
    readonly sinks: DurableSink[],
    readonly source: string,
  ) {}

  static async open(options: AuditRecorderOptions): Promise<AuditRecorder> {
    const { settings } = options;
    const folders = auditFolders(settings, options.dataDir);
    const sinks: AuditSink[] = [];
    if (folders.jsonl) sinks.push(new JsonlSink(folders.jsonl));
    if (folders.fhir) sinks.push(new FhirSink(folders.fhir));
    for (const target of settings.syslog) sinks.push(new SyslogSink(target));

    const registers = options.registry ? [options.registry] : [];
    const events = new Counter({
      name: "voxelgate_audit_events_total",
      help: "Audit records per sink and outcome: written (delivered), spooled (buffered on disk), dropped (lost: spool full)",
      labelNames: ["sink", "outcome"] as const,
      registers,
    });
    const durable: DurableSink[] = [];
    for (const sink of sinks) {
      const spool = await Spool.open(join(folders.spool, sink.name), settings.spoolMaxBytes);
      durable.push(
        new DurableSink(sink, {
          spool,
          retryMinMs: options.retryMinMs ?? 500,
          retryMaxMs: settings.retryMaxSeconds * 1000,
          count: (outcome, n) => events.inc({ sink: sink.name, outcome }, n),
          warn: (message) => options.log.warn(message),
        }),
      );
    }
    new Gauge({
      name: "voxelgate_audit_spooled_events",
      help: "Audit records waiting in the on-disk spool of a sink",
      labelNames: ["sink"] as const,
      registers,
      collect() {
        for (const s of durable) this.set({ sink: s.name }, s.health().spooled);
      },
    });
    new Gauge({
      name: "voxelgate_audit_sink_up",
      help: "1 when the audit sink accepts records, 0 while it fails (records are spooled)",
      labelNames: ["sink"] as const,
      registers,
      collect() {
        for (const s of durable) this.set({ sink: s.name }, s.up ? 1 : 0);
      },
    });
    const recorder = new AuditRecorder(durable, settings.sourceId ?? "voxelgate");
    recorder.#application("start");
    return recorder;
  }

  /** Queues a record for every sink; never throws, never waits. */
  record(record: AuditRecord): void {
    for (const sink of this.sinks) sink.enqueue(record);
  }

  health(): SinkHealth[] {
    return this.sinks.map((s) => s.health());
  }

  /**
   * For /readyz: "ok"; "degraded: …" while a sink fails but its spool holds the records (the
   * server stays ready: audit is delayed, not lost); "failing: …" once records are dropped.
   */
  readiness(): string {
    const health = this.health();
    const dropping = health.filter((h) => h.dropped > 0);
    if (dropping.length > 0) {
      return `failing: ${dropping.map((h) => `${h.dropped} audit record(s) for ${h.description} were lost (spool full or not writable)`).join("; ")}`;
    }
    const down = health.filter((h) => !h.up || h.spooled > 0);
    if (down.length === 0) return "ok";
    return `degraded: ${down
      .map(
        (h) =>
          `${h.description} ${h.up ? "is draining" : `is failing${h.lastError ? ` (${h.lastError})` : ""}`}, ${h.spooled} record(s) spooled on disk`,
      )
      .join("; ")}`;
  }

  /** Waits until every queued record is delivered or spooled. */
  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.flush()));
  }

  /** Records Application Stop, delivers or spools what is queued, closes the sinks. */
  async close(): Promise<void> {
    this.#application("stop");
    await Promise.all(this.sinks.map((s) => s.close()));
  }

  #application(activity: "start" | "stop"): void {
    this.record({
      id: randomUUID(),
      time: new Date().toISOString(),
      category: "application",
      activity,
      server: { app: this.source },
      entities: [],
      outcome: "success",
      outcomeCode: 0,
    });
  }
}
