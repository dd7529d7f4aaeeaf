/**
 * The archive, Voxelgate against Orthanc side by side in one run: both servers started here as
 * users run them (the compiled `voxelgate serve`; Debian's Orthanc 1.10 + DICOMweb plugin, full
 * study and series metadata, default SQLite index), both fed the same generated corpus
 * (bench/corpus.ts) and asked the same questions by the same keep-alive client in this process.
 *
 * Phases (each answer checked; a wrong one throws and fails the run, a slow one never does):
 *  1. STOW-RS throughput: 50 instances per request one request at a time, then one instance per
 *     request four at a time (a second series with other UIDs: nothing is stored twice).
 *  2. Series metadata of the big series: cold (right after the last STOW), first request once
 *     Voxelgate's pre-warm had time to run, warm (median of 20); Accept-Encoding: gzip for both.
 *  3. Single uncompressed frames as OHIF asks for them: latency p50/p95, and frames/s at
 *     concurrency 8.
 *  4. QIDO-RS: a small query mix on the stored corpus, p50/p95.
 *  5. Whole-series retrieve (multipart application/dicom, transfer-syntax=*), MB/s.
 * Server CPU seconds per phase (/proc/<pid>/stat) and peak RSS go into the notes.
 *
 * Without Orthanc installed, Voxelgate runs alone and the notes say how to install it; under
 * CI=true a missing Orthanc is an error.
 */
import { performance } from "node:perf_hooks";
import { BIG_ROWS, type BigSeries, type CorpusInstance, makeBigSeries, makeSmallStudies, type SmallStudy } from "./corpus.js";
import type { BenchRow, Goal, Suite, SuiteContext } from "./main.js";
import { cpuSeconds, peakRssMb } from "./peers/child.js";
import { boundaryOf, Client, DelimiterCounter, decodedBody, multipartBody, parseMultipart, type Response } from "./peers/http.js";
import { ORTHANC_PACKAGES, orthancInstalled, type PeerServer, startOrthanc } from "./peers/orthanc.js";
import { startVoxelgate } from "./peers/voxelgate.js";
import { seededRandom } from "./seeded-random.js";

const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const SERIES_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';
const DICOM_JSON = "application/dicom+json";

const STOW_GOAL = 3;
const METADATA_WARM_GOAL_MS = 50;
const METADATA_RATIO_GOAL = 10;
const FRAME_P50_GOAL_MS = 3;

class BenchCheckError extends Error {}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new BenchCheckError(`wrong answer: ${message}`);
}

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.max(0, Math.ceil(sorted.length * p) - 1)] as number;
};
const median = (values: number[]): number => percentile(values, 0.5);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round = (v: number, digits = 2): number => Number(v.toFixed(digits));
const fmt = (v: number, digits = 1): string => v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** One server under test. */
interface Side {
  label: string;
  server: PeerServer;
  client: Client;
}

type Json = Record<string, { vr?: string; Value?: unknown[] } | undefined>;

function parseJson(r: Response, what: string): unknown {
  const text = decodedBody(r).toString("utf8");
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BenchCheckError(`wrong answer: ${what}: not JSON: ${text.slice(0, 200)}`);
  }
}

function expectStatus(r: Response, status: number, what: string): void {
  check(r.status === status, `${what}: HTTP ${r.status} (expected ${status}) ${decodedBody(r).toString("utf8").slice(0, 300)}`);
}

const firstValue = (ds: Json | undefined, tag: string): unknown => ds?.[tag]?.Value?.[0];

// ---------------------------------------------------------------------------------------------
// The operations (each checks its answer)

