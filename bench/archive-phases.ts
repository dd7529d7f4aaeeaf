/**
 * The archive bench's later phases, Voxelgate and Orthanc side by side on the corpus of
 * bench/corpus-mixed.ts (every answer checked; a wrong one throws, a slow one never does):
 *
 *  - Metadata at 10, 100, 1,000 (and 5,000 in the full run) instances: series and study level,
 *    cold (the first request after the STOW) and warm, with and without gzip.
 *  - QIDO-RS: a realistic mix (patient name wildcard, date range, modality, accession, UID list,
 *    includefield=all, limit/offset) over the whole archive filled to 10,000 instances in the full
 *    run; p50/p95/p99.
 *  - Frames: frames/s and MB/s at concurrency 1/8/32, uncompressed (512² CT) and as stored
 *    (JPEG-LS), against node's static file serving of the same bytes (the ceiling); a frame of a
 *    ≥ 500-frame instance against the frame of a 1-frame one; five compressed syntaxes decoded.
 *  - Whole-study retrieve (multipart, as stored), MB/s.
 *  - Time to first image: QIDO → series → series metadata → first frame, as a viewer does it.
 */
import { performance } from "node:perf_hooks";
import { decodeFrame } from "../src/codec/index.js";
import {
  check,
  CpuMeter,
  DICOM_JSON,
  expectStatus,
  firstValue,
  fmt,
  inFlight,
  interleaved,
  type Json,
  median,
  parseJson,
  percentile,
  type Phase,
  qido,
  round,
  type Side,
  stowPass,
} from "./archive-kit.js";
import type { BigSeries, CorpusInstance } from "./corpus.js";
import {
  type CompressedInstance,
  type CompressedStudy,
  FILLER_SERIES_SIZE,
  fillerKeys,
  fillerStudyUid,
  makeFiller,
  makeMetadataSeries,
  type MixedStudy,
  type TinySeries,
} from "./corpus-mixed.js";
import { boundaryOf, Client, DelimiterCounter, parseMultipart } from "./peers/http.js";
import { startStaticServer } from "./peers/static.js";
import { seededRandom } from "./seeded-random.js";

const AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const UNCOMPRESSED = 'multipart/related; type="application/octet-stream"';
const STUDY_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';

/** One study as QIDO sees it, for computing the expected answers of the query mix. */
export interface CatalogStudy {
  studyUid: string;
  patientName: string;
  patientId: string;
  studyDate: string;
  accession: string;
  modalities: string[];
  instances: number;
}

/** The stored bytes of a frame may come back with one padding byte (even length). */
const sameFrame = (got: Buffer, stored: Buffer): boolean =>
  got.length >= stored.length && got.length <= stored.length + 1 && got.subarray(0, stored.length).equals(stored);

/** One frame, single part; checked against `expect` (the stored bytes, or the uncompressed pixels). */
async function frameOf(side: Side, path: string, accept: string, expect: Buffer, what: string): Promise<{ ms: number; bytes: number }> {
  const r = await side.client.request(path, { headers: { accept } });
  expectStatus(r, 200, `${side.label} ${what}`);
  const parts = parseMultipart(r.body, r.headers["content-type"]);
  check(parts.length === 1, `${side.label} ${what}: ${parts.length} parts`);
  const body = (parts[0] as { body: Buffer }).body;
  check(sameFrame(body, expect), `${side.label} ${what}: ${body.length} bytes that differ from the expected ${expect.length}`);
  return { ms: r.ms, bytes: body.length };
}

const framePath = (i: CorpusInstance, frame = 1) => `/studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopUid}/frames/${frame}`;

// ---------------------------------------------------------------------------------------------
// Metadata at several series sizes

interface MetadataAnswer {
  ms: number;
  bytes: number;
}

