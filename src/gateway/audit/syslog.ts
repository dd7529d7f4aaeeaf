/**
 * DICOM audit messages over syslog, as IHE ATNA (ITI-20) sends them: RFC 5424 messages with
 * facility 10 (security/authorization), APP-NAME "voxelgate", MSGID "IHE+RFC-3881", no
 * structured data, and the XML as a UTF-8 MSG with BOM; over TLS (RFC 5425, octet-counting
 * framing, server certificate checked against `ca`, optional client certificate for mutual
 * authentication) or UDP (RFC 5426, one message per datagram).
 *
 * TLS gives at-least-once delivery: a batch is re-sent whole after a broken connection, so a
 * repository may see a message twice, never none. UDP cannot confirm delivery; only errors the
 * network reports (ICMP port unreachable on the connected socket) trigger spooling.
 */
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { isIP } from "node:net";
import tls from "node:tls";
import { toDicomAuditMessages } from "./dicom-audit-message.js";
import type { AuditRecord } from "./record.js";
import { type AuditSink, safeName } from "./sink.js";

export interface SyslogTarget {
  transport: "udp" | "tls";
  host: string;
  port: number;
  /** PEM files: CA that signed the repository's certificate; this server's certificate and key (mutual TLS). */
  ca?: string;
  cert?: string;
  key?: string;
  /** RFC 5424 APP-NAME (default "voxelgate"). */
  appName?: string;
}

/** ITI-20 MSGID for DICOM/RFC 3881 audit messages. */
export const ATNA_MSGID = "IHE+RFC-3881";
/** Facility 10: security/authorization messages. */
const FACILITY = 10;
/** Largest UDP payload over IPv4; bigger messages are sent without the per-instance list. */
const MAX_UDP_BYTES = 65_507;
const BOM = "\uFEFF";

/** RFC 5424 header field: printable US-ASCII without spaces, at most `max` characters, "-" when empty. */
const headerField = (s: string | undefined, max: number): string => {
  const clean = (s ?? "").replace(/[^\x21-\x7e]/g, "").slice(0, max);
  return clean === "" ? "-" : clean;
};

/** One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG`. */
export function formatSyslogMessage(options: { time: string; severity: number; appName: string; xml: string; host?: string }): Buffer {
  const pri = FACILITY * 8 + options.severity;
  const header = [
    `<${pri}>1`,
    options.time,
    headerField(options.host ?? hostname(), 255),
    headerField(options.appName, 48),
    headerField(String(process.pid), 128),
    headerField(ATNA_MSGID, 32),
    "-",
  ].join(" ");
  return Buffer.from(`${header} ${BOM}${options.xml}`, "utf8");
}

interface Transport {
  send(messages: Buffer[]): Promise<void>;
  connected(): boolean;
  close(): Promise<void>;
}

class TlsTransport implements Transport {
  #socket: tls.TLSSocket | undefined;
  #connecting: Promise<tls.TLSSocket> | undefined;
  readonly #options: tls.ConnectionOptions;

