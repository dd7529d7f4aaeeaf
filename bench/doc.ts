/**
 * docs/benchmarks.md from a run's JSON, so the page is reproducible:
 *
 *   npm run bench -- --json bench-results.json --doc docs/benchmarks.md     # measure and write
 *   npm run bench:doc -- bench-results.json [docs/benchmarks.md]              # write from a saved run
 *
 * The page holds the machine's facts, the exact command, the goals of the archive and pixels
 * issues marked met or not, every row with its ratio, and where Voxelgate loses (with the reason
 * when one is known, from LOSS_REASONS below).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { BenchResults, BenchRow } from "./main.js";

/** Why we lose where we know it: [pattern on the row name, explanation]. */
const LOSS_REASONS: Array<[RegExp, string]> = [
  [
    /^STOW batch 1 /,
    "one instance per request: Voxelgate makes every acknowledged instance durable before it answers (file fsync, then an index commit shared by the requests in flight — group commit); with one 512 KiB instance per request the syncs dominate, Orthanc's default storage does less per request",
  ],
  [
    /STOW .*server CPU/,
    "Voxelgate parses every instance fully (DICOM JSON metadata, frame table, checks) at STOW so that metadata and frames are cheap later",
  ],
  [
    /^STOW/,
    "Voxelgate parses every instance fully at STOW (DICOM JSON metadata, frame table, checks) and makes it durable (file fsync, then one index commit per batch) before it answers, so that metadata and frames are cheap later; on 2 shared cores that work is not hidden",
  ],
  [
    /^Rendered JPEG/,
    "a cold image costs Voxelgate about 6 ms of server CPU, as it costs Orthanc: the HTTP thread hands it to a render thread (a message round trip), which windows it in JavaScript and has sharp encode it, and sharp itself hands the work to libuv and libvips threads (about 1 ms of JPEG coding, over 1 ms of hand-offs); Orthanc renders and encodes in C++ in the request thread. 3× Orthanc would need under 2 ms per image, less than these hand-offs and the JPEG coding together",
  ],
  [
    /retrieve/i,
    "Voxelgate streams the stored files through Node streams into the multipart body (1 MiB reads); Orthanc writes from C++ buffers; both are bound by loopback and the client on 2 cores",
  ],
  [
    /^Frames .*concurrency/,
    "frames are served from the stored file by offset (no parsing); at these rates the bench client on the same 2 cores is a large share of the cost, so differences of ±15 % are noise",
  ],
  [
    /static-file ceiling/,
    "the ceiling serves raw bytes without multipart or index lookups; Voxelgate adds a SQLite lookup (cached frame table) and the multipart envelope per frame",
  ],
  [
    /Time to first image/,
    "four requests in a row; on small studies every server answers each in a few ms, so the sum is dominated by round trips, not by work",
  ],
  [
    /^Gateway overhead/,
    "the gateway's own work per request: credentials (a SHA-256 of the API key, or a remembered verified token), the grant check against the study's patient, the rate-limit buckets and an audit record written to the JSON-lines file",
  ],
  [
    /^Proxy in front of Orthanc: series metadata p50, \d+ instances$/,
    "store and forward: the gateway waits for Orthanc's whole answer, then parses it, rewrites the URLs to itself and sends it (about 40 µs of work per instance); within metadataMaxAgeSeconds it answers from its cache instead (the 'cached' row)",
  ],
  [
    /^Proxy in front of Orthanc: frame p50, cold/,
    "the first request of a frame waits for Orthanc's whole answer (it is cached whole and checked before it is sent); every later request is served from the gateway's cache",
  ],
  [
    /^Proxy in front of Orthanc: QIDO/,
    "a search is one more HTTP hop (Orthanc closes every connection, so each also pays a new TCP connection) plus parsing, grant filtering and URL rewriting of the results",
  ],
  [/^QIDO/, "small queries cost about the same in both (HTTP + SQLite), so the ratio is near 1 and noise decides"],
];

