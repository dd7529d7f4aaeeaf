/** What every audit destination implements; DurableSink adds queueing, spooling and retries around it. */
import type { AuditRecord } from "./record.js";

export interface AuditSink {
  /** Metrics label and spool folder name: "jsonl", "fhir", "syslog-tls-host-6514". */
  readonly name: string;
  /** For people: "syslog over TLS to audit.example.org:6514". */
  readonly description: string;
  /** Delivers records as durably as the transport allows; throws when it cannot (the records are then spooled). */
  write(records: readonly AuditRecord[]): Promise<void>;
  /** False while the sink knows it cannot deliver (a syslog peer closed the connection). */
  connected?(): boolean;
  close(): Promise<void>;
}

/** A name safe as a file name and a Prometheus label value. */
export const safeName = (s: string): string => s.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "");
