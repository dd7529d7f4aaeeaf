/**
 * What the archive's HTTP integration tests share: a raw HTTP client (no automatic decompression,
 * streamed bodies), the archive server in-process or as the CLI child process on a data folder the
 * test keeps, synthetic DICOM instances made with our writer, and a listing of the data folder.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import http, { type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Readable } from "node:stream";
import { type ConfigInput, parseConfig } from "../../src/config.js";
import { Dataset, TransferSyntaxUids, type Vr, writePart10 } from "../../src/dicom/index.js";
import { startServer } from "../../src/http/server.js";
import type { Archive } from "../../src/store/archive.js";
import { openArchive } from "../../src/store/file-archive.js";
import { CLI } from "./voxelgate.js";

// ---------------------------------------------------------------------------------------------
// HTTP

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text(): string;
  json(): unknown;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer | string | Readable | AsyncIterable<Buffer>;
  /** Abort after this many ms (default 60 s). */
  timeoutMs?: number;
}

/** One HTTP request with node:http: the body exactly as sent (no gzip decoding), no keep-alive. */
export function httpRequest(url: string, options: HttpRequestOptions = {}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? "GET", headers: { connection: "close", ...options.headers }, agent: false });
    const timer = setTimeout(
      () => req.destroy(new Error(`no answer from ${options.method ?? "GET"} ${url} within ${options.timeoutMs ?? 60_000} ms`)),
      options.timeoutMs ?? 60_000,
    );
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on("end", () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text: () => body.toString("utf8"),
          json: () => JSON.parse(body.toString("utf8")) as unknown,
        });
      });
    });
    const body = options.body;
    if (body === undefined) req.end();
    else if (typeof body === "string" || Buffer.isBuffer(body)) req.end(body);
    else {
      const stream = body instanceof Readable ? body : Readable.from(body);
      // The server may answer (and close) before the body is sent: that is an answer, not a failure.
      stream.on("error", (err) => req.destroy(err));
      stream.pipe(req);
    }
  });
}

/** The `{ "error": reason }` text of an error reply (or the body as text). */
export function reasonOf(res: HttpResponse): string {
  try {
    const j = res.json() as { error?: unknown };
    if (typeof j.error === "string") return j.error;
  } catch {
    // not JSON
  }
  return res.text();
}

// ---------------------------------------------------------------------------------------------
// Multipart/related request bodies

export const dicomPartHeader = (boundary: string, type = "application/dicom"): Buffer =>
  Buffer.from(`--${boundary}\r\nContent-Type: ${type}\r\n\r\n`);

