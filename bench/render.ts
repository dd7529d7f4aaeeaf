/**
 * Rendering suite: a 512×512 16-bit signed CT frame (rescale, window 40/400 from the dataset) to
 * JPEG quality 90, the WADO-RS Retrieve Rendered path after decoding.
 *
 *   - one image at a time on the calling thread (latency: LUT + window + sharp JPEG encode);
 *   - throughput through the piscina task (render-worker.ts) on as many worker threads as there
 *     are CPUs, frames transferred to the workers as a server would: images per second, goal
 *     ≥ 150 on 2 cores;
 *   - peer: dcmjs-imaging 0.2.5 rendering the same frame (RGBA) plus sharp's JPEG encode of it,
 *     when the dev dependency is installed (informative).
 *
 * The frame is generated from a fixed seed. Before timing, the JPEG is decoded and checked: size,
 * one grey channel, and its mean within 2 of the rendered pixels' mean (and of the peer's).
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { performance } from "node:perf_hooks";
import { Piscina } from "piscina";
import sharp from "sharp";
import { parseRenderParams } from "../src/codec/render-params.js";
import { type Presentation, renderFrame, renderRaster } from "../src/codec/render.js";
import type { RenderTask } from "../src/codec/render-worker.js";
import type { DecodedFrame } from "../src/codec/types.js";
import { jsonToDataset, writePart10 } from "../src/dicom/index.js";
import type { BenchRow, Goal, Suite, SuiteContext } from "./main.js";
import { seededRandom } from "./seeded-random.js";

const SIZE = 512;
const TARGET_PER_SECOND = 150;
const PEER_NAME = "dcmjs-imaging 0.2.5 + sharp JPEG";

class BenchCheckError extends Error {}
function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new BenchCheckError(`wrong answer: ${message}`);
}
const goal = (text: string, met: boolean): Goal => ({ text, met });

/** A CT-like phantom: air around a soft-tissue disc with bone ring and noise, stored = HU + 1024 as signed 16-bit. */
function ctPixels(): Int16Array {
  const random = seededRandom(512);
  const out = new Int16Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const r = Math.hypot(x - SIZE / 2, y - SIZE / 2) / (SIZE / 2);
      const hu = r > 0.9 ? -1000 : r > 0.82 ? 900 : 40 + 60 * Math.sin(x / 17) * Math.cos(y / 23);
      out[y * SIZE + x] = Math.round(hu + 1024 + (random() - 0.5) * 60);
    }
  }
  return out;
}

const presentation: Presentation = {
  rescaleSlope: 1,
  rescaleIntercept: -1024,
  window: { center: 40, width: 400, function: "linear" },
};

function makeFrame(): DecodedFrame {
  const pixels = ctPixels();
  return {
    info: {
      rows: SIZE,
      columns: SIZE,
      samplesPerPixel: 1,
      bitsAllocated: 16,
      bitsStored: 16,
      highBit: 15,
      pixelRepresentation: 1,
      photometricInterpretation: "MONOCHROME2",
      planarConfiguration: 0,
    },
    pixels: new Uint8Array(pixels.buffer),
  };
}

/** The same frame as a Part 10 file (for the peer, which reads files). */
function makeFile(frame: DecodedFrame): Buffer {
  const v = (vr: string, ...values: unknown[]) => ({ vr, Value: values });
  const { dataset } = jsonToDataset({
    "00080016": v("UI", "1.2.840.10008.5.1.4.1.1.2"),
    "00080018": v("UI", "2.25.9182736450918273645091827364"),
    "00280002": v("US", 1),
    "00280004": v("CS", "MONOCHROME2"),
    "00280010": v("US", SIZE),
    "00280011": v("US", SIZE),
    "00280100": v("US", 16),
    "00280101": v("US", 16),
    "00280102": v("US", 15),
    "00280103": v("US", 1),
    "00281050": v("DS", 40),
    "00281051": v("DS", 400),
    "00281052": v("DS", -1024),
    "00281053": v("DS", 1),
    "7FE00010": { vr: "OW", InlineBinary: Buffer.from(frame.pixels).toString("base64") },
  });
  return writePart10(dataset, { transferSyntaxUid: "1.2.840.10008.1.2.1" });
}

const mean = (data: Uint8Array, channels = 1): number => {
  let sum = 0;
  for (let i = 0; i < data.length; i += channels) sum += data[i] as number;
  return sum / (data.length / channels);
};

/** Median µs per call of an async function, called one at a time. */
async function timeAsync(context: SuiteContext, fn: () => Promise<unknown>): Promise<number> {
  const warmupMs = context.quick ? 300 : 800;
  const runs = context.quick ? 5 : 11;
  const start = performance.now();
  let calls = 0;
  while (calls < 5 || performance.now() - start < warmupMs) {
    await fn();
    calls++;
  }
  const batch = Math.max(3, Math.ceil((context.quick ? 150 : 300) / ((performance.now() - start) / calls)));
  const samples: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) await fn();
    samples.push(((performance.now() - t0) * 1000) / batch);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1] as number;
}