async function metadataOf(side: Side, path: string, gzip: boolean, expected: TinySeries, what: string): Promise<MetadataAnswer> {
  const r = await side.client.request(path, { headers: { accept: DICOM_JSON, ...(gzip ? { "accept-encoding": "gzip" } : {}) } });
  const label = `${side.label} ${what}`;
  expectStatus(r, 200, label);
  const items = parseJson(r, label) as Json[];
  check(
    Array.isArray(items) && items.length === expected.instances.length,
    `${label}: ${items.length} instances, expected ${expected.instances.length}`,
  );
  const uids = new Set(items.map((item) => String(firstValue(item, "00080018"))));
  for (const i of expected.instances) check(uids.has(i.sopUid), `${label}: ${i.sopUid} missing`);
  check(firstValue(items[0], "0020000D") === expected.studyUid, `${label}: StudyInstanceUID`);
  return { ms: r.ms, bytes: r.bytes };
}

export async function metadataPhase(phase: Phase): Promise<CatalogStudy[]> {
  const { quick, ours, peer, sides, addRow } = phase;
  const sizes = quick ? [10, 100, 1000] : [10, 100, 1000, 5000];
  const catalog: CatalogStudy[] = [];
  for (const size of sizes) {
    const series = makeMetadataSeries(size);
    catalog.push({
      studyUid: series.studyUid,
      patientName: `Metadata^Series${size}`,
      patientId: `PID-META-${size}`,
      studyDate: "20230405",
      accession: `ACC-META-${size}`,
      modalities: ["CT"],
      instances: size,
    });
    for (const side of sides) await stowPass(side, series.instances, 50, 2);
    const seriesPath = `/studies/${series.studyUid}/series/${series.seriesUid}/metadata`;
    const studyPath = `/studies/${series.studyUid}/metadata`;
    // Cold: the first request after the STOW, before Voxelgate's 1 s pre-warm (series, gzip as viewers ask), then the study level.
    const coldSeries = new Map<Side, MetadataAnswer>();
    const coldStudy = new Map<Side, MetadataAnswer>();
    for (const side of sides) coldSeries.set(side, await metadataOf(side, seriesPath, true, series, `series metadata ${size}`));
    for (const side of sides) coldStudy.set(side, await metadataOf(side, studyPath, false, series, `study metadata ${size}`));
    const kib = (m: Map<Side, MetadataAnswer>) =>
      sides.map((s) => `${s.label} ${fmt((m.get(s) as MetadataAnswer).bytes / 1024, 0)} KiB`).join(", ");
    addRow({
      name: `Metadata ${size} inst.: series, cold, gzip`,
      unit: "ms",
      ours: round((coldSeries.get(ours) as MetadataAnswer).ms),
      peer: peer ? round((coldSeries.get(peer) as MetadataAnswer).ms) : undefined,
      higherIsBetter: false,
      note: `first request right after the STOW; ${kib(coldSeries)} on the wire`,
    });
    addRow({
      name: `Metadata ${size} inst.: study, cold, identity`,
      unit: "ms",
      ours: round((coldStudy.get(ours) as MetadataAnswer).ms),
      peer: peer ? round((coldStudy.get(peer) as MetadataAnswer).ms) : undefined,
      higherIsBetter: false,
      note: `first study-level request (after the series one); ${kib(coldStudy)}`,
    });
    const runs = quick ? 3 : size >= 5000 ? 8 : 15;
    for (const [label, path, gzip] of [
      ["series, warm, gzip", seriesPath, true],
      ["series, warm, identity", seriesPath, false],
      ["study, warm, gzip", studyPath, true],
    ] as const) {
      const times = await interleaved(sides, runs, async (side) => (await metadataOf(side, path, gzip, series, `${label} ${size}`)).ms);
      addRow({
        name: `Metadata ${size} inst.: ${label}`,
        unit: "ms",
        ours: round(median(times.get(ours) as number[])),
        peer: peer ? round(median(times.get(peer) as number[])) : undefined,
        higherIsBetter: false,
        note: `median of ${runs}; p95 ${sides.map((s) => `${s.label} ${fmt(percentile(times.get(s) as number[], 0.95), 1)} ms`).join(", ")}`,
      });
    }
  }
  return catalog;
}

// ---------------------------------------------------------------------------------------------
// QIDO mix over the filled archive

