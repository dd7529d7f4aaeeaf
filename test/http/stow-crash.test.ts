/**
 * Crash safety (DESIGN.md "Reliability and security defaults"): the CLI server is SIGKILLed in the
 * middle of a big STOW (40 instances of ~2 MB sent slowly) at seeded random points — while the
 * body is arriving and while the request commits — and restarted on the same data folder. After
 * each restart: nothing a completed STOW acknowledged is lost, every indexed instance's blob exists
 * with the right sha256, no blob is left that the index does not know, a request is stored all or
 * nothing, and staging is empty.
 *
 * CRASH_SEED=<n> replays a run; CRASH_ROUNDS=<n> changes the number of kills (default 6).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { openArchive } from "../../src/store/file-archive.js";
import {
  type ChildServer,
  dicomPartHeader,
  type HttpResponse,
  httpRequest,
  listFiles,
  multipartBody,
  sha256,
  spawnServer,
  stowItems,
  syntheticInstance,
} from "../helpers/archive-harness.js";
import { seededRandom as prng } from "../../bench/seeded-random.js";

const SEED = Number(process.env.CRASH_SEED ?? 20261123);
const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 6);
const PER_REQUEST = 40;
/** 1024 × 2048 8-bit pixels: ~2 MB per instance. */
const ROWS = 1024;
const COLUMNS = 2048;

interface Generated {
  sop: string;
  study: string;
  sha: string;
}

/** Instance `i` of request `r`: deterministic, so its sha256 is known without keeping the bytes. */
function instance(r: number, i: number): { bytes: Buffer; meta: Generated } {
  const study = `1.2.826.0.9.${r}`;
  const sop = `1.2.826.0.9.${r}.1.${i}`;
  const bytes = syntheticInstance({
    studyUid: study,
    seriesUid: `${study}.1`,
    sopUid: sop,
    rows: ROWS,
    columns: COLUMNS,
    seed: r * 1000 + i,
    instanceNumber: i + 1,
  });
  return { bytes, meta: { sop, study, sha: sha256(bytes) } };
}

const BOUNDARY = "crash-test-boundary";
const CONTENT_TYPE = `multipart/related; type="application/dicom"; boundary=${BOUNDARY}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SlowStow {
  /** Bytes of the whole body. */
  total: number;
  /** The answer, or the error when the connection broke. */
  result: Promise<HttpResponse | Error>;
  /** Resolves once the last byte was handed to the socket. */
  bodySent: Promise<void>;
  /** Drops the connection (cleanup). */
  destroy(): void;
}

/**
 * Streams a STOW of `count` generated instances at about `bytesPerSecond`, calling `onProgress`
 * with the bytes sent so far. Stops writing when the connection breaks.
 */
function slowStow(url: string, r: number, count: number, bytesPerSecond: number, onProgress: (sent: number) => void): SlowStow {
  const partSize = dicomPartHeader(BOUNDARY).length + instance(r, 0).bytes.length + 2;
  const closing = Buffer.from(`--${BOUNDARY}--\r\n`);
  const total = partSize * count + closing.length;
  const req = http.request(`${url}/studies`, {
    method: "POST",
    headers: { "content-type": CONTENT_TYPE, "content-length": String(total), accept: "application/dicom+json" },
    agent: false,
  });
  let broken: Error | undefined;
  let wake: (() => void) | undefined;
  const result = new Promise<HttpResponse | Error>((resolve) => {
    req.on("error", (err) => {
      broken = err;
      wake?.();
      resolve(err);
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (err) => resolve(err));
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text: () => body.toString(),
          json: () => JSON.parse(body.toString()) as unknown,
        });
      });
    });
  });
  const bodySent = (async () => {
    await sleep(0); // let the caller keep the returned object first
    let sent = 0;
    const started = Date.now();
    const write = async (chunk: Buffer) => {
      for (let off = 0; off < chunk.length && !broken; off += 256 * 1024) {
        const piece = chunk.subarray(off, off + 256 * 1024);
        if (!req.write(piece)) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            req.once("drain", resolve);
          });
        }
        sent += piece.length;
        onProgress(sent);
        const due = started + (sent / bytesPerSecond) * 1000;
        if (due > Date.now()) await sleep(due - Date.now());
      }
    };
    for (let i = 0; i < count && !broken; i++) {
      await write(dicomPartHeader(BOUNDARY));
      await write(instance(r, i).bytes);
      await write(Buffer.from("\r\n"));
    }
    if (!broken) {
      await write(closing);
      req.end();
    }
  })();
  return { total, result, bodySent, destroy: () => req.destroy() };
}

async function completedStow(server: ChildServer, r: number, count: number): Promise<Generated[]> {
  const made = Array.from({ length: count }, (_, i) => instance(r, i));
  const { body, contentType } = multipartBody(
    made.map((m) => m.bytes),
    BOUNDARY,
  );
  const res = await httpRequest(`${server.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
  assert.equal(res.status, 200, res.text());
  assert.equal(stowItems(res.json()).referenced.length, count);
  return made.map((m) => m.meta);
}

