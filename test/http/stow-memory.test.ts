/**
 * Bounded memory (DESIGN.md "Performance architecture"): a 2 GB STOW — 200 parts of 10 MB, each a
 * distinct instance made on the fly from one template — streamed to the CLI server while its
 * resident memory is sampled from /proc/<pid>/status every 100 ms. The peak must stay under
 * 300 MB and all 200 instances must be stored.
 *
 * STOW_MEMORY_PARTS / STOW_MEMORY_PART_MB change the size (defaults 200 × 10).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { openArchive } from "../../src/store/file-archive.js";
import { dicomPartHeader, fixedUid, listFiles, spawnServer, stowItems, syntheticInstance } from "../helpers/archive-harness.js";

const PARTS = Number(process.env.STOW_MEMORY_PARTS ?? 200);
const PART_MB = Number(process.env.STOW_MEMORY_PART_MB ?? 10);
const LIMIT_MB = 300;
const BOUNDARY = "memory-test-boundary";
const STUDY = "1.2.826.0.7.1";
const SERIES = "1.2.826.0.7.1.1";
const SOP_ROOT = "1.2.826.0.7.1.1.1";

function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The template instance (PART_MB of 8-bit pixels) split into its header and pixel bytes; part i is
 * the header with the SOP Instance UID replaced (same length) followed by the shared pixel bytes.
 */
function template(): { header: Buffer; pixels: Buffer; sopAt: number[]; uid: (i: number) => string } {
  const columns = 2048;
  const rows = Math.floor((PART_MB * 1024 * 1024) / columns);
  const placeholder = fixedUid(SOP_ROOT, 0);
  const bytes = syntheticInstance({ studyUid: STUDY, seriesUid: SERIES, sopUid: placeholder, rows, columns });
  const pixelsAt = bytes.length - rows * columns;
  const header = bytes.subarray(0, pixelsAt);
  const sopAt: number[] = [];
  for (let at = header.indexOf(placeholder); at >= 0; at = header.indexOf(placeholder, at + 1)) sopAt.push(at);
  assert.equal(sopAt.length, 2, "the SOP Instance UID is in the file meta and in the dataset");
  return { header, pixels: bytes.subarray(pixelsAt), sopAt, uid: (i) => fixedUid(SOP_ROOT, i) };
}

test(
  `a ${PARTS} × ${PART_MB} MB STOW streamed to the server keeps its resident memory under ${LIMIT_MB} MB`,
  { timeout: 300_000 },
  async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-memory-"));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const server = await spawnServer(dataDir);
    t.after(() => server.kill());

    const tpl = template();
    const partHeader = dicomPartHeader(BOUNDARY);
    const partBytes = partHeader.length + tpl.header.length + tpl.pixels.length + 2;
    const closing = Buffer.from(`--${BOUNDARY}--\r\n`);
    const total = partBytes * PARTS + closing.length;

    let peak = 0;
    const idle = rssKiB(server.pid) ?? 0;
    const samples: number[] = [];
    const sampler = setInterval(() => {
      const kib = rssKiB(server.pid);
      if (kib === undefined) return;
      samples.push(kib);
      peak = Math.max(peak, kib);
    }, 100);
    t.after(() => clearInterval(sampler));

    const started = Date.now();
    let bodyDoneAt = 0;
    const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${server.dicomweb}/studies`, {
        method: "POST",
        headers: {
          "content-type": `multipart/related; type="application/dicom"; boundary=${BOUNDARY}`,
          "content-length": String(total),
          accept: "application/dicom+json",
        },
        agent: false,
      });
      req.on("error", reject);
      req.on("response", (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      });
      // Parts are produced as the socket drains: the test process holds one template, not 2 GB.
      async function* body(): AsyncGenerator<Buffer> {
        const SLICE = 1024 * 1024;
        for (let i = 0; i < PARTS; i++) {
          const header = Buffer.from(tpl.header);
          for (const at of tpl.sopAt) header.write(tpl.uid(i), at, "latin1");
          yield partHeader;
          yield header;
          for (let off = 0; off < tpl.pixels.length; off += SLICE) yield tpl.pixels.subarray(off, off + SLICE);
          yield Buffer.from("\r\n");
        }
        yield closing;
      }
      void (async () => {
        for await (const chunk of body()) {
          if (!req.write(chunk)) await new Promise((r) => req.once("drain", r));
        }
        req.end();
        bodyDoneAt = Date.now();
      })().catch(reject);
    });
    clearInterval(sampler);
    const seconds = (Date.now() - started) / 1000;

    const peakMb = peak / 1024;
    t.diagnostic(
      `sent ${(total / 1e9).toFixed(2)} GB in ${seconds.toFixed(1)} s (${(total / 1e6 / seconds).toFixed(0)} MB/s; ` +
        `commit after the last byte ${((Date.now() - bodyDoneAt) / 1000).toFixed(1)} s); server RSS idle ${(idle / 1024).toFixed(0)} MB, ` +
        `peak ${peakMb.toFixed(0)} MB over ${samples.length} samples`,
    );
    assert.equal(response.status, 200, response.body.slice(0, 500));
    const { referenced, failed } = stowItems(JSON.parse(response.body));
    assert.equal(failed.length, 0);
    assert.equal(referenced.length, PARTS);
    assert.ok(samples.length >= 5, "memory was sampled while the request ran");
    assert.ok(peakMb < LIMIT_MB, `server peak RSS ${peakMb.toFixed(0)} MB must stay under ${LIMIT_MB} MB`);

    await server.kill("SIGTERM");
    const archive = await openArchive({ dataDir });
    try {
      assert.deepEqual(archive.index.stats(), { studies: 1, series: 1, instances: PARTS });
      const rows = archive.index.instances({ studyUid: STUDY });
      assert.deepEqual(new Set(rows.map((r) => r.sopUid)), new Set(Array.from({ length: PARTS }, (_, i) => tpl.uid(i))));
      assert.ok(rows.every((r) => r.fileSize === tpl.header.length + tpl.pixels.length));
    } finally {
      await archive.close();
    }
    assert.equal(listFiles(join(dataDir, "blobs")).length, PARTS);
    assert.deepEqual(listFiles(join(dataDir, "staging")), []);
  },
);