  constructor(target: SyslogTarget) {
    const read = (path: string | undefined) => (path ? readFileSync(path) : undefined);
    this.#options = {
      host: target.host,
      port: target.port,
      ca: read(target.ca),
      cert: read(target.cert),
      key: read(target.key),
      // SNI and name check use the host name; an IP address is checked against the certificate's IP SANs.
      ...(isIP(target.host) ? {} : { servername: target.host }),
      rejectUnauthorized: true,
    };
  }

  connected(): boolean {
    return this.#socket !== undefined;
  }

  async send(messages: Buffer[]): Promise<void> {
    const socket = await this.#connect();
    // Octet counting (RFC 5425 §4.3): "MSG-LEN SP SYSLOG-MSG", the length in bytes.
    const frames = messages.map((m) => Buffer.concat([Buffer.from(`${m.length} `), m]));
    await new Promise<void>((resolve, reject) => {
      const onClose = () => reject(new Error("the syslog receiver closed the connection"));
      socket.once("close", onClose);
      socket.write(Buffer.concat(frames), (err) => {
        socket.removeListener("close", onClose);
        if (err) reject(err);
        else resolve();
      });
    }).catch((err: unknown) => {
      this.#drop(socket);
      throw err;
    });
  }

  #connect(): Promise<tls.TLSSocket> {
    if (this.#socket) return Promise.resolve(this.#socket);
    this.#connecting ??= new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect(this.#options);
      socket.setTimeout(10_000, () =>
        socket.destroy(new Error(`no TLS connection to ${this.#options.host}:${this.#options.port} within 10 s`)),
      );
      socket.once("secureConnect", () => {
        socket.setTimeout(0);
        socket.setKeepAlive(true, 30_000);
        this.#socket = socket;
        resolve(socket);
      });
      // The receiver never writes: its closing (end) or any error means the connection is gone.
      socket.on("data", () => undefined);
      socket.once("end", () => this.#drop(socket));
      socket.once("close", () => {
        this.#drop(socket);
        // Closed before the handshake without an error (a receiver going down as we connect): this
        // attempt must still fail, or every later send would wait on it forever. After
        // secureConnect the promise is settled and this changes nothing.
        reject(
          new Error(`the syslog receiver at ${this.#options.host}:${this.#options.port} closed the connection during the TLS handshake`),
        );
      });
      socket.once("error", (err) => {
        this.#drop(socket);
        reject(err);
      });
    }).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  #drop(socket: tls.TLSSocket): void {
    if (this.#socket === socket) this.#socket = undefined;
    socket.destroy();
  }

  async close(): Promise<void> {
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.end(resolve));
  }
}

class UdpTransport implements Transport {
  #socket: dgram.Socket | undefined;
  #ready: Promise<dgram.Socket> | undefined;
  #failed = false;

  constructor(private readonly target: SyslogTarget) {}

  connected(): boolean {
    return !this.#failed;
  }

  async send(messages: Buffer[]): Promise<void> {
    const socket = await this.#open();
    for (const m of messages) {
      await new Promise<void>((resolve, reject) => socket.send(m, (err) => (err ? reject(err) : resolve())));
    }
    this.#failed = false;
  }

  #open(): Promise<dgram.Socket> {
    this.#ready ??= new Promise<dgram.Socket>((resolve, reject) => {
      const socket = dgram.createSocket(isIP(this.target.host) === 6 ? "udp6" : "udp4");
      // A connected socket hears ICMP "port unreachable" (ECONNREFUSED): the only failure UDP can report.
      socket.on("error", () => {
        this.#failed = true;
        this.#reset(socket);
      });
      socket.connect(this.target.port, this.target.host, () => {
        this.#socket = socket;
        resolve(socket);
      });
      socket.once("error", reject);
    }).catch((err: unknown) => {
      this.#ready = undefined;
      throw err;
    });
    return this.#ready;
  }

  #reset(socket: dgram.Socket): void {
    if (this.#socket === socket) {
      this.#socket = undefined;
      this.#ready = undefined;
    }
    try {
      socket.close();
    } catch {
      // already closed
    }
  }

  async close(): Promise<void> {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#ready = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

export class SyslogSink implements AuditSink {
  readonly name: string;
  readonly description: string;
  readonly #transport: Transport;
  readonly #appName: string;

  constructor(private readonly target: SyslogTarget) {
    this.name = safeName(`syslog-${target.transport}-${target.host}-${target.port}`);
    this.description = `syslog over ${target.transport.toUpperCase()} to ${target.host}:${target.port}`;
    this.#transport = target.transport === "tls" ? new TlsTransport(target) : new UdpTransport(target);
    this.#appName = target.appName ?? "voxelgate";
  }

  connected(): boolean {
    return this.#transport.connected();
  }

  async write(records: readonly AuditRecord[]): Promise<void> {
    const messages = records.flatMap((record) => {
      const severity = record.outcomeCode === 0 ? 5 : 4; // notice; warning for failures
      const format = (xml: string) => formatSyslogMessage({ time: record.time, severity, appName: this.#appName, xml });
      const full = toDicomAuditMessages(record).map(format);
      if (this.target.transport === "tls" || full.every((m) => m.length <= MAX_UDP_BYTES)) return full;
      return toDicomAuditMessages(record, { listInstances: false }).map(format);
    });
    if (messages.length > 0) await this.#transport.send(messages);
  }

  close(): Promise<void> {
    return this.#transport.close();
  }
}