/** Opens the data folder (server stopped) and checks the index against the files. */
async function checkConsistency(
  dataDir: string,
  acknowledged: Generated[],
  attempted: Map<number, Generated[]>,
): Promise<{ indexed: number; orphans: string[] }> {
  const archive = await openArchive({ dataDir });
  try {
    const indexed = new Map<string, { blobKey: string; sha256: string; studyUid: string }>();
    const studies = new Set<string>([...acknowledged.map((g) => g.study), ...[...attempted.values()].flat().map((g) => g.study)]);
    for (const study of studies) for (const row of archive.index.instances({ studyUid: study })) indexed.set(row.sopUid, row);
    assert.equal(archive.index.stats().instances, indexed.size, "every indexed instance is one this test sent");

    // Every acknowledged instance is there, whole.
    for (const g of acknowledged) {
      const row = indexed.get(g.sop);
      assert.ok(row, `acknowledged instance ${g.sop} is still indexed`);
      assert.equal(row.sha256, g.sha, `${g.sop}: index sha256`);
    }
    // Every indexed instance's file exists and hashes to what the index says.
    const blobDir = join(dataDir, "blobs");
    for (const [sop, row] of indexed) {
      const bytes = readFileSync(join(blobDir, row.blobKey));
      assert.equal(sha256(bytes), row.sha256, `${sop}: the blob file holds the indexed bytes`);
    }
    // A request is stored all or nothing; a stored one has the bytes that were sent.
    for (const [r, sent] of attempted) {
      const stored = sent.filter((g) => indexed.has(g.sop));
      assert.ok(
        stored.length === 0 || stored.length === sent.length,
        `request ${r}: ${stored.length} of ${sent.length} instances stored (all or nothing)`,
      );
      for (const g of stored) assert.equal(indexed.get(g.sop)?.sha256, g.sha);
    }
    const referenced = new Set([...indexed.values()].map((row) => row.blobKey));
    const orphans = listFiles(blobDir).filter((f) => !referenced.has(f));
    return { indexed: indexed.size, orphans };
  } finally {
    await archive.close();
  }
}