/** STOW-RS of `files` in one multipart/related request; checks every instance is referenced and none failed. */
async function stow(side: Side, files: CorpusInstance[]): Promise<void> {
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
async function stowPass(side: Side, instances: CorpusInstance[], batch: number, concurrency: number): Promise<number> {
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

interface MetadataAnswer {
  ms: number;
  bytes: number;
  encoding: string;
}

/** Series metadata with Accept-Encoding: gzip; checks the array holds exactly the series' instances. */
async function seriesMetadata(side: Side, series: BigSeries): Promise<MetadataAnswer> {
  const r = await side.client.request(`/studies/${series.studyUid}/series/${series.seriesUid}/metadata`, {
    headers: { accept: DICOM_JSON, "accept-encoding": "gzip" },
  });
  const what = `${side.label} series metadata`;
  expectStatus(r, 200, what);
  const items = parseJson(r, what) as Json[];
  check(Array.isArray(items), `${what}: not an array`);
  check(items.length === series.instances.length, `${what}: ${items.length} instances, expected ${series.instances.length}`);
  const uids = new Set(items.map((item) => String(firstValue(item, "00080018"))));
  for (const instance of series.instances) check(uids.has(instance.sopUid), `${what}: ${instance.sopUid} is missing`);
  const some = items[items.length >> 1];
  check(firstValue(some, "00280010") === BIG_ROWS, `${what}: Rows ${String(firstValue(some, "00280010"))}, expected ${BIG_ROWS}`);
  check(firstValue(some, "0020000E") === series.seriesUid, `${what}: SeriesInstanceUID`);
  const pixelData = some?.["7FE00010"] as { BulkDataURI?: unknown; InlineBinary?: unknown } | undefined;
  check(pixelData === undefined || typeof pixelData.BulkDataURI === "string", `${what}: Pixel Data is not a BulkDataURI`);
  return { ms: r.ms, bytes: r.bytes, encoding: String(r.headers["content-encoding"] ?? "identity") };
}

/** Frame 1 of one instance of the big series, as OHIF asks for it; checks its length (and optionally its bytes). */
async function frame(side: Side, series: BigSeries, index: number, compare: boolean): Promise<number> {
  const instance = series.instances[index];
  check(instance !== undefined, `no instance ${index}`);
  const r = await side.client.request(`/studies/${series.studyUid}/series/${series.seriesUid}/instances/${instance.sopUid}/frames/1`, {
    headers: { accept: FRAME_ACCEPT },
  });
  const what = `${side.label} frame 1 of instance ${index + 1}`;
  expectStatus(r, 200, what);
  const parts = parseMultipart(r.body, r.headers["content-type"]);
  check(parts.length === 1, `${what}: ${parts.length} parts`);
  const bytes = (parts[0] as { body: Buffer }).body;
  check(bytes.length === series.rows * series.columns * 2, `${what}: ${bytes.length} bytes, expected ${series.rows * series.columns * 2}`);
  if (compare) check(bytes.equals(series.pixels[index] ?? Buffer.alloc(0)), `${what}: the bytes differ from the source pixels`);
  return r.ms;
}

/** A QIDO query; checks the result count. */
async function qido(side: Side, path: string, expected: number): Promise<number> {
  const r = await side.client.request(path, { headers: { accept: DICOM_JSON } });
  const what = `${side.label} QIDO ${path}`;
  // An empty result may come as 204 (PS3.18 §8.3.3.1.1 allows both).
  const results = r.status === 204 ? [] : (expectStatus(r, 200, what), parseJson(r, what));
  check(Array.isArray(results), `${what}: not an array`);
  check(results.length === expected, `${what}: ${results.length} results, expected ${expected}`);
  return r.ms;
}

/** The whole big series as multipart/related application/dicom, as stored; counts the parts as they stream. */
async function retrieveSeries(side: Side, series: BigSeries): Promise<{ ms: number; bytes: number }> {
  let counter: DelimiterCounter | undefined;
  let boundaryError: unknown;
  const what = `${side.label} series retrieve`;
  const r = await side.client.request(`/studies/${series.studyUid}/series/${series.seriesUid}`, {
    headers: { accept: SERIES_ACCEPT },
    onData: (chunk) => {
      counter?.push(chunk);
    },
    onHeaders: (headers) => {
      try {
        counter = new DelimiterCounter(boundaryOf(headers["content-type"]));
      } catch (e) {
        boundaryError = e;
      }
    },
  });
  expectStatus(r, 200, what);
  if (boundaryError) throw boundaryError;
  check(counter !== undefined && counter.closed, `${what}: no closing delimiter`);
  check(counter.count - 1 === series.instances.length, `${what}: ${counter.count - 1} parts, expected ${series.instances.length}`);
  check(
    r.bytes >= series.bytes && r.bytes <= series.bytes + series.instances.length * 4096,
    `${what}: ${r.bytes} bytes for ${series.bytes} bytes of files`,
  );
  return { ms: r.ms, bytes: r.bytes };
}

// ---------------------------------------------------------------------------------------------
// Measuring

/** Server CPU seconds spent between `start` and `stop`, per side. */
class CpuMeter {
  private readonly start: number[];
  constructor(private readonly sides: Side[]) {
    this.start = sides.map((s) => cpuSeconds(s.server.pid));
  }
  /** E.g. "server CPU: Voxelgate 1.23 s, Orthanc 4.56 s". */
  note(): string {
    return `server CPU ${this.sides.map((s, i) => `${s.label} ${fmt(cpuSeconds(s.server.pid) - (this.start[i] as number), 2)} s`).join(", ")}`;
  }
}

interface RowInput {
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
}

export const archiveSuite: Suite = {
  name: "Archive: Voxelgate vs Orthanc",
  async run(context: SuiteContext) {
    const quick = context.quick;
    const count = context.options.seriesSize ?? (quick ? 200 : 1000);
    check(count >= 50 && count % 50 === 0, `--series-size must be a multiple of 50 (got ${count})`);
    const notes: string[] = [];

    // -- Is the peer there? (before the corpus: fail fast under CI)
    const wantPeer = context.options.peer !== false;
    const peerInstalled = orthancInstalled();
    if (wantPeer && !peerInstalled) {
      const message = `Orthanc not installed (apt-get install ${ORTHANC_PACKAGES})`;
      if (process.env.CI === "true") throw new Error(`CI is missing the bench's peer: ${message}`);
      notes.push(message);
      context.log(`${message}: Voxelgate runs alone`);
    } else if (!wantPeer) notes.push("Orthanc left out (--no-peer)");

    // -- Corpus
    let t0 = performance.now();
    const big = makeBigSeries(count, 0);
    const second = makeBigSeries(count, 1, big.pixels);
    const small = makeSmallStudies();
    const smallFiles = small.flatMap((s) => s.series.flatMap((se) => se.instances));
    context.log(
      `corpus: 2 series × ${count} CT 512×512 instances (${fmt(big.bytes / 1e6)} MB each), ${small.length} small studies (${smallFiles.length} instances) in ${fmt((performance.now() - t0) / 1000)} s`,
    );

    // -- Servers
    t0 = performance.now();
    const started = await Promise.allSettled([startVoxelgate(), wantPeer && peerInstalled ? startOrthanc() : Promise.resolve(undefined)]);
    const servers = started.flatMap((s) => (s.status === "fulfilled" && s.value ? [s.value] : []));
    const sides: Side[] = [];
    try {
      for (const s of started) if (s.status === "rejected") throw s.reason;
      const [voxelgateServer, orthancServer] = started.map((s) => (s.status === "fulfilled" ? s.value : undefined));
      if (!voxelgateServer) throw new Error("Voxelgate did not start");
      const ours: Side = { label: "Voxelgate", server: voxelgateServer, client: new Client(voxelgateServer.dicomweb) };
      sides.push(ours);
      const peer: Side | undefined = orthancServer
        ? { label: "Orthanc", server: orthancServer, client: new Client(orthancServer.dicomweb) }
        : undefined;
      if (peer) sides.push(peer);
      const peerName = peer?.server.name;
      context.log(
        `started ${sides.map((s) => `${s.server.name} (pid ${s.server.pid})`).join(", ")} in ${fmt((performance.now() - t0) / 1000)} s`,
      );
      const suiteCpu = new CpuMeter(sides);

      const rows: BenchRow[] = [];
      const addRow = (r: RowInput): void => {
        const ratio =
          r.noRatio || r.peer === undefined || r.peer <= 0 || r.ours <= 0
            ? undefined
            : r.higherIsBetter
              ? r.ours / r.peer
              : r.peer / r.ours;
        const row: BenchRow = { name: r.name, ours: r.ours, unit: r.unit };
        if (r.peer !== undefined) {
          row.peer = r.peer;
          row.peerName = peerName;
        }
        if (ratio !== undefined) row.ratio = round(ratio, 2);
        if (r.goals?.length) row.goals = r.goals;
        if (r.note) row.note = r.note;
        rows.push(row);
        context.log(
          `${r.name}: ours ${fmt(r.ours, 2)} ${r.unit}${r.peer !== undefined ? `, ${peer?.label} ${fmt(r.peer, 2)} ${r.unit}` : ""}${ratio !== undefined ? `, ${fmt(ratio, 2)}×` : ""}`,
        );
      };
      /** A goal relative to the peer: only when there is a peer to compare with. */
      const ratioGoal = (text: string, ratio: number | undefined, min: number): Goal[] =>
        ratio === undefined ? [] : [{ text, met: ratio >= min }];

      // ---- 1. STOW-RS
      const stowModes = [
        { label: "batch 50 × concurrency 1", series: big, batch: 50, concurrency: 1 },
        { label: "batch 1 × concurrency 4", series: second, batch: 1, concurrency: 4 },
      ];
      const cold = new Map<Side, MetadataAnswer>();
      for (const mode of stowModes) {
        const cpu = new CpuMeter(sides);
        const ms = new Map<Side, number>();
        for (const side of sides) {
          ms.set(side, await stowPass(side, mode.series.instances, mode.batch, mode.concurrency));
          // Cold metadata: the first request, right after the STOW of the last instance (before Voxelgate's 1 s pre-warm).
          if (mode.series === big) cold.set(side, await seriesMetadata(side, big));
        }
        const perSecond = (side: Side | undefined) => (side ? count / ((ms.get(side) as number) / 1000) : undefined);
        const mbPerSecond = (side: Side | undefined) => (side ? mode.series.bytes / 1e6 / ((ms.get(side) as number) / 1000) : undefined);
        const oursRate = perSecond(ours) as number;
        const peerRate = perSecond(peer);
        addRow({
          name: `STOW ${mode.label}, ${count} × 512 KiB CT`,
          unit: "inst/s",
          ours: round(oursRate, 1),
          peer: peerRate === undefined ? undefined : round(peerRate, 1),
          higherIsBetter: true,
          goals: ratioGoal(`≥ ${STOW_GOAL}× Orthanc`, peerRate ? oursRate / peerRate : undefined, STOW_GOAL),
          note: `${sides.map((s) => `${s.label} ${fmt((ms.get(s) as number) / 1000, 2)} s`).join(", ")}; ${cpu.note()}`,
        });
        addRow({
          name: `STOW ${mode.label}, throughput`,
          unit: "MB/s",
          ours: round(mbPerSecond(ours) as number, 1),
          peer: peer ? round(mbPerSecond(peer) as number, 1) : undefined,
          higherIsBetter: true,
        });
      }
      // The small studies, untimed (QIDO needs them).
      for (const side of sides) await stow(side, smallFiles);

      // ---- 2. Series metadata
      {
        const cpu = new CpuMeter(sides);
        const coldOurs = cold.get(ours) as MetadataAnswer;
        const coldPeer = peer ? cold.get(peer) : undefined;
        addRow({
          name: `Series metadata, cold (right after STOW), ${count} inst.`,
          unit: "ms",
          ours: round(coldOurs.ms),
          peer: coldPeer ? round(coldPeer.ms) : undefined,
          higherIsBetter: false,
          note: `first request after the last STOW, before Voxelgate's 1 s pre-warm; ${sides.map((s) => `${s.label} ${fmt((cold.get(s) as MetadataAnswer).bytes / 1024, 0)} KiB ${(cold.get(s) as MetadataAnswer).encoding}`).join(", ")}`,
        });
        // The second series was stored last: 1.5 s later, Voxelgate's pre-warm has assembled it (what a viewer sees).
        await sleep(1500);
        const first = new Map<Side, MetadataAnswer>();
        for (const side of sides) first.set(side, await seriesMetadata(side, second));
        addRow({
          name: `Series metadata, first request 1.5 s after STOW, ${count} inst.`,
          unit: "ms",
          ours: round((first.get(ours) as MetadataAnswer).ms),
          peer: peer ? round((first.get(peer) as MetadataAnswer).ms) : undefined,
          higherIsBetter: false,
          note: "the series stored one instance per request; Voxelgate assembles a series' metadata 1 s after its last STOW",
        });
        const runs = 20;
        const budgetMs = quick ? 8000 : 60_000;
        const times = new Map<Side, number[]>(sides.map((s) => [s, []]));
        const sideStart = new Map<Side, number>(sides.map((s) => [s, performance.now()]));
        let spent = 0;
        for (let i = 0; i < runs; i++) {
          for (const side of sides) {
            const list = times.get(side) as number[];
            // A slow peer stops early (at least 5 runs) so the quick run stays quick.
            if (list.length >= 5 && side !== ours && spent > budgetMs) continue;
            list.push((await seriesMetadata(side, big)).ms);
            if (side !== ours) spent = performance.now() - (sideStart.get(side) as number);
          }
        }
        const warmOurs = median(times.get(ours) as number[]);
        const warmPeer = peer ? median(times.get(peer) as number[]) : undefined;
        const ratio = warmPeer === undefined ? undefined : warmPeer / warmOurs;
        addRow({
          name: `Series metadata, warm (median), ${count} inst.`,
          unit: "ms",
          ours: round(warmOurs),
          peer: warmPeer === undefined ? undefined : round(warmPeer),
          higherIsBetter: false,
          goals: [
            { text: `≤ ${METADATA_WARM_GOAL_MS} ms`, met: warmOurs <= METADATA_WARM_GOAL_MS },
            ...ratioGoal(
              `≥ ${METADATA_RATIO_GOAL}× Orthanc${count === 1000 ? "" : " (goal set for 1,000 inst.)"}`,
              ratio,
              METADATA_RATIO_GOAL,
            ),
          ],
          note: `Accept-Encoding: gzip; runs ${sides.map((s) => `${s.label} ${(times.get(s) as number[]).length}`).join(", ")}; p95 ${sides.map((s) => `${s.label} ${fmt(percentile(times.get(s) as number[], 0.95), 1)} ms`).join(", ")}; ${cpu.note()}`,
        });
      }

      // ---- 3. Single frames (OHIF's request)
      {
        const cpu = new CpuMeter(sides);
        const random = seededRandom(0xf4a3e);
        const picks = Array.from({ length: 200 }, () => Math.floor(random() * count));
        // One full comparison with the source pixels per server, then timed requests, interleaved.
        for (const side of sides) await frame(side, big, picks[0] as number, true);
        const times = new Map<Side, number[]>(sides.map((s) => [s, []]));
        for (const index of picks) for (const side of sides) (times.get(side) as number[]).push(await frame(side, big, index, false));
        const latency = cpu.note();
        const p = (side: Side | undefined, q: number) => (side ? percentile(times.get(side) as number[], q) : undefined);
        const p50 = p(ours, 0.5) as number;
        addRow({
          name: "Frame (uncompressed, 512×512×16), p50",
          unit: "ms",
          ours: round(p50),
          peer: peer ? round(p(peer, 0.5) as number) : undefined,
          higherIsBetter: false,
          goals: [{ text: `≤ ${FRAME_P50_GOAL_MS} ms`, met: p50 <= FRAME_P50_GOAL_MS }],
          note: `${picks.length} requests of random instances, one at a time, Accept: ${FRAME_ACCEPT}; ${latency}`,
        });
        addRow({
          name: "Frame (uncompressed, 512×512×16), p95",
          unit: "ms",
          ours: round(p(ours, 0.95) as number),
          peer: peer ? round(p(peer, 0.95) as number) : undefined,
          higherIsBetter: false,
        });
        const total = quick ? 400 : 2000;
        const concurrency = 8;
        const rates = new Map<Side, number>();
        const cpuThroughput = new CpuMeter(sides);
        for (const side of sides) {
          const order = Array.from({ length: total }, () => Math.floor(random() * count));
          let next = 0;
          const t = performance.now();
          await Promise.all(
            Array.from({ length: concurrency }, async () => {
              while (next < order.length) await frame(side, big, order[next++] as number, false);
            }),
          );
          rates.set(side, total / ((performance.now() - t) / 1000));
        }
        addRow({
          name: `Frames/s at concurrency ${concurrency}`,
          unit: "frames/s",
          ours: round(rates.get(ours) as number, 0),
          peer: peer ? round(rates.get(peer) as number, 0) : undefined,
          higherIsBetter: true,
          note: `${total} requests per server; ${cpuThroughput.note()}`,
        });
      }

      // ---- 4. QIDO-RS
      {
        const cpu = new CpuMeter(sides);
        const [first] = small as [SmallStudy];
        const queries: Array<[string, string, number]> = [
          // Orthanc does not percent-decode query values: "^" goes literally, and "M*ller*" stands in
          // for "Müller*" (which a URL can only carry percent-encoded; see the probe below).
          ["PatientName wildcard", "/studies?PatientName=M*ller*", 2],
          ["PatientName exact", "/studies?PatientName=Smith^John", 1],
          ["StudyDate range", "/studies?StudyDate=20200101-20211231", 3],
          ["all studies, includefield=all", "/studies?includefield=all", small.length + 2],
          ["series of a study", `/studies/${first.studyUid}/series`, first.series.length],
          [`instances of the ${count}-inst. series`, `/studies/${big.studyUid}/series/${big.seriesUid}/instances`, count],
          [
            `instances of the ${count}-inst. series, includefield=all`,
            `/studies/${big.studyUid}/series/${big.seriesUid}/instances?includefield=all`,
            count,
          ],
        ];
        const runs = quick ? 10 : 20;
        const budgetMs = quick ? 3000 : 15_000;
        for (const [label, path, expected] of queries) {
          const times = new Map<Side, number[]>(sides.map((s) => [s, []]));
          const spent = new Map<Side, number>(sides.map((s) => [s, 0]));
          for (const side of sides) await qido(side, path, expected); // warm-up, checked
          for (let i = 0; i < runs; i++) {
            for (const side of sides) {
              const list = times.get(side) as number[];
              if (list.length >= 3 && (spent.get(side) as number) > budgetMs) continue;
              const ms = await qido(side, path, expected);
              list.push(ms);
              spent.set(side, (spent.get(side) as number) + ms);
            }
          }
          const p = (side: Side, q: number) => percentile(times.get(side) as number[], q);
          addRow({
            name: `QIDO ${label}, p50`,
            unit: "ms",
            ours: round(p(ours, 0.5)),
            peer: peer ? round(p(peer, 0.5)) : undefined,
            higherIsBetter: false,
            note: `${path.length > 90 ? `${path.slice(0, 87)}...` : path} → ${expected}; p95 ${sides.map((s) => `${s.label} ${fmt(p(s, 0.95), 1)} ms`).join(", ")}; runs ${sides.map((s) => (times.get(s) as number[]).length).join("/")}`,
          });
        }
        // Non-ASCII matching (percent-encoded UTF-8, as a URL must carry it): checked on ours; what the peer answers is only reported.
        const nonAscii: Array<[string, number]> = [
          ["Müller*", 2],
          ["Øster^Åse", 1],
          ["müller^zoë", 1],
        ];
        let peerFound = 0;
        const misses: string[] = [];
        for (const [query, expected] of nonAscii) {
          const path = `/studies?PatientName=${encodeURIComponent(query)}`;
          await qido(ours, path, expected);
          if (peer) {
            const r = await peer.client.request(path, { headers: { accept: DICOM_JSON } });
            const found = r.status === 200 ? (parseJson(r, path) as unknown[]).length : 0;
            peerFound += Math.min(found, expected);
            if (found !== expected) misses.push(`${query} → ${r.status === 200 || r.status === 204 ? found : `HTTP ${r.status}`}`);
          }
        }
        const wanted = nonAscii.reduce((n, [, e]) => n + e, 0);
        addRow({
          name: "QIDO non-ASCII PatientName (UTF-8, percent-encoded): studies found",
          unit: `of ${wanted}`,
          ours: wanted,
          peer: peer ? peerFound : undefined,
          higherIsBetter: true,
          noRatio: true,
          note: `a correctness check, not a speed figure: ${nonAscii.map(([q, e]) => `${q} (${e})`).join(", ")}${misses.length ? `; ${peer?.label} answers ${misses.join(", ")}: it does not percent-decode query values` : ""}`,
        });
        context.log(`QIDO ${cpu.note()}`);
        notes.push(`QIDO phase ${cpu.note()}`);
      }

      // ---- 5. Whole-series retrieve
      {
        const cpu = new CpuMeter(sides);
        const runs = quick ? 2 : 3;
        const rates = new Map<Side, number[]>(sides.map((s) => [s, []]));
        for (let i = 0; i < runs; i++) {
          for (const side of sides) {
            const r = await retrieveSeries(side, big);
            (rates.get(side) as number[]).push(r.bytes / 1e6 / (r.ms / 1000));
          }
        }
        addRow({
          name: `Series retrieve (multipart DICOM, as stored), ${count} inst.`,
          unit: "MB/s",
          ours: round(median(rates.get(ours) as number[]), 0),
          peer: peer ? round(median(rates.get(peer) as number[]), 0) : undefined,
          higherIsBetter: true,
          note: `${fmt(big.bytes / 1e6)} MB per request, median of ${runs}; ${cpu.note()}`,
        });
      }

      // ---- Whole suite: server CPU and memory
      const rss = sides.map((s) => `${s.label} ${fmt(peakRssMb(s.server.pid), 0)} MB`).join(", ");
      const totalCpu = sides.map((s) => cpuSeconds(s.server.pid));
      addRow({
        name: "Server CPU, whole suite",
        unit: "s",
        ours: round(totalCpu[0] as number),
        peer: peer ? round(totalCpu[1] as number) : undefined,
        higherIsBetter: false,
        note: [`since start; ${suiteCpu.note()}; peak RSS ${rss}`, ...notes].join("; "),
      });
      return rows;
    } finally {
      for (const side of sides) side.client.close();
      await Promise.all(servers.map((s) => s.stop()));
    }
  },
};