const num = (v: number | undefined): string => {
  if (v === undefined || !Number.isFinite(v)) return "";
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
};
const cell = (s: string): string => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** Which issue a goal belongs to: the DICOM core, the archive (STOW, metadata, QIDO), the pixels (frames, rendering, codecs) or the gateway. */
function issueOf(row: BenchRow): "core" | "archive" | "pixels" | "gateway" {
  const suite = row.suite ?? "";
  if (/DICOM core/i.test(suite)) return "core";
  if (/Gateway/i.test(suite)) return "gateway";
  if (/QIDO/i.test(suite) || /STOW|metadata|QIDO/i.test(row.name)) return "archive";
  return "pixels";
}

const ISSUE_TITLES = {
  core: "DICOM core (parsing, frame locator)",
  archive: "Archive issue (STOW, metadata, QIDO)",
  pixels: "Pixels issue (frames, transcoding, rendering, codecs)",
  gateway: "Gateway issue (auth, audit and rate limits on; proxy mode in front of Orthanc)",
} as const;

export function renderDoc(results: BenchResults): string {
  const { machine: m, rows } = results;
  const out: string[] = [];
  out.push("# Benchmarks", "");
  out.push(
    `<!-- Generated by bench/doc.ts from a run's JSON (npm run bench:doc); edit bench/doc.ts, not this file. -->`,
    "",
    `${results.quick ? "**Quick (smoke) run** — small corpus, few repetitions; figures are indicative only; a full run (`npm run bench -- --json bench.json --doc docs/benchmarks.md`, on a quiet machine) replaces this page. " : ""}Run of ${results.date.slice(0, 16).replace("T", " ")} UTC, ${Math.round(results.seconds / 60)} min${results.base ? `, against ${results.base}` : ""}.`,
    "",
    "```sh",
    results.command,
    "```",
    "",
    "## Machine",
    "",
    "| | |",
    "|---|---|",
    `| CPU | ${cell(m.cpu)}, ${m.cpus} core(s) available |`,
    `| RAM | ${m.memoryGb} GB |`,
    `| OS | ${cell(m.os ?? m.platform)} |`,
    `| Node | ${m.node} |`,
    `| Peers | ${results.peers.length ? results.peers.map(cell).join(", ") : "none"} |`,
    `| Load average at start | ${m.loadAverage.join(", ")}${(m.loadAverage[0] ?? 0) >= m.cpus * 0.5 ? " (other work was running: figures are noisy)" : ""} |`,
    "",
    "## How to read the figures",
    "",
    "Both servers run on the same machine in the same run, on the same generated data, asked the same",
    "questions by the same client; absolute figures are context, the **ratio** is the result. The ratio",
    "is always oriented so that **> 1 means Voxelgate is better**: peer time ÷ Voxelgate time for",
    "latencies, costs (CPU seconds, RSS) and times; Voxelgate rate ÷ peer rate for throughputs",
    "(inst/s, MB/s, frames/s, images/s). Rows without a ratio are Voxelgate-only or correctness counts.",
    "Every phase checks its answers (counts, UIDs, bytes, decoded pixels); a wrong answer fails the run.",
    "",
  );

  const goals = rows.flatMap((r) => (r.goals ?? []).map((g) => ({ row: r, goal: g })));
  out.push("## Goals", "");
  if (goals.length === 0) out.push("No goal was measured in this run.", "");
  for (const issue of ["archive", "pixels", "core", "gateway"] as const) {
    const mine = goals.filter((g) => issueOf(g.row) === issue);
    if (mine.length === 0) continue;
    out.push(`### ${ISSUE_TITLES[issue]}`, "");
    out.push("| Goal | Measured by | Voxelgate | Peer | Ratio | Met |", "|---|---|---:|---:|---:|---|");
    for (const { row, goal } of mine)
      out.push(
        `| ${cell(goal.text)} | ${cell(row.name)} | ${num(row.ours)} ${cell(row.unit)} | ${row.peer === undefined ? "" : `${num(row.peer)} ${cell(row.unit)}`} | ${row.ratio === undefined ? "" : `${num(row.ratio)}×`} | ${goal.met ? "met" : "**not met**"} |`,
      );
    out.push("");
  }

  out.push("## Results", "");
  const suites = [...new Set(rows.map((r) => r.suite ?? "bench"))];
  for (const suite of suites) {
    const mine = rows.filter((r) => (r.suite ?? "bench") === suite);
    const peerNames = [...new Set(mine.flatMap((r) => (r.peerName ? [r.peerName] : [])))];
    out.push(`### ${suite}`, "");
    if (peerNames.length) out.push(`Peer: ${peerNames.join(", ")}.`, "");
    out.push("| Benchmark | Voxelgate | Peer | Ratio | Notes |", "|---|---:|---:|---:|---|");
    for (const r of mine) {
      const peer = r.peer === undefined ? "" : `${num(r.peer)}${r.peerName && peerNames.length > 1 ? ` (${cell(r.peerName)})` : ""}`;
      out.push(
        `| ${cell(r.name)} | ${num(r.ours)} ${cell(r.unit)} | ${peer} | ${r.ratio === undefined ? "" : `${num(r.ratio)}×`} | ${cell(r.note ?? "")} |`,
      );
    }
    out.push("");
  }

  out.push("## Where Voxelgate loses, and why", "");
  const isCeiling = (r: BenchRow) => /ceiling/.test(r.name);
  const losses = rows.filter((r) => r.ratio !== undefined && r.ratio < 0.95 && !isCeiling(r));
  if (losses.length === 0) out.push("No row with a ratio below 0.95 in this run.", "");
  else {
    // Rows that lose for the same reason are listed together, the reason once.
    const byReason = new Map<string, BenchRow[]>();
    for (const r of losses) {
      const reason =
        LOSS_REASONS.find(([re]) => re.test(r.name))?.[1] ?? "no explanation recorded yet (add one to LOSS_REASONS in bench/doc.ts)";
      byReason.set(reason, [...(byReason.get(reason) ?? []), r]);
    }
    for (const [reason, list] of byReason) {
      out.push(
        `- ${list.map((r) => `**${r.name}** ${num(r.ratio)}× (${num(r.ours)} vs ${num(r.peer)} ${r.unit})`).join("; ")}.`,
        `  Why: ${reason}.`,
      );
    }
    out.push("");
  }
  const ceiling = rows.filter((r) => isCeiling(r) && r.ratio !== undefined);
  if (ceiling.length) {
    out.push("How close frame serving is to the ceiling (node's static file serving of the same bytes, same run):", "");
    for (const r of ceiling)
      out.push(
        `- ${r.name.replace(": Voxelgate vs static-file ceiling", "")}: ${Math.round((r.ratio ?? 0) * 100)} % of ${num(r.peer)} ${r.unit}`,
      );
    out.push("");
  }
  const missed = goals.filter((g) => !g.goal.met);
  if (missed.length) {
    out.push("Goals not met in this run:", "");
    for (const { row, goal } of missed) out.push(`- ${goal.text} (${row.name}: ${num(row.ours)} ${row.unit})`);
    out.push("");
  }
  return `${out.join("\n").trimEnd()}\n`;
}

export function writeDoc(results: BenchResults, file: string): void {
  writeFileSync(file, renderDoc(results));
}

// `node dist/bench/doc.js results.json [out.md]`
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [input, output = "docs/benchmarks.md"] = process.argv.slice(2);
  if (!input) {
    process.stderr.write("usage: node dist/bench/doc.js RESULTS.json [docs/benchmarks.md]\n");
    process.exit(2);
  }
  const results = JSON.parse(readFileSync(input, "utf8")) as BenchResults;
  if (!Array.isArray(results.rows) || !results.machine) {
    process.stderr.write(`${input} is not a bench result (written by npm run bench -- --json FILE)\n`);
    process.exit(2);
  }
  writeDoc(results, output);
  process.stdout.write(`wrote ${output} from ${input} (${results.rows.length} rows)\n`);
}
