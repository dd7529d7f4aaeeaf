/**
 * `npm run bench`: runs the benchmark suites, prints a table, optionally writes the rows as JSON.
 *
 *   node dist/bench/main.js [--quick] [--json FILE] [--doc FILE] [--only NAME] [--series-size N] [--no-peer]
 *   node dist/bench/main.js --base URL [--header 'Name: value']... [--allow-stow] [--quick] [--json FILE]
 *
 * --base measures the read-only transactions (QIDO, metadata, frames, rendered, time to first
 * image) of any DICOMweb server on what it already holds (bench/remote.ts); no STOW unless
 * --allow-stow. --doc writes docs/benchmarks.md from the run (bench/doc.ts; also
 * `npm run bench:doc -- results.json`).
 *
 * A suite is a function of a context (the timer and the iteration budget) that returns rows. The
 * harness stays generic: suites for STOW-RS, QIDO-RS, frames vs Orthanc plug in through SUITES.
 * A suite verifies what it measures and throws on a wrong answer, which fails the whole run.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, release, totalmem, type } from "node:os";
import { performance } from "node:perf_hooks";
import { archiveSuite } from "./archive.js";
import { codecsSuite } from "./codecs.js";
import { dicomCoreSuite } from "./dicom-core.js";
import { renderSuite } from "./render.js";
import { qidoScaleSuite } from "./qido-scale.js";
import { viewerSuite } from "./viewer.js";
import { gatewaySuite } from "./gateway.js";
import { remoteSuite } from "./remote.js";
import { writeDoc } from "./doc.js";

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
  /** Speed-up factor: peer time ÷ our time, or our rate ÷ the peer's (> 1: we are faster). */
  ratio?: number;
  /** True for rates (images/s, MB/s), false for times and costs; absent when not said. */
  higherIsBetter?: boolean;
  /** Who the peer is, e.g. "dcmjs 0.52.2". */
  peerName?: string;
  goals?: Goal[];
  note?: string;
  /** The suite that measured it (set by the harness). */
  suite?: string;
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
  /** --base: the DICOMweb root of a server to measure instead of the built-in suites. */
  base?: string;
  /** --header 'Name: value' (repeatable): sent with every request to --base (e.g. Authorization). */
  headers: Record<string, string>;
  /** --allow-stow: the --base run may store a small generated series first. */
  allowStow: boolean;
  /** --big-stow-mb N: size of the single big STOW request (default 2,048 in the full run, 0 = none; none in the quick run). */
  bigStowMb?: number;
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

// One suite a line (helpers add theirs here).
// prettier-ignore
const SUITES: Suite[] = [
  dicomCoreSuite,
  qidoScaleSuite,
  renderSuite,
  archiveSuite,
  codecsSuite,
  viewerSuite,
  gatewaySuite,
];

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
  doc?: string;
  /** Run only the suites whose name contains one of these (case-insensitive). */
  only: string[];
  options: SuiteOptions;
}

const USAGE =
  "usage: node dist/bench/main.js [--quick] [--json FILE] [--doc FILE] [--only NAME]... [--series-size N] [--big-stow-mb N] [--no-peer]\n" +
  "       node dist/bench/main.js --base URL [--header 'Name: value']... [--allow-stow] [--quick] [--json FILE]\n";

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, only: [], options: { peer: true, headers: {}, allowStow: false } };
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
    else if (a === "--allow-stow") args.options.allowStow = true;
    else if (a === "--big-stow-mb") {
      const n = Number(value(++i, a));
      if (!Number.isInteger(n) || n < 0) throw new Error("--big-stow-mb must be a whole number of MB (0: leave the big STOW out)");
      args.options.bigStowMb = n;
    } else if (a === "--base") {
      const base = value(++i, a).replace(/\/+$/, "");
      if (!/^https?:\/\//.test(base))
        throw new Error(`--base must be an http(s) URL of a DICOMweb root, e.g. http://host:8042/dicomweb (got ${base})`);
      args.options.base = base;
    } else if (a === "--header") {
      const header = value(++i, a);
      const colon = header.indexOf(":");
      if (colon <= 0) throw new Error(`--header must look like 'Name: value' (got ${header})`);
      args.options.headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
    } else if (a === "--doc") args.doc = value(++i, a);
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

/** What --json writes (and bench/doc.ts reads). */
export interface BenchResults {
  date: string;
  quick: boolean;
  /** The command as typed, e.g. "npm run bench -- --quick". */
  command: string;
  /** Wall time of the whole run, seconds. */
  seconds: number;
  machine: Machine;
  /** Peer servers and libraries, as they named themselves (e.g. "Orthanc 1.10.1 + DICOMweb 1.7"). */
  peers: string[];
  /** --base URL, when the run measured a remote server. */
  base?: string;
  rows: BenchRow[];
}

export interface Machine {
  node: string;
  platform: string;
  os: string;
  cpu: string;
  cpus: number;
  memoryGb: number;
  loadAverage: number[];
}

function machine(): Machine {
  const cpu = cpus()[0];
  let os = `${type()} ${release()}`;
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1];
    if (pretty) os = `${pretty} (${type()} ${release()})`;
  } catch {
    // not Linux: the kernel's name will do
  }
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    os,
    cpu: cpu?.model ?? "unknown",
    cpus: availableParallelism(),
    memoryGb: Math.round(totalmem() / 2 ** 30),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** The command line as a user would type it again. */
function commandLine(): string {
  const args = process.argv.slice(2).map((a) => (/^[\w./:=@-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`));
  // Authorization and other header values are not written to files.
  const shown = args.map((a, i) => (args[i - 1] === "--header" ? `'${a.replace(/^'|'$/g, "").split(":")[0]}: …'` : a));
  return `npm run bench${shown.length ? ` -- ${shown.join(" ")}` : ""}`;
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
  // --base: only the read-only suite against that server.
  const candidates = args.options.base ? [remoteSuite] : SUITES;
  const suites = args.only.length ? candidates.filter((s) => args.only.some((o) => s.name.toLowerCase().includes(o))) : candidates;
  if (suites.length === 0)
    throw new Error(`no suite matches --only ${args.only.join(", ")}; suites: ${SUITES.map((s) => s.name).join(", ")}`);
  for (const suite of suites) {
    process.stdout.write(`\n[${suite.name}]\n`);
    const t0 = performance.now();
    rows.push(...(await suite.run(context)).map((r) => ({ ...r, suite: suite.name })));
    log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  void sink;
  process.stdout.write(`\n${table(rows)}\n\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  const results: BenchResults = {
    date: new Date().toISOString(),
    quick: args.quick,
    command: commandLine(),
    seconds: Math.round((performance.now() - started) / 1000),
    machine: facts,
    peers: [...new Set(rows.flatMap((r) => (r.peerName ? [r.peerName] : [])))],
    ...(args.options.base ? { base: args.options.base } : {}),
    rows,
  };
  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(`wrote ${args.json}\n`);
  }
  if (args.doc) {
    writeDoc(results, args.doc);
    process.stdout.write(`wrote ${args.doc}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