/** Images per second through a piscina pool, `inFlight` tasks queued at any time. */
async function throughput(context: SuiteContext, frame: DecodedFrame, threads: number): Promise<{ perSecond: number; images: number }> {
  const pool = new Piscina({
    filename: new URL("../src/codec/render-worker.js", import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
  });
  const params = parseRenderParams([]);
  const task = (): { task: RenderTask; transfer: ArrayBuffer } => {
    const pixels = new Uint8Array(frame.pixels); // what a decoder hands over: a fresh buffer, transferred
    return {
      task: { frames: [{ info: frame.info, pixels: pixels.buffer }], presentations: presentation, params, mediaType: "image/jpeg" },
      transfer: pixels.buffer,
    };
  };
  const runFor = async (ms: number): Promise<{ images: number; elapsed: number; bytes: number }> => {
    const inFlight = threads * 4;
    let images = 0;
    let bytes = 0;
    const start = performance.now();
    const worker = async () => {
      while (performance.now() - start < ms) {
        const { task: t, transfer } = task();
        const out = (await pool.run(t, { name: "renderTask", transferList: [transfer] })) as ArrayBuffer;
        bytes += out.byteLength;
        images++;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    return { images, elapsed: performance.now() - start, bytes };
  };
  try {
    await runFor(context.quick ? 300 : 1000); // threads started, JIT warm
    const measured = await runFor(context.quick ? 1500 : 4000);
    check(measured.bytes / measured.images > 1000, "worker JPEGs are not empty");
    return { perSecond: (measured.images * 1000) / measured.elapsed, images: measured.images };
  } finally {
    await pool.destroy();
  }
}

interface Peer {
  render(): Promise<Buffer>;
}

async function loadPeer(file: Buffer): Promise<Peer | undefined> {
  let im: {
    NativePixelDecoder: { initializeAsync(): Promise<void> };
    DicomImage: new (buffer: ArrayBuffer) => { render(o: unknown): { width: number; height: number; pixels: ArrayBuffer } };
    WindowLevel: new (window: number, level: number) => unknown;
  };
  try {
    im = createRequire(import.meta.url)("dcmjs-imaging");
  } catch {
    return undefined;
  }
  await im.NativePixelDecoder.initializeAsync();
  const image = new im.DicomImage(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer);
  return {
    render: () => {
      const r = image.render({ frame: 0, windowLevel: new im.WindowLevel(400, 40) });
      return sharp(new Uint8Array(r.pixels), { raw: { width: r.width, height: r.height, channels: 4 } })
        .jpeg({ quality: 90 })
        .toBuffer();
    },
  };
}

export const renderSuite: Suite = {
  name: "Rendering",
  async run(context) {
    const rows: BenchRow[] = [];
    const frame = makeFrame();
    const params = parseRenderParams([]);
    const render = () => renderFrame(frame, presentation, params, "image/jpeg");

    // Correctness first: a fast wrong answer fails the run.
    const raster = renderRaster(frame, presentation, params);
    const expectedMean = mean(raster.data);
    const jpeg = await render();
    const decoded = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    const meta = await sharp(jpeg).metadata();
    check(meta.format === "jpeg" && meta.width === SIZE && meta.height === SIZE, `JPEG is ${meta.format} ${meta.width}×${meta.height}`);
    check(meta.channels === 1, `grey JPEG has ${meta.channels} channels`);
    const jpegMean = mean(decoded.data, decoded.info.channels);
    check(Math.abs(jpegMean - expectedMean) < 2, `JPEG mean ${jpegMean.toFixed(2)} vs rendered ${expectedMean.toFixed(2)}`);
    check(expectedMean > 20 && expectedMean < 200, `rendered mean ${expectedMean.toFixed(2)} is not a windowed CT`);
    context.log(
      `512² CT → JPEG q90: ${jpeg.length.toLocaleString("en-US")} bytes, mean ${jpegMean.toFixed(1)} (rendered ${expectedMean.toFixed(1)})`,
    );

    const peer = await loadPeer(makeFile(frame));
    if (peer) {
      const peerJpeg = await sharp(await peer.render())
        .raw()
        .toBuffer({ resolveWithObject: true });
      const peerMean = mean(peerJpeg.data, peerJpeg.info.channels);
      check(Math.abs(peerMean - jpegMean) < 2, `peer mean ${peerMean.toFixed(2)} vs ours ${jpegMean.toFixed(2)}: not the same rendering`);
    } else {
      context.log("dcmjs-imaging not installed (dev dependency): peer row skipped");
    }

    const ours = await timeAsync(context, render);
    const peerUs = peer ? await timeAsync(context, () => peer.render()) : undefined;
    const latency: BenchRow = {
      name: "Render 512² 16-bit CT → JPEG, one at a time",
      ours,
      unit: "µs/op",
      note: `window 40/400 + rescale, quality 90, ${jpeg.length} B; calling thread, sharp's own threads`,
    };
    if (peerUs !== undefined) {
      latency.peer = peerUs;
      latency.peerName = PEER_NAME;
      latency.ratio = peerUs / ours;
    }
    rows.push(latency);
    context.log(`one at a time: ${(ours / 1000).toFixed(2)} ms/image${peerUs ? `, peer ${(peerUs / 1000).toFixed(2)} ms` : ""}`);

    const threads = availableParallelism();
    const { perSecond, images } = await throughput(context, frame, threads);
    rows.push({
      name: `Render 512² CT → JPEG, ${threads} worker thread(s)`,
      ours: 1e6 / perSecond,
      unit: "µs/op",
      goals: [goal(`≥ ${TARGET_PER_SECOND} images/s on 2 cores`, perSecond >= TARGET_PER_SECOND)],
      note: `${Math.round(perSecond)} images/s through the piscina task (${images} images, frames transferred)`,
    });
    context.log(`pool of ${threads}: ${perSecond.toFixed(0)} images/s`);
    return rows;
  },
};
