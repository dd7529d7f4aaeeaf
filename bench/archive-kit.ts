/**
 * What the archive bench's phases share: the servers under test (a Side each), answer checks
 * (a wrong answer throws BenchCheckError and fails the run), percentiles, the STOW and QIDO
 * operations, concurrency and CPU meters, and how a row is put together (ratio conventions).
 */
import { performance } from "node:perf_hooks";
import type { CorpusInstance } from "./corpus.js";
import type { BenchRow, Goal } from "./main.js";
import { cpuSeconds, peakRssMb, resetPeakRss } from "./peers/child.js";
import { type Client, decodedBody, multipartBody, type Response } from "./peers/http.js";
import type { PeerServer } from "./peers/orthanc.js";

export const DICOM_JSON = "application/dicom+json";

export class BenchCheckError extends Error {}

export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new BenchCheckError(`wrong answer: ${message}`);
}

export const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.max(0, Math.ceil(sorted.length * p) - 1)] as number;
};
export const median = (values: number[]): number => percentile(values, 0.5);
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const round = (v: number, digits = 2): number => Number(v.toFixed(digits));
export const fmt = (v: number, digits = 1): string =>
  v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** One server under test. */
export interface Side {
  label: string;
  /** The server process (absent against a remote base URL: no CPU or memory figures then). */
  server?: PeerServer;
  client: Client;
}

export type Json = Record<string, { vr?: string; Value?: unknown[] } | undefined>;

export function parseJson(r: Response, what: string): unknown {
  const text = decodedBody(r).toString("utf8");
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BenchCheckError(`wrong answer: ${what}: not JSON: ${text.slice(0, 200)}`);
  }
}

export function expectStatus(r: Response, status: number, what: string): void {
  check(r.status === status, `${what}: HTTP ${r.status} (expected ${status}) ${decodedBody(r).toString("utf8").slice(0, 300)}`);
}

export const firstValue = (ds: Json | undefined, tag: string): unknown => ds?.[tag]?.Value?.[0];

// ---------------------------------------------------------------------------------------------
// The operations (each checks its answer)

/** STOW-RS of `files` in one multipart/related request; checks every instance is referenced and none failed. */
export async function stow(side: Side, files: CorpusInstance[]): Promise<void> {
  const body = multipartBody(files.map((f) => f.chunks));
  const r = await side.client.request("/studies", {
    method: "POST",
    headers: { "content-type": body.contentType, accept: DICOM_JSON },
    body: body.chunks,
  });
  const what = `${side.label} STOW of ${files.length} instance(s)`;
  expectStatus(r, 200, what);
  const response = parseJson(r, what) as Json;
  const failed = response["00081198"]?.Value ?? [];
  check(failed.length === 0, `${what}: ${failed.length} failed: ${JSON.stringify(failed).slice(0, 300)}`);
  const referenced = (response["00081199"]?.Value ?? []) as Json[];
  check(referenced.length === files.length, `${what}: ${referenced.length} referenced instances, expected ${files.length}`);
  const uids = new Set(referenced.map((item) => String(firstValue(item, "00081155"))));
  for (const f of files) check(uids.has(f.sopUid), `${what}: ${f.sopUid} is not referenced`);
}

/** Stores `instances` in batches of `batch`, `concurrency` requests in flight; wall time in ms. */
export async function stowPass(side: Side, instances: CorpusInstance[], batch: number, concurrency: number): Promise<number> {
  const batches: Array<typeof instances> = [];
  for (let i = 0; i < instances.length; i += batch) batches.push(instances.slice(i, i + batch));
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < batches.length) await stow(side, batches[next++] as typeof instances);
    }),
  );
  return performance.now() - started;
}

/** A QIDO query; checks the result count. */
export async function qido(side: Side, path: string, expected: number): Promise<number> {
  const r = await side.client.request(path, { headers: { accept: DICOM_JSON } });
  const what = `${side.label} QIDO ${path}`;
  // An empty result may come as 204 (PS3.18 §8.3.3.1.1 allows both).
  const results = r.status === 204 ? [] : (expectStatus(r, 200, what), parseJson(r, what));
  check(Array.isArray(results), `${what}: not an array`);
  check(results.length === expected, `${what}: ${results.length} results, expected ${expected}`);
  return r.ms;
}

/**
 * Runs `fn(0)`, `fn(1)`, … with `concurrency` calls in flight until `total` calls were started, or
 * (with a budget) at least `min` and `budgetMs` has passed; the calls made and the wall time in ms.
 */
