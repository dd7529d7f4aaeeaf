/**
 * The archive, Voxelgate against Orthanc side by side in one run: both servers started here as
 * users run them (the compiled `voxelgate serve`; Debian's Orthanc 1.10 + DICOMweb plugin, full
 * study and series metadata, default SQLite index), both fed the same generated corpus
 * (bench/corpus.ts) and asked the same questions by the same keep-alive client in this process.
 *
 * Phases (each answer checked; a wrong one throws and fails the run, a slow one never does):
 *  1. STOW-RS throughput: 50 instances per request one request at a time, then one instance per
 *     request four at a time (a second series with other UIDs: nothing is stored twice); in the
 *     full run also 50 × 4 and 1 × 1.
 *  2. Series metadata of the big series: cold (right after the last STOW), first request once
 *     Voxelgate's pre-warm had time to run, warm (median of 20); Accept-Encoding: gzip for both.
 *  3. Single uncompressed frames as OHIF asks for them: latency p50/p95.
 *  4. QIDO-RS: a small query mix on the stored corpus, p50/p95.
 *  5. Whole-series retrieve (multipart application/dicom, transfer-syntax=*), MB/s.
 *  6. Rendered JPEG of an instance (Accept: image/jpeg): cold (distinct instances, each asked
 *     once) at concurrency 2, then one instance over and over (cached) at concurrency 8, images/s.
 *  7. Frame 1 transcoded to HTJ2K lossless (multipart image/jphc), Voxelgate only (Orthanc 1.10
 *     cannot write HTJ2K): cold per distinct instance, then the same instances again (cached), p50.
 *  8. bench/archive-phases.ts on the rest of the corpus (bench/corpus-mixed.ts): time to first
 *     image, five compressed syntaxes decoded, a ≥ 500-frame instance vs 1-frame ones, frames at
 *     concurrency 1/8/32 against node's static file serving (the ceiling), whole-study retrieve,
 *     metadata at 10 … 5,000 instances, then both archives filled to 10,000 instances (2,500 in
 *     the quick run) for the QIDO mix; last, one ~2 GB STOW request (bench/stow-big.ts, full run).
 * The STOW matrix is complete in the full run (batch 1/50 × concurrency 1/4); each pass reports
 * the server's CPU seconds (/proc/<pid>/stat) and peak RSS (VmHWM, reset before the pass).
 *
 * Without Orthanc installed, Voxelgate runs alone and the notes say how to install it; under
 * CI=true a missing Orthanc is an error.
 */
import { performance } from "node:perf_hooks";
import sharp from "sharp";
import { decodeFrame } from "../src/codec/index.js";
import type { FrameInfo } from "../src/codec/types.js";
import { BIG_COLUMNS, BIG_ROWS, type BigSeries, makeBigSeries, makeSmallStudies, type SmallStudy } from "./corpus.js";
import type { BenchRow, Suite, SuiteContext } from "./main.js";
import {
  BenchCheckError,
  check,
  CpuMeter,
  RssMeter,
  DICOM_JSON,
  expectStatus,
  firstValue,
  fmt,
  type Json,
  median,
  parseJson,
  percentile,
  type Phase,
  qido,
  ratioGoal,
  round,
  rowAdder,
  type Side,
  sleep,
  stow,
  stowPass,
} from "./archive-kit.js";
import { cpuSeconds, peakRssMb } from "./peers/child.js";
import { boundaryOf, Client, DelimiterCounter, decodedBody, parseMultipart } from "./peers/http.js";
import { ORTHANC_PACKAGES, orthancInstalled, startOrthanc } from "./peers/orthanc.js";
import { startVoxelgate } from "./peers/voxelgate.js";
import { loadFromWorker } from "./load-worker.js";
import { seededRandom } from "./seeded-random.js";
import {
  type CatalogStudy,
  fillArchive,
  framesPhase,
  metadataPhase,
  multiFramePhase,
  qidoMixPhase,
  studyRetrievePhase,
  syntaxesPhase,
  timeToFirstImagePhase,
} from "./archive-phases.js";
import { makeCompressedStudy, makeMixedStudies } from "./corpus-mixed.js";
import { bigStowPhase } from "./stow-big.js";