/** Stores filler studies until the archive holds `target` instances (100 studies at least); returns the studies added. */
export async function fillArchive(phase: Phase, stored: number, target: number, firstFiller: number): Promise<CatalogStudy[]> {
  // At least 100 filler studies: the query mix is built on them.
  const studies = Math.max(100, Math.ceil((target - stored) / FILLER_SERIES_SIZE));
  const files = makeFiller(firstFiller, firstFiller + studies);
  for (const side of phase.sides) {
    const cpu = new CpuMeter([side]);
    const ms = await stowPass(side, files, 50, 2);
    phase.log(`${side.label}: filled with ${files.length} instances in ${fmt(ms / 1000)} s (${cpu.note()})`);
  }
  return Array.from({ length: studies }, (_, i) => {
    const st = firstFiller + i;
    const k = fillerKeys(st);
    return { studyUid: fillerStudyUid(st), ...k, modalities: [k.modality], instances: FILLER_SERIES_SIZE };
  });
}

/** The query mix and its expected counts, from what was stored. Only ASCII values: Orthanc does not percent-decode them. */
export function qidoMix(catalog: CatalogStudy[]): Array<[string, number]> {
  const filler = catalog.filter((s) => s.patientId.startsWith("PID-FILL-"));
  check(filler.length >= 100, `the QIDO mix needs filler studies (${filler.length})`);
  const pick = (i: number) => filler[Math.floor((i * filler.length) / 7)] as CatalogStudy;
  const count = (f: (s: CatalogStudy) => boolean) => catalog.filter(f).length;
  const limited = (n: number, limit: number) => Math.min(n, limit);
  const inRange = (d: string) => d >= "20120301" && d <= "20120630";
  const uids = [pick(1), pick(3), pick(5)].map((s) => s.studyUid);
  const a = pick(2);
  const b = filler.find((s) => s.patientName.startsWith("Rossi^")) as CatalogStudy;
  return [
    [
      `/studies?PatientName=Kowalski*&limit=50`,
      limited(
        count((s) => s.patientName.startsWith("Kowalski")),
        50,
      ),
    ],
    [`/studies?PatientName=${b.patientName}`, count((s) => s.patientName === b.patientName)],
    [
      `/studies?StudyDate=20120301-20120630&limit=200`,
      limited(
        count((s) => inRange(s.studyDate)),
        200,
      ),
    ],
    // Filler studies only (Doe^Jane…): Orthanc and Voxelgate agree on what ModalitiesInStudy means for them.
    [
      `/studies?PatientName=Doe*&ModalitiesInStudy=MR&limit=20&offset=2`,
      limited(Math.max(0, count((s) => s.patientName.startsWith("Doe") && s.modalities.includes("MR")) - 2), 20),
    ],
    [`/studies?AccessionNumber=${a.accession}`, 1],
    [`/studies?PatientID=${b.patientId}&includefield=all`, 1],
    [`/studies?StudyInstanceUID=${uids.join(",")}`, 3],
    [`/studies?limit=25&offset=100`, limited(Math.max(0, catalog.length - 100), 25)],
    [`/studies/${a.studyUid}/series?Modality=${a.modalities[0]}`, 1],
    [`/studies/${a.studyUid}/instances?includefield=all`, FILLER_SERIES_SIZE],
    [
      `/series?Modality=MR&limit=20`,
      limited(
        count((s) => s.modalities.includes("MR")),
        20,
      ),
    ],
  ].map(([path, expected]) => [String(path), Number(expected)]);
}