test(
  "SIGKILL in the middle of a big STOW, restart on the same data folder: acknowledged data kept, index and blobs agree",
  { timeout: 180_000 },
  async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), "voxelgate-crash-"));
    t.after(() => rmSync(dataDir, { recursive: true, force: true }));
    const random = prng(SEED);
    t.diagnostic(`CRASH_SEED=${SEED} CRASH_ROUNDS=${ROUNDS}`);

    const acknowledged: Generated[] = [];
    const attempted = new Map<number, Generated[]>();
    const orphanRounds: string[] = [];
    let server = await spawnServer(dataDir);
    t.after(() => server.kill());
    acknowledged.push(...(await completedStow(server, 0, 10)));

    for (let round = 1; round <= ROUNDS; round++) {
      // Something acknowledged in every round, just before the big request.
      acknowledged.push(...(await completedStow(server, 100 + round, 2)));
      const r = round;
      attempted.set(
        r,
        Array.from({ length: PER_REQUEST }, (_, i) => instance(r, i).meta),
      );

      // Three kinds of kill point, in turn: while the body arrives; when the k-th file of this request
      // has been moved into blobs/ (inside the commit: files first, then the index transaction);
      // a short random delay after the last byte.
      const kind = (["upload", "commit", "delay"] as const)[(round - 1) % 3];
      const fraction = 0.05 + random() * 0.9;
      const k = 1 + Math.floor(random() * PER_REQUEST);
      const delay = Math.floor(random() * 200);
      let killed = false;
      const kill = () => {
        if (killed) return;
        killed = true;
        server.child.kill("SIGKILL");
      };
      const blobsBefore = listFiles(join(dataDir, "blobs")).length;
      const stow = slowStow(server.dicomweb, r, PER_REQUEST, 60 * 1024 * 1024, (sent) => {
        if (kind === "upload" && sent >= fraction * stow.total) kill();
      });
      t.after(() => stow.destroy());
      let where: string;
      if (kind === "upload") {
        where = `after ${Math.round(fraction * 100)}% of the body`;
      } else if (kind === "commit") {
        await stow.bodySent;
        const until = Date.now() + 30_000;
        while (!killed && Date.now() < until && server.child.exitCode === null) {
          if (listFiles(join(dataDir, "blobs")).length >= blobsBefore + k) kill();
          else await sleep(1);
        }
        kill();
        where = `when file ${k} of ${PER_REQUEST} had been moved into blobs/`;
      } else {
        await stow.bodySent;
        await sleep(delay);
        kill();
        where = `${delay} ms after the last byte`;
      }
      const outcome = await stow.result;
      await server.exited;
      const answered = !(outcome instanceof Error);
      // An answer that arrived before the kill acknowledged the request: it must survive too.
      if (answered && outcome.status === 200) acknowledged.push(...(attempted.get(r) ?? []));
      const stagingLeft = listFiles(join(dataDir, "staging")).length;

      // Restart on the same folder: staging swept, acknowledged instances served.
      server = await spawnServer(dataDir);
      assert.deepEqual(listFiles(join(dataDir, "staging")), [], `round ${round}: no staging leftovers after start`);
      for (const g of acknowledged.slice(-3)) {
        const res = await httpRequest(`${server.dicomweb}/studies/${g.study}/series/${g.study}.1/instances/${g.sop}`, {
          headers: { accept: "application/dicom; transfer-syntax=*" },
        });
        assert.equal(res.status, 200, `round ${round}: acknowledged ${g.sop} is served after the restart`);
        assert.equal(sha256(res.body), g.sha);
      }
      await server.kill("SIGTERM");

      const { indexed, orphans } = await checkConsistency(dataDir, acknowledged, attempted);
      const line = `round ${round}: killed ${where}; answer: ${answered ? outcome.status : "none"}; staging files left by the kill: ${stagingLeft}; indexed: ${indexed}; blob files the index does not know: ${orphans.length}`;
      t.diagnostic(line);
      if (orphans.length > 0) orphanRounds.push(line);
      server = await spawnServer(dataDir);
    }
    await server.kill("SIGTERM");
    assert.ok(acknowledged.length >= 10 + 2 * ROUNDS);
    // Checked last so that every round runs: a file moved into blobs/ whose index transaction never
    // ran is invisible (no half instance), but nothing ever removes it — index and blobs/ disagree.
    assert.deepEqual(orphanRounds, [], "after a restart every blob file belongs to an indexed instance");
  },
);