const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const SERIES_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';
const RENDERED_ACCEPT = "image/jpeg";
/**
 * The defaults, except the rendering rate limits: one bench client asks for thousands of cached
 * images a second, which the default per-IP bucket (200/s, burst 2,000) rightly refuses. The
 * gateway suite measures what the limits cost.
 */
const WIDE = { rate: 1e6, burst: 1e6 };
const BENCH_CONFIG = { limits: { render: { perIp: WIDE, perPrincipal: WIDE } } };
const HTJ2K_ACCEPT = 'multipart/related; type="image/jphc"';
const HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201";

const STOW_GOAL = 3;
const METADATA_WARM_GOAL_MS = 50;
const METADATA_RATIO_GOAL = 10;
const FRAME_P50_GOAL_MS = 3;
const RENDERED_COLD_GOAL = 150;
const RENDERED_COLD_RATIO_GOAL = 3;
const RENDERED_CACHED_GOAL = 2000;
const HTJ2K_COLD_P50_GOAL_MS = 15;

/** The big series' frames (bench/corpus.ts): 16-bit unsigned MONOCHROME2. */
const BIG_FRAME_INFO: FrameInfo = {
  rows: BIG_ROWS,
  columns: BIG_COLUMNS,
  samplesPerPixel: 1,
  bitsAllocated: 16,
  bitsStored: 16,
  highBit: 15,
  pixelRepresentation: 0,
  photometricInterpretation: "MONOCHROME2",
  planarConfiguration: 0,
};

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

const instancePath = (series: BigSeries, index: number): string => {
  const instance = series.instances[index];
  check(instance !== undefined, `no instance ${index}`);
  return `/studies/${series.studyUid}/series/${series.seriesUid}/instances/${instance.sopUid}`;
};

interface RenderedAnswer {
  ms: number;
  bytes: number;
  body: Buffer;
  width: number;
  height: number;
}

/**
 * The rendered JPEG of one instance; checks it is a JPEG (SOI, sharp reads its header) of a
 * positive size. `decode`: also decodes it whole and checks it is not one flat grey.
 */
async function rendered(side: Side, series: BigSeries, index: number, decode: boolean): Promise<RenderedAnswer> {
  const r = await side.client.request(`${instancePath(series, index)}/rendered`, { headers: { accept: RENDERED_ACCEPT } });
  const what = `${side.label} rendered instance ${index + 1}`;
  expectStatus(r, 200, what);
  check(String(r.headers["content-type"] ?? "").startsWith("image/jpeg"), `${what}: Content-Type ${String(r.headers["content-type"])}`);
  const body = decodedBody(r);
  check(body.length > 4 && body[0] === 0xff && body[1] === 0xd8, `${what}: not a JPEG (${body.length} bytes, no SOI)`);
  const meta = await sharp(body)
    .metadata()
    .catch((e: unknown) => {
      throw new BenchCheckError(`wrong answer: ${what}: sharp cannot read it: ${e instanceof Error ? e.message : String(e)}`);
    });
  check(meta.format === "jpeg", `${what}: sharp reads ${meta.format}`);
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  check(width > 0 && height > 0, `${what}: ${width}×${height}`);
  if (decode) {
    const stats = await sharp(body)
      .stats()
      .catch((e: unknown) => {
        throw new BenchCheckError(`wrong answer: ${what}: does not decode: ${e instanceof Error ? e.message : String(e)}`);
      });
    check((stats.channels[0]?.stdev ?? 0) > 1, `${what}: one flat grey`);
  }
  return { ms: r.ms, bytes: body.length, body, width, height };
}

/**
 * Frame 1 of one instance as HTJ2K lossless (multipart image/jphc); checks the part is a J2K
 * codestream (SOC, SIZ). `compare`: also decodes it and checks the pixels equal the source.
 */
