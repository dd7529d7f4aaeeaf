/**
 * The worker pool: concurrent tasks give the same bytes as the same work done in this thread;
 * buffers are moved only when the caller gives them up; CodecError codes survive the thread
 * boundary; a task past its time limit fails and the pool goes on.
 */
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { after, test } from "node:test";
import {
  CodecError,
  CodecPool,
  closeCodecPool,
  codecPool,
  decodeFrame,
  encodeFrame,
  frameInfoOf,
  transcodeDataset,
  transcodeFrame,
} from "../../src/codec/index.js";
import { TransferSyntaxUids as TS } from "../../src/dicom/index.js";
import { requireTools, TOOLS } from "../helpers/tools.js";
import { load, pydicomFile, sourcePath } from "./corpus.js";

const pool = new CodecPool({ size: 2 });
after(() => pool.close());

test("concurrent transcodes in the pool equal the same transcodes in this thread", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const ct = load(sourcePath("ct16s"));
  const rgb = load(sourcePath("rgb8"));
  const jpeg = load(pydicomFile("SC_rgb_jpeg_gdcm.dcm"));
  const rle = load(pydicomFile("MR_small_RLE.dcm"));
  const jobs: Array<[Uint8Array, string, ReturnType<typeof frameInfoOf>, string]> = [];
  for (let i = 0; i < 3; i++) {
    jobs.push([ct.frames[0] as Uint8Array, ct.syntax, frameInfoOf(ct.dataset), TS.HTJ2KLossless]);
    jobs.push([ct.frames[0] as Uint8Array, ct.syntax, frameInfoOf(ct.dataset), TS.JPEGLSLossless]);
    jobs.push([rgb.frames[0] as Uint8Array, rgb.syntax, frameInfoOf(rgb.dataset), TS.JPEGBaseline8Bit]);
    jobs.push([jpeg.frames[0] as Uint8Array, jpeg.syntax, frameInfoOf(jpeg.dataset), TS.ExplicitVRLittleEndian]);
    jobs.push([rle.frames[0] as Uint8Array, rle.syntax, frameInfoOf(rle.dataset), TS.HTJ2KLosslessRPCL]);
  }
  const pooled = await Promise.all(jobs.map(([bytes, from, info, to]) => pool.transcodeFrame(bytes, from, info, to)));
  for (const [i, [bytes, from, info, to]] of jobs.entries()) {
    const here = await transcodeFrame(bytes, from, info, to);
    const there = pooled[i];
    assert.ok(there);
    assert.ok(Buffer.from(there.bytes).equals(Buffer.from(here.bytes)), `job ${i}: ${from} → ${to}`);
    assert.deepEqual(there.info, here.info);
    assert.equal(there.mediaType, here.mediaType);
    assert.equal(there.lossy, here.lossy);
    assert.equal(there.lossyRatio, here.lossyRatio);
  }
});

test("decode and encode in the pool; a whole dataset through the pool equals the in-thread one", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const jls = load(pydicomFile("MR_small_jpeg_ls_lossless.dcm"));
  const info = frameInfoOf(jls.dataset);
  const decoded = await pool.decodeFrame(jls.frames[0] as Uint8Array, jls.syntax, info);
  const local = await decodeFrame(jls.frames[0] as Uint8Array, jls.syntax, info);
  assert.ok(Buffer.from(decoded.pixels).equals(Buffer.from(local.pixels)));
  const encoded = await pool.encodeFrame(decoded, TS.RLELossless);
  const encodedHere = await encodeFrame(local, TS.RLELossless);
  assert.ok(Buffer.from(encoded.bytes).equals(Buffer.from(encodedHere.bytes)));

  const multi = load(sourcePath("rgb3f"));
  const viaPool = await transcodeDataset(multi.dataset, TS.HTJ2KLosslessRPCL, {
    fromSyntax: multi.syntax,
    transcodeFrame: pool.transcodeFrame,
  });
  const inThread = await transcodeDataset(multi.dataset, TS.HTJ2KLosslessRPCL, { fromSyntax: multi.syntax });
  const a = viaPool.get(0x7fe00010)?.encapsulated?.fragments ?? [];
  const b = inThread.get(0x7fe00010)?.encapsulated?.fragments ?? [];
  assert.equal(a.length, 3);
  a.forEach((f, i) => assert.ok(Buffer.from(f.bytes).equals(Buffer.from(b[i]?.bytes ?? [])), `frame ${i + 1}`));
});

test("buffers: copied by default (a view of a larger buffer stays usable), moved with transfer: true", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const ct = load(sourcePath("ct16s"));
  const info = frameInfoOf(ct.dataset);
  const frame = ct.frames[0] as Uint8Array;
  assert.notEqual(frame.byteLength, frame.buffer.byteLength, "the frame is a view of the whole file");
  const first = await pool.transcodeFrame(frame, ct.syntax, info, TS.HTJ2KLossless);
  assert.equal(frame.byteLength, 512 * 512 * 2, "the caller's view is intact");
  const own = Uint8Array.from(frame);
  const moved = await pool.transcodeFrame(own, ct.syntax, info, TS.HTJ2KLossless, { transfer: true });
  assert.equal(own.byteLength, 0, "moved to the worker");
  assert.ok(Buffer.from(moved.bytes).equals(Buffer.from(first.bytes)));
  assert.equal(moved.bytes.byteLength, moved.bytes.buffer.byteLength, "the result owns its buffer");
});

test("CodecError codes cross the thread boundary", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const ct = load(sourcePath("ct16s"));
  const info = frameInfoOf(ct.dataset);
  await assert.rejects(
    pool.transcodeFrame(ct.frames[0] as Uint8Array, ct.syntax, info, TS.JPEGBaseline8Bit),
    (e: unknown) => e instanceof CodecError && e.code === "UNSUPPORTED",
  );
  await assert.rejects(
    pool.decodeFrame(new Uint8Array(100), TS.JPEG2000Lossless, info),
    (e: unknown) => e instanceof CodecError && e.code === "CORRUPT",
  );
  await assert.rejects(
    pool.decodeFrame(ct.frames[0] as Uint8Array, ct.syntax, { ...info, rows: 1024 }),
    (e: unknown) => e instanceof CodecError && e.code === "MISMATCH",
  );
});

test("a task past its time limit fails with TIMEOUT and the pool carries on", async (t) => {
  if (!requireTools(t, TOOLS.pydicom)) return;
  const slow = new CodecPool({ size: 1, taskTimeoutMs: 1 });
  const ct = load(sourcePath("ct16s"));
  const info = frameInfoOf(ct.dataset);
  try {
    await assert.rejects(
      slow.transcodeFrame(ct.frames[0] as Uint8Array, ct.syntax, info, TS.JPEG2000Lossless),
      (e: unknown) => e instanceof CodecError && e.code === "TIMEOUT",
    );
  } finally {
    await slow.close();
  }
  const after = await pool.transcodeFrame(ct.frames[0] as Uint8Array, ct.syntax, info, TS.RLELossless);
  assert.ok(after.bytes.length > 0);
});

test("codecPool() is one pool per process, sized by available parallelism", async () => {
  const a = codecPool();
  assert.equal(codecPool(), a);
  assert.equal(a.size, Math.max(1, availableParallelism()));
  await closeCodecPool();
  const b = codecPool({ size: 1 });
  assert.notEqual(b, a);
  assert.equal(b.size, 1);
  await closeCodecPool();
});
