/**
 * `npm run bench`: runs the benchmark suites, prints a table, optionally writes the rows as JSON.
 *
 *   node dist/bench/main.js [--quick] [--json FILE] [--only NAME] [--series-size N] [--no-peer]
 *
 * A suite is a function of a context (the timer and the iteration budget) that returns rows. The
 * harness stays generic: suites for STOW-RS, QIDO-RS, frames vs Orthanc plug in through SUITES.
 * A suite verifies what it measures and throws on a wrong answer, which fails the whole run.
 */
import { writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { archiveSuite } from "./archive.js";
import { codecsSuite } from "./codecs.js";
import { dicomCoreSuite } from "./dicom-core.js";
import { renderSuite } from "./render.js";
import { qidoScaleSuite } from "./qido-scale.js";
import { viewerSuite } from "./viewer.js";

/** A goal from the issue, checked against the measured figures. */
export interface Goal {
  /** E.g. "≥ 3× dcmjs". */
  text: string;
  met: boolean;
}

/** One measured figure: ours, and optionally the same work done by a peer library or server. */
export interface BenchRow {
  name: string;
  ours: number;
  peer?: number;
  /** Unit of `ours` and `peer`, e.g. "µs/op". */
  unit: string;
  /** Speed-up factor: peer time ÷ our time (> 1: we are faster). */
  ratio?: number;
  /** Who the peer is, e.g. "dcmjs 0.52.2". */
  peerName?: string;
  goals?: Goal[];
  note?: string;
}

export interface TimeOptions {
  /** Timed runs; the median is reported. Default: the context's `runs`. */
  runs?: number;
  /** Shortest wall time of one timed run (operations are batched until it is reached). */
  minRunMs?: number;
}

export interface Timing {
  /** Median over the timed runs, microseconds per operation. */
  medianUs: number;
  minUs: number;
  maxUs: number;
  runs: number;
  /** Operations per timed run. */
  batch: number;
}

/** Command-line options some suites take. */
export interface SuiteOptions {
  /** Instances in the archive suite's big series (default 1,000; 200 with --quick). */
  seriesSize?: number;
  /** False (--no-peer): leave out peer servers such as Orthanc even when installed. */
  peer: boolean;
}

export interface SuiteContext {
  quick: boolean;
  options: SuiteOptions;
  /** Warms `fn` up, then times it: median µs per call over several runs. */
  time(fn: () => unknown, options?: TimeOptions): Timing;
  /**
   * Like `time` for two functions, their runs interleaved so that load from elsewhere hits both
   * alike. Garbage left by one is partly collected in the other's runs: the slower, more
   * allocating side (a peer library) then looks a little better than it is, never worse.
   */
  timePair(ours: () => unknown, peer: () => unknown, options?: TimeOptions): { ours: Timing; peer: Timing };
  log(message: string): void;
}

export interface Suite {
  name: string;
  run(context: SuiteContext): BenchRow[] | Promise<BenchRow[]>;
}

const SUITES: Suite[] = [dicomCoreSuite, qidoScaleSuite, renderSuite, archiveSuite, codecsSuite, viewerSuite];

/** Results are kept here so the optimiser cannot drop a call whose value is unused. */
let sink: unknown;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function makeTimers(quick: boolean): Pick<SuiteContext, "time" | "timePair"> {
  // Quick: about 3 s for the DICOM core suite. Full: longer runs, so that garbage collection is paid inside them.
  const defaults = quick ? { runs: 7, minRunMs: 50, warmupMs: 300 } : { runs: 15, minRunMs: 100, warmupMs: 500 };
  /** Runs `fn` until the JIT has seen it for a while; returns the batch size of one timed run. */
  const warmUp = (fn: () => unknown, minRunMs: number): number => {
    let calls = 0;
    const start = performance.now();
    let elapsed = 0;
    while (calls < 3 || elapsed < defaults.warmupMs) {
      sink = fn();
      calls++;
      elapsed = performance.now() - start;
    }
    return Math.max(1, Math.ceil(minRunMs / Math.max(elapsed / calls, 1e-6)));
  };
  /** One timed run: µs per call. */
  const run = (fn: () => unknown, batch: number): number => {
    const start = performance.now();
    for (let i = 0; i < batch; i++) sink = fn();
    return ((performance.now() - start) * 1000) / batch;
  };
  const summary = (samples: number[], batch: number): Timing => ({
    medianUs: median(samples),
    minUs: Math.min(...samples),
    maxUs: Math.max(...samples),
    runs: samples.length,
    batch,
  });
  return {
    time(fn, options = {}) {
      const batch = warmUp(fn, options.minRunMs ?? defaults.minRunMs);
      const samples = Array.from({ length: options.runs ?? defaults.runs }, () => run(fn, batch));
      return summary(samples, batch);
    },
    timePair(ours, peer, options = {}) {
      const minRunMs = options.minRunMs ?? defaults.minRunMs;
      const batches = [warmUp(ours, minRunMs), warmUp(peer, minRunMs)] as const;
      const samples: [number[], number[]] = [[], []];
      for (let r = 0; r < (options.runs ?? defaults.runs); r++) {
        samples[0].push(run(ours, batches[0]));
        samples[1].push(run(peer, batches[1]));
      }
      return { ours: summary(samples[0], batches[0]), peer: summary(samples[1], batches[1]) };
    },
  };
}

interface Args {
  quick: boolean;
  json?: string;
  /** Run only the suites whose name contains one of these (case-insensitive). */
  only: string[];
  options: SuiteOptions;
}

const USAGE = "usage: node dist/bench/main.js [--quick] [--json FILE] [--only NAME]... [--series-size N] [--no-peer]\n";

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, only: [], options: { peer: true } };
  const value = (i: number, name: string): string => {
    const v = argv[i];
    if (v === undefined || v.startsWith("--")) throw new Error(`${name} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") args.quick = true;
    else if (a === "--only") args.only.push(value(++i, a).toLowerCase());
    else if (a === "--no-peer") args.options.peer = false;
    else if (a === "--series-size") {
      const n = Number(value(++i, a));
      if (!Number.isInteger(n) || n < 50 || n % 50 !== 0) throw new Error("--series-size must be a multiple of 50");
      args.options.seriesSize = n;
    } else if (a === "--json") {
      const file = argv[++i];
      if (!file) throw new Error("--json needs a file name");
      args.json = file;
    } else if (a?.startsWith("--json=")) args.json = a.slice("--json=".length);
    else if (a === "--help" || a === "-h") {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

function formatNumber(v: number | undefined, unit = ""): string {
  if (v === undefined || !Number.isFinite(v)) return "";
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) + unit;
}

/** Operations per second for a time per operation, when the unit says what that time is in. */
function opsPerSecond(value: number | undefined, unit: string): number | undefined {
  if (value === undefined || value <= 0) return undefined;
  if (unit === "µs/op") return 1e6 / value;
  if (unit === "ms/op") return 1e3 / value;
  return undefined;
}

function table(rows: BenchRow[]): string {
  const header = ["benchmark", "ours", "ours ops/s", "peer", "peer ops/s", "ratio", "goal", "met"];
  const lines = rows.map((r) => [
    r.name,
    `${formatNumber(r.ours)} ${r.unit}`,
    formatNumber(opsPerSecond(r.ours, r.unit)),
    r.peer === undefined ? "" : `${formatNumber(r.peer)} ${r.unit}${r.peerName ? ` (${r.peerName})` : ""}`,
    formatNumber(opsPerSecond(r.peer, r.unit)),
    r.ratio === undefined ? "" : `${formatNumber(r.ratio)}×`,
    (r.goals ?? []).map((g) => g.text).join("; "),
    r.goals?.length ? (r.goals.every((g) => g.met) ? "yes" : `NO (${r.goals.filter((g) => !g.met).length} missed)`) : "",
  ]);
  const numeric = new Set([1, 2, 4, 5]);
  const widths = header.map((h, c) => Math.max(h.length, ...lines.map((l) => (l[c] ?? "").length)));
  const fmt = (cells: string[]) =>
    cells
      .map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0)))
      .join(" │ ")
      .trimEnd();
  const rule = widths.map((w) => "─".repeat(w)).join("─┼─");
  const notes = rows.filter((r) => r.note).map((r) => `  ${r.name}: ${r.note}`);
  return [fmt(header), rule, ...lines.map(fmt), ...(notes.length ? ["", "notes:", ...notes] : [])].join("\n");
}

function machine(): Record<string, unknown> {
  const cpu = cpus()[0];
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpu: cpu?.model ?? "unknown",
    cpus: availableParallelism(),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const facts = machine();
  process.stdout.write(
    `Voxelgate bench${args.quick ? " (quick)" : ""}: node ${facts.node}, ${facts.platform}, ${facts.cpus} CPU(s), ${facts.cpu}\n`,
  );
  const log = (message: string) => process.stdout.write(`  ${message}\n`);
  const busy = (loadavg()[0] ?? 0) >= availableParallelism() * 0.5;
  if (busy)
    log(`load average ${loadavg()[0]?.toFixed(2)} on ${availableParallelism()} CPU(s): other work is running, figures will be noisy`);
  const context: SuiteContext = { quick: args.quick, options: args.options, ...makeTimers(args.quick), log };
  const rows: BenchRow[] = [];
  const started = performance.now();
  const suites = args.only.length ? SUITES.filter((s) => args.only.some((o) => s.name.toLowerCase().includes(o))) : SUITES;
  if (suites.length === 0)
    throw new Error(`no suite matches --only ${args.only.join(", ")}; suites: ${SUITES.map((s) => s.name).join(", ")}`);
  for (const suite of suites) {
    process.stdout.write(`\n[${suite.name}]\n`);
    const t0 = performance.now();
    rows.push(...(await suite.run(context)));
    log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  void sink;
  process.stdout.write(`\n${table(rows)}\n\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  if (args.json) {
    const out = { date: new Date().toISOString(), quick: args.quick, machine: facts, rows };
    writeFileSync(args.json, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`wrote ${args.json}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