async function htj2kFrame(side: Side, series: BigSeries, index: number, compare: boolean): Promise<{ ms: number; bytes: number }> {
  const r = await side.client.request(`${instancePath(series, index)}/frames/1`, { headers: { accept: HTJ2K_ACCEPT } });
  const what = `${side.label} HTJ2K frame 1 of instance ${index + 1}`;
  expectStatus(r, 200, what);
  const parts = parseMultipart(r.body, r.headers["content-type"]);
  check(parts.length === 1, `${what}: ${parts.length} parts`);
  const part = parts[0] as { headers: Record<string, string>; body: Buffer };
  const type = part.headers["content-type"] ?? "";
  check(type.startsWith("image/jphc"), `${what}: part Content-Type ${type}`);
  const syntax = /transfer-syntax="?([0-9.]+)/i.exec(type)?.[1];
  check(syntax === undefined || syntax === HTJ2K_LOSSLESS, `${what}: transfer syntax ${syntax}, expected ${HTJ2K_LOSSLESS}`);
  const bytes = part.body;
  check(
    bytes.length > 4 && bytes[0] === 0xff && bytes[1] === 0x4f && bytes[2] === 0xff && bytes[3] === 0x51,
    `${what}: not a J2K codestream (${bytes.length} bytes, no SOC/SIZ)`,
  );
  if (compare) {
    const decoded = await decodeFrame(bytes, HTJ2K_LOSSLESS, BIG_FRAME_INFO);
    const source = series.pixels[index] ?? Buffer.alloc(0);
    check(
      Buffer.from(decoded.pixels.buffer, decoded.pixels.byteOffset, decoded.pixels.byteLength).equals(source),
      `${what}: decodes to other pixels than the source (not lossless)`,
    );
  }
  return { ms: r.ms, bytes: bytes.length };
}