export async function inFlight(
  concurrency: number,
  total: number,
  fn: (i: number) => Promise<unknown>,
  budget?: { min: number; ms: number },
): Promise<{ calls: number; ms: number }> {
  let next = 0;
  const started = performance.now();
  const more = () => next < total && !(budget && next >= budget.min && performance.now() - started > budget.ms);
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (more()) await fn(next++);
    }),
  );
  return { calls: next, ms: performance.now() - started };
}

// ---------------------------------------------------------------------------------------------
// Measuring

/** Server CPU seconds spent between `start` and `stop`, per side. */
export class CpuMeter {
  private readonly start: number[];
  constructor(private readonly sides: Side[]) {
    this.start = sides.map((s) => (s.server ? cpuSeconds(s.server.pid) : NaN));
  }
  /** CPU seconds per side since the start (NaN without a process to read). */
  seconds(): number[] {
    return this.sides.map((s, i) => (s.server ? cpuSeconds(s.server.pid) - (this.start[i] as number) : NaN));
  }
  /** E.g. "server CPU: Voxelgate 1.23 s, Orthanc 4.56 s". */
  note(): string {
    return `server CPU ${this.sides.map((s, i) => `${s.label} ${s.server ? fmt(cpuSeconds(s.server.pid) - (this.start[i] as number), 2) : "?"} s`).join(", ")}`;
  }
}

export interface RowInput {
  name: string;
  unit: string;
  ours: number;
  peer?: number;
  /** Throughput (higher is better): ratio ours ÷ peer; otherwise a time: peer ÷ ours. */
  higherIsBetter: boolean;
  /** No ratio (a count, not a speed). */
  noRatio?: boolean;
  goals?: Goal[];
  note?: string;
  /** The peer's name when it is not the peer server (e.g. "node static files"). */
  peerName?: string;
}

/** The Voxelgate side and, when there is one, its peer, plus how rows are added: what every phase gets. */
export interface Phase {
  quick: boolean;
  ours: Side;
  peer?: Side;
  /** `ours` first, then the peer if any: the order requests are interleaved in. */
  sides: Side[];
  addRow(row: RowInput): void;
  log(message: string): void;
}

/** A goal relative to the peer: only when there is a peer to compare with. */
export const ratioGoal = (text: string, ratio: number | undefined, min: number): Goal[] =>
  ratio === undefined ? [] : [{ text, met: ratio >= min }];

/**
 * A row adder: ratio ours ÷ peer for throughputs (higher is better), peer ÷ ours for times, so a
 * ratio above 1 always means Voxelgate is ahead.
 */
export function rowAdder(rows: BenchRow[], peer: Side | undefined, log: (message: string) => void): (r: RowInput) => void {
  const peerName = peer?.server?.name ?? peer?.label;
  return (r) => {
    const ratio =
      r.noRatio || r.peer === undefined || r.peer <= 0 || r.ours <= 0 ? undefined : r.higherIsBetter ? r.ours / r.peer : r.peer / r.ours;
    const row: BenchRow = { name: r.name, ours: r.ours, unit: r.unit };
    if (r.peer !== undefined) {
      row.peer = r.peer;
      row.peerName = r.peerName ?? peerName;
    }
    if (ratio !== undefined) row.ratio = round(ratio, 2);
    row.higherIsBetter = r.higherIsBetter;
    if (r.goals?.length) row.goals = r.goals;
    if (r.note) row.note = r.note;
    rows.push(row);
    log(
      `${r.name}: ours ${fmt(r.ours, 2)} ${r.unit}${r.peer !== undefined ? `, ${r.peerName ?? peer?.label} ${fmt(r.peer, 2)} ${r.unit}` : ""}${ratio !== undefined ? `, ${fmt(ratio, 2)}×` : ""}`,
    );
  };
}

/** Peak RSS of each side's server since the last `reset` (VmHWM, reset through /proc/<pid>/clear_refs). */
export class RssMeter {
  constructor(private readonly sides: Side[]) {
    for (const s of sides) if (s.server) resetPeakRss(s.server.pid);
  }
  /** MB per side (NaN without a process to read). */
  peaks(): number[] {
    return this.sides.map((s) => (s.server ? peakRssMb(s.server.pid) : NaN));
  }
}

/** Runs `fn` on every side, the requests of the sides interleaved one by one (load from elsewhere hits both alike). */
export async function interleaved<T>(sides: Side[], count: number, fn: (side: Side, i: number) => Promise<T>): Promise<Map<Side, T[]>> {
  const out = new Map<Side, T[]>(sides.map((s) => [s, []]));
  for (let i = 0; i < count; i++) for (const side of sides) (out.get(side) as T[]).push(await fn(side, i));
  return out;
}