export async function qidoMixPhase(phase: Phase, catalog: CatalogStudy[]): Promise<void> {
  const { quick, ours, peer, sides, addRow } = phase;
  const instances = catalog.reduce((n, s) => n + s.instances, 0);
  const mix = qidoMix(catalog);
  for (const [path, expected] of mix) for (const side of sides) await qido(side, path, expected); // warm-up, checked
  const runs = quick ? 5 : 20;
  const cpu = new CpuMeter(sides);
  const times = new Map<Side, number[]>(sides.map((s) => [s, []]));
  const random = seededRandom(0x9d1d0);
  for (let r = 0; r < runs; r++) {
    // Each run asks the mix in another order (no query always follows the same one).
    const order = mix.map((q) => [random(), q] as const).sort((x, y) => x[0] - y[0]);
    for (const [, [path, expected]] of order)
      for (const side of sides) (times.get(side) as number[]).push(await qido(side, path, expected));
  }
  for (const [q, label] of [
    [0.5, "p50"],
    [0.95, "p95"],
    [0.99, "p99"],
  ] as const) {
    addRow({
      name: `QIDO mix, ${instances.toLocaleString("en-US")} instances, ${label}`,
      unit: "ms",
      ours: round(percentile(times.get(ours) as number[], q)),
      peer: peer ? round(percentile(times.get(peer) as number[], q)) : undefined,
      higherIsBetter: false,
      note:
        label === "p50"
          ? `${mix.length} queries × ${runs} runs over ${catalog.length} studies (patient name wildcard and exact, date range, ModalitiesInStudy with offset, accession, PatientID + includefield=all, UID list, limit/offset, series and instances of a study); ${cpu.note()}`
          : undefined,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Frames: concurrency, static ceiling, multi-frame, syntaxes

interface FrameSet {
  label: string;
  accept: string;
  /** Path of frame i's request, and the bytes it must give. */
  items: Array<{ path: string; bytes: Buffer }>;
}

export async function framesPhase(phase: Phase, big: BigSeries, compressed: CompressedStudy): Promise<void> {
  const { quick, ours, peer, sides, addRow, log } = phase;
  const sets: FrameSet[] = [
    {
      label: "uncompressed 512² CT",
      accept: AS_STORED,
      items: big.instances.map((i, n) => ({ path: framePath(i), bytes: big.pixels[n] as Buffer })),
    },
    {
      label: "as stored, JPEG-LS 512² CT",
      accept: AS_STORED,
      items: compressed.jlsSeries.instances.map((i) => ({ path: framePath(i), bytes: i.frames[0] as Buffer })),
    },
  ];
  const ceiling = await startStaticServer();
  const staticSide: Side = { label: "static", server: ceiling, client: new Client(ceiling.url.replace(/\/$/, ""), 64) };
  try {
    for (const [s, set] of sets.entries()) set.items.forEach((item, i) => ceiling.put(`${s}-${i}`, item.bytes));
    const requests = quick ? { 1: 30, 8: 0, 32: 60 } : { 1: 300, 8: 1000, 32: 1000 };
    for (const [s, set] of sets.entries()) {
      const random = seededRandom(0xf7a3e + s);
      for (const concurrency of [1, 8, 32] as const) {
        const total = requests[concurrency];
        if (total === 0) continue; // concurrency 8: full run only
        const order = Array.from({ length: total }, () => Math.floor(random() * set.items.length));
        const rate = new Map<Side, { calls: number; ms: number; bytes: number; latencies: number[] }>();
        for (const side of [...sides, staticSide]) {
          let bytes = 0;
          const latencies: number[] = [];
          const r = await inFlight(concurrency, total, async (i) => {
            const item = set.items[order[i] as number] as { path: string; bytes: Buffer };
            if (side === staticSide) {
              const a = await side.client.request(`/${s}-${order[i]}`);
              expectStatus(a, 200, `static ${set.label}`);
              check(a.body.equals(item.bytes), `static server: other bytes for ${s}-${order[i]}`);
              bytes += a.bytes;
              latencies.push(a.ms);
            } else {
              const a = await frameOf(side, item.path, set.accept, item.bytes, `frame (${set.label})`);
              bytes += a.bytes;
              latencies.push(a.ms);
            }
          });
          rate.set(side, { ...r, bytes, latencies });
        }
        const fps = (side: Side) => {
          const r = rate.get(side) as { calls: number; ms: number };
          return r.calls / (r.ms / 1000);
        };
        const mbps = (side: Side) => {
          const r = rate.get(side) as { bytes: number; ms: number };
          return r.bytes / 1e6 / (r.ms / 1000);
        };
        const lat = (side: Side, q: number) => fmt(percentile((rate.get(side) as { latencies: number[] }).latencies, q), 1);
        addRow({
          name: `Frames ${set.label}, concurrency ${concurrency}`,
          unit: "frames/s",
          ours: round(fps(ours), 0),
          peer: peer ? round(fps(peer), 0) : undefined,
          higherIsBetter: true,
          note: `${total} requests of random instances, Accept: ${set.accept}; MB/s ${[...sides, staticSide].map((x) => `${x.label} ${fmt(mbps(x), 0)}`).join(", ")}; latency p50/p95 ${[...sides, staticSide].map((x) => `${x.label} ${lat(x, 0.5)}/${lat(x, 0.95)} ms`).join(", ")}`,
        });
        addRow({
          name: `Frames ${set.label}, concurrency ${concurrency}: Voxelgate vs static-file ceiling`,
          unit: "frames/s",
          ours: round(fps(ours), 0),
          peer: round(fps(staticSide), 0),
          peerName: ceiling.name,
          higherIsBetter: true,
          note: `node:http + fs.createReadStream of the same frame bytes in files, its own process (no multipart, no index); ratio = the share of the ceiling reached`,
        });
      }
    }
  } finally {
    staticSide.client.close();
    await ceiling.stop();
  }
  log("frames at concurrency 1/8/32 done");
}

/** Frame k of the ≥ 500-frame JPEG-LS instance against frame 1 of 1-frame instances of the same size and syntax. */
export async function multiFramePhase(phase: Phase, compressed: CompressedStudy): Promise<void> {
  const { quick, ours, peer, sides, addRow } = phase;
  const mf = compressed.multiFrame;
  const frames = mf.frames.length;
  // The first request to the multi-frame instance (its frame table built), then random frames.
  const first = new Map<Side, number>();
  for (const side of sides)
    first.set(
      side,
      (await frameOf(side, framePath(mf, frames), AS_STORED, mf.frames[frames - 1] as Buffer, `frame ${frames} of ${frames}`)).ms,
    );
  const runs = quick ? 30 : 300;
  const random = seededRandom(0x3f3f);
  const picks = Array.from({ length: runs }, () => 1 + Math.floor(random() * frames));
  const singlePicks = Array.from({ length: runs }, () => Math.floor(random() * compressed.singleFrames.length));
  // Orthanc reads the whole instance for each frame (~0.3 s for this one): fewer of its requests, so the run stays short.
  const peerRuns = quick ? 6 : 40;
  const times = await interleaved(sides, runs, async (side, i): Promise<readonly [number, number] | undefined> => {
    if (side !== ours && i >= peerRuns) return undefined;
    const k = picks[i] as number;
    const single = compressed.singleFrames[singlePicks[i] as number] as CompressedInstance;
    const m = await frameOf(side, framePath(mf, k), AS_STORED, mf.frames[k - 1] as Buffer, `frame ${k} of the ${frames}-frame instance`);
    const s = await frameOf(side, framePath(single), AS_STORED, single.frames[0] as Buffer, "frame of a 1-frame instance");
    return [m.ms, s.ms] as const;
  });
  const p = (side: Side, which: 0 | 1, q = 0.5) =>
    percentile(
      (times.get(side) as Array<readonly [number, number] | undefined>).flatMap((t) => (t ? [t[which]] : [])),
      q,
    );
  const multi = p(ours, 0);
  const single = p(ours, 1);
  addRow({
    name: `Frame of a ${frames}-frame JPEG-LS instance (as stored), p50`,
    unit: "ms",
    ours: round(multi),
    peer: peer ? round(p(peer, 0)) : undefined,
    higherIsBetter: false,
    goals: [{ text: "same latency as a 1-frame instance (≤ 1.25× its p50 + 0.2 ms)", met: multi <= single * 1.25 + 0.2 }],
    note: `${runs} random frames of 256² MR (${peer?.label ?? "peer"} ${Math.min(runs, peerRuns)}), interleaved with the 1-frame requests; p95 ${sides.map((s) => `${s.label} ${fmt(p(s, 0, 0.95), 1)} ms`).join(", ")}; first request (frame ${frames}) ${sides.map((s) => `${s.label} ${fmt(first.get(s) as number, 1)} ms`).join(", ")}; ${fmt(mf.length / 1e6)} MB instance`,
  });
  addRow({
    name: "Frame of a 1-frame JPEG-LS instance (same frame size), p50",
    unit: "ms",
    ours: round(single),
    peer: peer ? round(p(peer, 1)) : undefined,
    higherIsBetter: false,
  });
}

/** Every compressed syntax: the stored frame as stored, and decoded to the source pixels (ours must; the peer is reported). */
export async function syntaxesPhase(phase: Phase, compressed: CompressedStudy): Promise<void> {
  const { ours, peer, addRow } = phase;
  const results: string[] = [];
  let peerRight = 0;
  for (const instance of compressed.syntaxes) {
    const name = instance.syntax;
    await frameOf(ours, framePath(instance), AS_STORED, instance.frames[0] as Buffer, `frame as stored (${name})`);
    const r = await ours.client.request(framePath(instance), { headers: { accept: UNCOMPRESSED } });
    expectStatus(r, 200, `Voxelgate frame ${name} uncompressed`);
    const body = (parseMultipart(r.body, r.headers["content-type"])[0] as { body: Buffer }).body;
    const source = instance.firstPixels;
    if (instance.lossy) {
      // Lossy JPEG: same size, close to the source (mean absolute error of a q90 JPEG is a few levels).
      check(body.length === source.length, `Voxelgate ${name} uncompressed: ${body.length} bytes, expected ${source.length}`);
      let error = 0;
      for (let i = 0; i < source.length; i++) error += Math.abs((body[i] as number) - (source[i] as number));
      check(error / source.length < 8, `Voxelgate ${name} uncompressed: mean error ${fmt(error / source.length)} levels`);
    } else check(body.equals(source), `Voxelgate ${name} uncompressed: other pixels than the source`);
    // Our own decoder agrees with the stored frame (the corpus is what it claims to be).
    if (!instance.lossy) {
      const decoded = await decodeFrame(instance.frames[0] as Buffer, name, instance.info);
      check(
        Buffer.from(decoded.pixels.buffer, decoded.pixels.byteOffset, decoded.pixels.byteLength).equals(source),
        `corpus ${name} does not decode to its source`,
      );
    }
    if (peer) {
      const a = await peer.client.request(framePath(instance), { headers: { accept: UNCOMPRESSED } });
      let ok = false;
      if (a.status === 200) {
        const part = parseMultipart(a.body, a.headers["content-type"])[0]?.body;
        ok = part !== undefined && part.length === source.length && (instance.lossy || part.equals(source));
      }
      if (ok) peerRight++;
      else results.push(`${name} → HTTP ${a.status}`);
    }
  }
  addRow({
    name: "Frames of 5 compressed syntaxes (RLE, JPEG-LS, J2K, HTJ2K, JPEG baseline) decoded right",
    unit: `of ${compressed.syntaxes.length}`,
    ours: compressed.syntaxes.length,
    peer: peer ? peerRight : undefined,
    higherIsBetter: true,
    noRatio: true,
    note: `a correctness check: each frame asked as stored and uncompressed, compared with the source pixels${results.length ? `; ${peer?.label} misses ${results.join(", ")}` : ""}`,
  });
}

// ---------------------------------------------------------------------------------------------
// Whole-study retrieve, time to first image

export async function studyRetrievePhase(phase: Phase, compressed: CompressedStudy): Promise<void> {
  const { quick, ours, peer, sides, addRow } = phase;
  const total = compressed.all.reduce((n, i) => n + i.length, 0);
  const runs = quick ? 2 : 3;
  const rates = await interleaved(sides, runs, async (side) => {
    let counter: DelimiterCounter | undefined;
    const r = await side.client.request(`/studies/${compressed.studyUid}`, {
      headers: { accept: STUDY_ACCEPT },
      onHeaders: (h) => {
        counter = new DelimiterCounter(boundaryOf(h["content-type"]));
      },
      onData: (chunk) => counter?.push(chunk),
    });
    const what = `${side.label} study retrieve`;
    expectStatus(r, 200, what);
    check(counter !== undefined && counter.closed, `${what}: no closing delimiter`);
    check(counter.count - 1 === compressed.all.length, `${what}: ${counter.count - 1} parts, expected ${compressed.all.length}`);
    check(r.bytes >= total, `${what}: ${r.bytes} bytes for ${total} bytes of files`);
    return r.bytes / 1e6 / (r.ms / 1000);
  });
  addRow({
    name: `Study retrieve (multipart DICOM, as stored), ${compressed.all.length} inst. in 4 series`,
    unit: "MB/s",
    ours: round(median(rates.get(ours) as number[]), 0),
    peer: peer ? round(median(rates.get(peer) as number[]), 0) : undefined,
    higherIsBetter: true,
    note: `${fmt(total / 1e6)} MB of compressed files (JPEG-LS series, 5 syntaxes, the multi-frame), median of ${runs}`,
  });
}

/** What a viewer does to show a study: QIDO the study, its series, the series metadata, then the first frame. */
export async function timeToFirstImage(side: Side, study: { studyUid: string; patientId: string }): Promise<number> {
  const started = performance.now();
  const what = `${side.label} time to first image of ${study.studyUid}`;
  const s = await side.client.request(`/studies?PatientID=${encodeURIComponent(study.patientId)}&includefield=00081030`, {
    headers: { accept: DICOM_JSON },
  });
  expectStatus(s, 200, what);
  const studies = parseJson(s, what) as Json[];
  check(
    studies.some((x) => firstValue(x, "0020000D") === study.studyUid),
    `${what}: QIDO does not find the study`,
  );
  const se = await side.client.request(`/studies/${study.studyUid}/series`, { headers: { accept: DICOM_JSON } });
  expectStatus(se, 200, what);
  const series = parseJson(se, what) as Json[];
  const seriesUid = String(firstValue(series[0], "0020000E"));
  check(series.length > 0 && seriesUid !== "undefined", `${what}: no series`);
  const m = await side.client.request(`/studies/${study.studyUid}/series/${seriesUid}/metadata`, {
    headers: { accept: DICOM_JSON, "accept-encoding": "gzip" },
  });
  expectStatus(m, 200, what);
  const items = parseJson(m, what) as Json[];
  check(items.length > 0, `${what}: empty metadata`);
  // The first image in instance-number order, as a viewer sorts them.
  const firstInstance = [...items].sort((x, y) => Number(firstValue(x, "00200013")) - Number(firstValue(y, "00200013")))[0];
  const sopUid = String(firstValue(firstInstance, "00080018"));
  const rows = Number(firstValue(firstInstance, "00280010"));
  const columns = Number(firstValue(firstInstance, "00280011"));
  const samples = Number(firstValue(firstInstance, "00280002") ?? 1);
  const bits = Number(firstValue(firstInstance, "00280100"));
  const f = await side.client.request(`/studies/${study.studyUid}/series/${seriesUid}/instances/${sopUid}/frames/1`, {
    headers: { accept: UNCOMPRESSED },
  });
  expectStatus(f, 200, what);
  const frame = (parseMultipart(f.body, f.headers["content-type"])[0] as { body: Buffer }).body;
  const expected = rows * columns * samples * (bits / 8);
  check(frame.length === expected || frame.length === expected + 1, `${what}: first frame ${frame.length} bytes, expected ${expected}`);
  return performance.now() - started;
}

export async function timeToFirstImagePhase(phase: Phase, studies: MixedStudy[]): Promise<void> {
  const { ours, peer, sides, addRow } = phase;
  const times = await interleaved(sides, studies.length, (side, i) => timeToFirstImage(side, studies[i] as MixedStudy));
  addRow({
    name: "Time to first image (QIDO → series → metadata → frame 1), p50",
    unit: "ms",
    ours: round(median(times.get(ours) as number[])),
    peer: peer ? round(median(times.get(peer) as number[])) : undefined,
    higherIsBetter: false,
    note: `${studies.length} studies (CT 512², MR 256², RGB US) never asked before, each once per server, frame uncompressed; p95 ${sides.map((s) => `${s.label} ${fmt(percentile(times.get(s) as number[], 0.95), 1)} ms`).join(", ")}`,
  });
}