/** Runs a phase and logs its wall time (the quick run has a budget). */
async function timed<T>(context: SuiteContext, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  const out = await fn();
  context.log(
    `(phase ${
      fn
        .toString()
        .replace(/^\(\) => /, "")
        .split("(")[0]
    }: ${fmt((performance.now() - t) / 1000)} s)`,
  );
  return out;
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
    const started = await Promise.allSettled([
      startVoxelgate(BENCH_CONFIG),
      wantPeer && peerInstalled ? startOrthanc() : Promise.resolve(undefined),
    ]);
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
      context.log(`started ${servers.map((s) => `${s.name} (pid ${s.pid})`).join(", ")} in ${fmt((performance.now() - t0) / 1000)} s`);
      const suiteCpu = new CpuMeter(sides);

      const rows: BenchRow[] = [];
      const addRow = rowAdder(rows, peer, context.log);
      const phase: Phase = { quick, ours, peer, sides, addRow, log: context.log };

      let last = performance.now();
      /** Logs the wall time of the phase that just ended (the quick run has a budget). */
      const mark = (name: string) => {
        context.log(`(${name}: ${fmt((performance.now() - last) / 1000)} s)`);
        last = performance.now();
      };
      // ---- 1. STOW-RS
      // The full matrix (batch 1 and 50 × concurrency 1 and 4) in the full run, two corners in the quick one.
      // Every mode stores a series of its own (other UIDs, the same pixels): nothing is stored twice.
      const stowModes = [
        { label: "batch 50 × concurrency 1", series: big, batch: 50, concurrency: 1 },
        { label: "batch 1 × concurrency 4", series: second, batch: 1, concurrency: 4 },
        ...(quick
          ? []
          : [
              { label: "batch 50 × concurrency 4", series: makeBigSeries(count, 2, big.pixels), batch: 50, concurrency: 4 },
              { label: "batch 1 × concurrency 1", series: makeBigSeries(count, 3, big.pixels), batch: 1, concurrency: 1 },
            ]),
      ];
      const cold = new Map<Side, MetadataAnswer>();
      for (const mode of stowModes) {
        const ms = new Map<Side, number>();
        const cpuSeconds = new Map<Side, number>();
        const rss = new Map<Side, number>();
        for (const side of sides) {
          // One side at a time: its CPU and peak RSS are its own.
          const cpu = new CpuMeter([side]);
          const memory = new RssMeter([side]);
          ms.set(side, await stowPass(side, mode.series.instances, mode.batch, mode.concurrency));
          cpuSeconds.set(side, cpu.seconds()[0] as number);
          rss.set(side, memory.peaks()[0] as number);
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
          note: sides.map((s) => `${s.label} ${fmt((ms.get(s) as number) / 1000, 2)} s`).join(", "),
        });
        addRow({
          name: `STOW ${mode.label}, throughput`,
          unit: "MB/s",
          ours: round(mbPerSecond(ours) as number, 1),
          peer: peer ? round(mbPerSecond(peer) as number, 1) : undefined,
          higherIsBetter: true,
        });
        addRow({
          name: `STOW ${mode.label}, server CPU`,
          unit: "s",
          ours: round(cpuSeconds.get(ours) as number),
          peer: peer ? round(cpuSeconds.get(peer) as number) : undefined,
          higherIsBetter: false,
          note: "user + system CPU seconds of the server process (/proc/<pid>/stat) for the whole pass",
        });
        addRow({
          name: `STOW ${mode.label}, server peak RSS`,
          unit: "MB",
          ours: round(rss.get(ours) as number, 0),
          peer: peer ? round(rss.get(peer) as number, 0) : undefined,
          higherIsBetter: false,
          note: "VmHWM of the server process, reset before the pass (/proc/<pid>/clear_refs)",
        });
      }
      // The small studies, untimed (QIDO needs them).
      for (const side of sides) await stow(side, smallFiles);

      mark("STOW");
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

      mark("series metadata");
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
        // Throughput at concurrency 1/8/32, uncompressed and as stored, against a static-file ceiling: framesPhase.
      }

      mark("frame latency");
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
          ["all studies, includefield=all", "/studies?includefield=all", small.length + stowModes.length],
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

      mark("QIDO");
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

      mark("series retrieve");
      // ---- 6. Rendered JPEG (the second series: its pixels were never rendered by either server)
      {
        const cold = quick ? 50 : 200;
        const coldConcurrency = 2; // Voxelgate renders in a pool of 2 worker threads
        const cachedTotal = quick ? 400 : 2000;
        const cachedWarmUp = quick ? 400 : 2000;
        const cachedConcurrency = 8;
        const picks = Array.from({ length: cold }, (_, i) => Math.floor((i * count) / cold));
        const sizes = new Map<Side, Set<string>>(sides.map((s) => [s, new Set()]));
        const jpegBytes = new Map<Side, number>();
        const rate = new Map<Side, { calls: number; ms: number }>();
        // One render of another series first (a server may start its render threads on the first request).
        for (const side of sides) await rendered(side, big, 0, true);
        const cpu = new CpuMeter(sides);
        // The load comes from a worker thread, as for the cached images below: the bench's own heap
        // and garbage collection must not be what is measured. Each answer is checked to be a JPEG.
        for (const side of sides) {
          const r = await loadFromWorker({
            jpegs: picks.map((i) => `${side.client.root}${instancePath(second, i)}/rendered`),
            headers: { accept: RENDERED_ACCEPT },
            concurrency: coldConcurrency,
          });
          rate.set(side, r);
          for (const size of r.sizes ?? []) (sizes.get(side) as Set<string>).add(size);
          jpegBytes.set(side, r.bytes ?? 0);
        }
        const coldNote = cpu.note();
        // The first image (cached now, the same bytes as served cold) decoded whole: not one flat grey.
        for (const side of sides) await rendered(side, second, picks[0] as number, true);
        const perSecond = (side: Side | undefined) => {
          const r = side ? rate.get(side) : undefined;
          return r ? r.calls / (r.ms / 1000) : undefined;
        };
        const sizeNote = () => sides.map((s) => `${s.label} ${[...(sizes.get(s) as Set<string>)].join("/")}`).join(", ");
        check(
          (sizes.get(ours) as Set<string>).size === 1 && (sizes.get(ours) as Set<string>).has(`${BIG_COLUMNS}×${BIG_ROWS}`),
          `Voxelgate rendered ${sizeNote()}`,
        );
        const coldOurs = perSecond(ours) as number;
        const coldPeer = perSecond(peer);
        addRow({
          name: `Rendered JPEG (512×512×16 CT), cold, concurrency ${coldConcurrency}`,
          unit: "images/s",
          ours: round(coldOurs, 0),
          peer: coldPeer === undefined ? undefined : round(coldPeer, 0),
          higherIsBetter: true,
          goals: [
            { text: `≥ ${RENDERED_COLD_GOAL} images/s`, met: coldOurs >= RENDERED_COLD_GOAL },
            ...ratioGoal(`≥ ${RENDERED_COLD_RATIO_GOAL}× Orthanc`, coldPeer ? coldOurs / coldPeer : undefined, RENDERED_COLD_RATIO_GOAL),
          ],
          note: `${cold} distinct instances, each asked once from a worker thread (after one warm-up render of another series), Accept: ${RENDERED_ACCEPT}; image sizes ${sizeNote()}, mean JPEG ${sides.map((s) => `${s.label} ${fmt((jpegBytes.get(s) ?? 0) / cold / 1024, 0)} KiB`).join(", ")}; ${coldNote}`,
        });

        const index = picks[0] as number;
        const references = new Map<Side, Buffer>();
        // Cached from the cold pass; decoded in full once, then every answer must equal it.
        for (const side of sides) references.set(side, (await rendered(side, second, index, true)).body);
        // The load comes from a worker thread (its own small heap: this thread's GC must not count
        // against the servers), after a warm-up that lets Voxelgate's JIT settle (servers run warm).
        const cachedJob = (side: Side, total: number) => ({
          url: `${side.client.root}${instancePath(second, index)}/rendered`,
          headers: { accept: RENDERED_ACCEPT },
          concurrency: cachedConcurrency,
          total,
          expect: references.get(side) as Buffer,
        });
        for (const side of sides) await loadFromWorker(cachedJob(side, cachedWarmUp));
        const cpuCached = new CpuMeter(sides);
        const cachedRate = new Map<Side, { calls: number; ms: number }>();
        for (const side of sides) cachedRate.set(side, await loadFromWorker(cachedJob(side, cachedTotal)));
        const cachedPerSecond = (side: Side) => {
          const r = cachedRate.get(side) as { calls: number; ms: number };
          return r.calls / (r.ms / 1000);
        };
        const cachedOurs = cachedPerSecond(ours);
        addRow({
          name: `Rendered JPEG, cached (one instance), concurrency ${cachedConcurrency}`,
          unit: "images/s",
          ours: round(cachedOurs, 0),
          peer: peer ? round(cachedPerSecond(peer), 0) : undefined,
          higherIsBetter: true,
          goals: [{ text: `≥ ${RENDERED_CACHED_GOAL.toLocaleString("en-US")} images/s`, met: cachedOurs >= RENDERED_CACHED_GOAL }],
          note: `requests ${sides.map((s) => `${s.label} ${(cachedRate.get(s) as { calls: number }).calls}`).join(", ")} from a worker thread after ${cachedWarmUp} untimed ones, each answer equal to the first; ${cpuCached.note()}`,
        });
      }

      mark("rendered");
      // ---- 7. Frame transcoded to HTJ2K lossless (ours only; the big series, never asked as HTJ2K)
      {
        const cold = quick ? 50 : 200;
        const picks = Array.from({ length: cold }, (_, i) => Math.floor((i * count) / cold));
        await htj2kFrame(ours, second, 0, true); // starts the codec workers (not one of the timed instances)
        const cpu = new CpuMeter([ours]);
        const coldTimes: number[] = [];
        let coldBytes = 0;
        for (const [i, index] of picks.entries()) {
          const a = await htj2kFrame(ours, big, index, i === 0 || i === picks.length - 1);
          coldTimes.push(a.ms);
          coldBytes += a.bytes;
        }
        const coldNote = cpu.note();
        const cachedTimes: number[] = [];
        for (const index of picks) cachedTimes.push((await htj2kFrame(ours, big, index, false)).ms);
        let peerAnswer = "";
        if (peer) {
          const r = await peer.client.request(`${instancePath(big, 0)}/frames/1`, { headers: { accept: HTJ2K_ACCEPT } });
          peerAnswer = `; ${peer.label} answers HTTP ${r.status}${r.headers["content-type"] ? ` ${String(r.headers["content-type"]).split(";")[0]}` : ""}`;
        }
        const p50 = median(coldTimes);
        addRow({
          name: "Frame as HTJ2K lossless (transcoded, 512×512×16), cold, p50",
          unit: "ms",
          ours: round(p50),
          higherIsBetter: false,
          goals: [{ text: `≤ ${HTJ2K_COLD_P50_GOAL_MS} ms`, met: p50 <= HTJ2K_COLD_P50_GOAL_MS }],
          note: `Voxelgate only: Orthanc 1.10 cannot write HTJ2K${peerAnswer}; ${cold} distinct instances one at a time, Accept: ${HTJ2K_ACCEPT}; p95 ${fmt(percentile(coldTimes, 0.95), 1)} ms; ${fmt(coldBytes / cold / 1024, 0)} KiB per frame (${fmt((cold * BIG_ROWS * BIG_COLUMNS * 2) / coldBytes, 2)}:1); two frames decoded and compared with the source; ${coldNote}`,
        });
        addRow({
          name: "Frame as HTJ2K lossless, cached, p50",
          unit: "ms",
          ours: round(median(cachedTimes)),
          higherIsBetter: false,
          note: `Voxelgate only; the same ${cold} instances asked again; p95 ${fmt(percentile(cachedTimes, 0.95), 1)} ms`,
        });
      }

      mark("HTJ2K");
      // ---- 8. The rest of the corpus, then the later phases (bench/archive-phases.ts)
      t0 = performance.now();
      const mixed = makeMixedStudies(quick ? 12 : 60);
      const compressed = await makeCompressedStudy(quick ? 50 : 100, 500);
      const more = [...mixed.flatMap((s) => s.instances), ...compressed.all];
      context.log(
        `corpus: ${mixed.length} mixed studies (CT, MR, RGB US), a compressed study of ${compressed.all.length} instances (JPEG-LS series, 5 syntaxes, ${compressed.multiFrame.frames.length}-frame enhanced MR) in ${fmt((performance.now() - t0) / 1000)} s`,
      );
      for (const side of sides) await stowPass(side, more, 50, 2);
      await timed(context, () => timeToFirstImagePhase(phase, mixed.slice(0, quick ? 6 : 30)));
      await timed(context, () => syntaxesPhase(phase, compressed));
      await timed(context, () => multiFramePhase(phase, compressed));
      await timed(context, () => framesPhase(phase, big, compressed));
      await timed(context, () => studyRetrievePhase(phase, compressed));
      const catalog: CatalogStudy[] = [
        ...stowModes.map((mode, v) => ({
          studyUid: mode.series.studyUid,
          patientName: mode.series.patientName,
          patientId: `PID-BIG-${v}`,
          studyDate: mode.series.studyDate,
          accession: `ACC-BIG-${v}`,
          modalities: ["CT"],
          instances: count,
        })),
        ...small.map((s) => ({ ...s, accession: "", modalities: [s.modality], instances: 4 })),
        ...mixed.map((s) => ({ ...s, modalities: [s.modality], instances: s.instances.length })),
        {
          ...compressed,
          studyDate: "20240601",
          accession: "ACC-CODEC-1",
          modalities: ["CT", "US", "MR"],
          instances: compressed.all.length,
        },
        ...(await timed(context, () => metadataPhase(phase))),
      ];
      const stored = catalog.reduce((n, s) => n + s.instances, 0);
      catalog.push(...(await fillArchive(phase, stored, quick ? 2500 : 10_000, 0)));
      await timed(context, () => qidoMixPhase(phase, catalog));
      const bigStowMb = context.options.bigStowMb ?? (quick ? 0 : 2048);
      if (bigStowMb > 0) await timed(context, () => bigStowPhase(phase, bigStowMb, big.pixels));

      // ---- Whole suite: server CPU and memory
      const rss = servers.map((s) => `${s.name} ${fmt(peakRssMb(s.pid), 0)} MB`).join(", ");
      const totalCpu = servers.map((s) => cpuSeconds(s.pid));
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