/** A whole multipart/related body with one part per buffer. */
export function multipartBody(
  parts: Buffer[],
  boundary = "voxelgate-test-boundary-7f3a",
  type = "application/dicom",
): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) chunks.push(dicomPartHeader(boundary, type), p, Buffer.from("\r\n"));
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="${type}"; boundary=${boundary}` };
}

// ---------------------------------------------------------------------------------------------
// STOW response datasets

type JsonDataset = Record<string, { vr: string; Value?: unknown[] }>;

export interface StowItem {
  sopClassUid?: string;
  sopUid?: string;
  retrieveUrl?: string;
  failureReason?: number;
  comment?: string;
}

/** ReferencedSOPSequence (00081199) and FailedSOPSequence (00081198) items of a STOW response. */
export function stowItems(json: unknown): { referenced: StowItem[]; failed: StowItem[]; retrieveUrl?: string } {
  const ds = json as JsonDataset;
  const item = (i: JsonDataset): StowItem => ({
    sopClassUid: i["00081150"]?.Value?.[0] as string | undefined,
    sopUid: i["00081155"]?.Value?.[0] as string | undefined,
    retrieveUrl: i["00081190"]?.Value?.[0] as string | undefined,
    failureReason: i["00081197"]?.Value?.[0] as number | undefined,
    comment: i["00000902"]?.Value?.[0] as string | undefined,
  });
  return {
    referenced: ((ds["00081199"]?.Value ?? []) as JsonDataset[]).map(item),
    failed: ((ds["00081198"]?.Value ?? []) as JsonDataset[]).map(item),
    retrieveUrl: ds["00081190"]?.Value?.[0] as string | undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Servers

export interface Cleanup {
  after(fn: () => unknown): unknown;
}

export interface InProcessServer {
  url: string;
  dicomweb: string;
  dataDir: string;
  archive: Archive;
  close(): Promise<void>;
}

/** startServer() on port 0 with a fresh data folder, or `folder` (removed at cleanup either way). */
export async function startInProcess(cleanup: Cleanup, overrides: ConfigInput = {}, folder?: string): Promise<InProcessServer> {
  const dataDir = folder ?? mkdtempSync(join(tmpdir(), "voxelgate-it-"));
  const config = parseConfig({ logLevel: "silent", port: 0, data: dataDir, ...overrides });
  const archive = await openArchive({ dataDir, duplicatePolicy: config.duplicatePolicy, maxInstanceBytes: config.maxInstanceBytes });
  const server = await startServer(config, archive);
  let closed: Promise<void> | undefined;
  const close = () => (closed ??= server.close().finally(() => rmSync(dataDir, { recursive: true, force: true })));
  cleanup.after(close);
  return { url: server.url, dicomweb: `${server.url}dicomweb`, dataDir, archive, close };
}

export interface ChildServer {
  url: string;
  dicomweb: string;
  pid: number;
  child: ChildProcess;
  output(): string;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** `voxelgate serve --port 0 --data <dataDir>` as a child process; the folder is the caller's. */
export async function spawnServer(dataDir: string, args: string[] = [], env: Record<string, string> = {}): Promise<ChildServer> {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", "--data", dataDir, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      process.removeListener("exit", killOnExit);
      resolve();
    });
  });
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`voxelgate printed no URL within 20 s:\n${output}`)), 20_000);
    const onData = (d: Buffer) => {
      output = (output + d.toString()).slice(-64 * 1024);
      const m = /Voxelgate is listening on (http:\/\/\S+)/.exec(output);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1].endsWith("/") ? m[1] : `${m[1]}/`);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`voxelgate exited (${code ?? signal}) before listening:\n${output}`));
    });
  }).catch((err: unknown) => {
    child.kill("SIGKILL");
    throw err;
  });
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { url, dicomweb: `${url}dicomweb`, pid: child.pid as number, child, output: () => output, exited, kill };
}

// ---------------------------------------------------------------------------------------------
// Data folder

/** Files under `dir` (relative paths, sorted); empty when the folder does not exist. */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

/** Every file under the data folder except the SQLite files, with sizes: what a test compares before/after. */
export function dataFolderSnapshot(dataDir: string): string[] {
  return [
    ...listFiles(join(dataDir, "blobs")).map((f) => `blobs/${f}`),
    ...listFiles(join(dataDir, "staging")).map((f) => `staging/${f}`),
  ].map((f) => `${f} ${statSync(join(dataDir, f)).size}`);
}

export const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");
export const sha256File = (path: string): string => sha256(readFileSync(path));
/** True when a blob file holding these bytes (named by their sha256, in any folder layout) is under `<data>/blobs`. */
export const hasBlob = (dataDir: string, sha: string): boolean =>
  listFiles(join(dataDir, "blobs")).some((f) => f.endsWith(`/${sha}.dcm`) || f === `${sha}.dcm`);

// ---------------------------------------------------------------------------------------------
// Synthetic instances

const padded = (value: string, vr: Vr): Buffer => {
  const b = Buffer.from(value, "latin1");
  if (b.length % 2 === 0) return b;
  return Buffer.concat([b, Buffer.from(vr === "UI" ? "\0" : " ", "latin1")]);
};

const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};

export interface SyntheticOptions {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  /** Pixel bytes (8-bit monochrome, rows × columns × frames); default 64 × 64 of a pattern. */
  rows?: number;
  columns?: number;
  frames?: number;
  /** Fills pixel byte i; default (i * 7 + seed) & 0xff. */
  seed?: number;
  patientName?: string;
  instanceNumber?: number;
  transferSyntaxUid?: string;
}

/** A Secondary Capture instance in Explicit VR Little Endian (or the given native syntax), made with our writer. */
export function syntheticInstance(o: SyntheticOptions): Buffer {
  const rows = o.rows ?? 64;
  const columns = o.columns ?? 64;
  const frames = o.frames ?? 1;
  const ds = new Dataset(true);
  const put = (tag: number, vr: Vr, bytes: Buffer) => ds.set({ tag, vr, bytes, position: -1 });
  const str = (tag: number, vr: Vr, value: string) => put(tag, vr, padded(value, vr));
  str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.7");
  str(0x00080018, "UI", o.sopUid);
  str(0x00080060, "CS", "OT");
  str(0x00100010, "PN", o.patientName ?? "TEST^SYNTHETIC");
  str(0x00100020, "LO", "SYN-1");
  str(0x0020000d, "UI", o.studyUid);
  str(0x0020000e, "UI", o.seriesUid);
  str(0x00200013, "IS", String(o.instanceNumber ?? 1));
  put(0x00280002, "US", u16(1));
  str(0x00280004, "CS", "MONOCHROME2");
  if (frames > 1) str(0x00280008, "IS", String(frames));
  put(0x00280010, "US", u16(rows));
  put(0x00280011, "US", u16(columns));
  put(0x00280100, "US", u16(8));
  put(0x00280101, "US", u16(8));
  put(0x00280102, "US", u16(7));
  put(0x00280103, "US", u16(0));
  const n = rows * columns * frames;
  const pixels = Buffer.allocUnsafe(n + (n % 2));
  const seed = o.seed ?? 0;
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + seed) & 0xff;
  put(0x7fe00010, "OB", pixels);
  return writePart10(ds, { transferSyntaxUid: o.transferSyntaxUid ?? TransferSyntaxUids.ExplicitVRLittleEndian });
}

/** A UID of exactly `digits` digits after the root (fixed length, so templates can be patched in place). */
export const fixedUid = (root: string, n: number, digits = 12): string => `${root}.9${String(n).padStart(digits - 1, "0")}`;

/** Files of a pixel cache (`<data>/cache/native` or `rendered`), without temporary ones. */
export const cacheFiles = (dataDir: string, which: "native" | "rendered"): string[] =>
  listFiles(join(dataDir, "cache", which)).filter((f) => !f.split("/").pop()?.startsWith("."));

/** Cache files are written after the answer is sent: waits (at most 10 s) until at least `count` are there. */
export async function settledCacheFiles(dataDir: string, which: "native" | "rendered", count: number): Promise<string[]> {
  for (let i = 0; i < 200 && cacheFiles(dataDir, which).length < count; i++) await new Promise((r) => setTimeout(r, 50));
  return cacheFiles(dataDir, which);
}
