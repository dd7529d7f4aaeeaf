import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { cacheFileName, DiskCache } from "../../src/dicomweb/disk-cache.js";

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-disk-cache-"));
  // A test may end while the cache still writes a file in the background: retry when rmdir meets it (ENOTEMPTY).
  t.after(() => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 }));
  return join(dir, "cache");
}

const filesIn = (dir: string) => readdirSync(dir).filter((n) => !n.startsWith("."));

async function settle(cache: DiskCache, files: number, dir: string): Promise<void> {
  for (let i = 0; i < 200 && filesIn(dir).length < files; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(cache.fileCount(), files);
}

test("disk cache: computes once, serves hits from memory, and from disk when memory has dropped the entry", async (t) => {
  const dir = tempDir(t);
  // 64 KiB of memory: entries up to 4 KiB are kept there.
  const cache = new DiskCache(dir, 1 << 20, { memoryBytes: 64 * 1024 });
  let computed = 0;
  const make = (fill: number, size: number) => async () => {
    computed++;
    return Buffer.alloc(size, fill);
  };
  const first = await Promise.all(Array.from({ length: 5 }, () => cache.get("a", make(1, 1000))));
  assert.equal(computed, 1, "a stampede computes once");
  for (const b of first) assert.deepEqual(b, Buffer.alloc(1000, 1));
  await settle(cache, 1, dir);
  assert.equal(cache.memorySize, 1000);
  // Remove the file: a memory hit does not touch the disk.
  for (const f of filesIn(dir)) rmSync(join(dir, f));
  assert.deepEqual(await cache.get("a", make(9, 1000)), Buffer.alloc(1000, 1));
  assert.equal(computed, 1);
  assert.equal(cache.hits, 1);

  // A big entry (over 1/16 of the memory) is on disk only, and served from there.
  await cache.get("big", make(2, 8000));
  await settle(cache, 1, dir);
  assert.equal(cache.memorySize, 1000, "the big entry is not kept in memory");
  assert.deepEqual(await cache.get("big", make(3, 8000)), Buffer.alloc(8000, 2));
  assert.equal(computed, 2, "the second request for the big entry is a disk hit");

  // Memory stays within its budget: 20 entries of 4 KiB in 64 KiB.
  for (let i = 0; i < 20; i++) await cache.get(`m${i}`, make(i, 4096));
  assert.ok(cache.memorySize <= 64 * 1024, `memory ${cache.memorySize} within 64 KiB`);
});

test("disk cache: forget drops the memory and disk entries of one instance, whether or not its file is written yet", async (t) => {
  const dir = tempDir(t);
  const cache = new DiskCache(dir, 1 << 20, { memoryBytes: 1 << 20 });
  await cache.get("sha1/1/x", async () => Buffer.alloc(100, 1));
  await settle(cache, 1, dir);
  await cache.get("sha2/1/x", async () => Buffer.alloc(100, 3));
  // Answered, its file possibly not written yet: forget waits for it.
  await cache.get("sha1/2/x", async () => Buffer.alloc(100, 2));
  assert.equal(await cache.forget("sha1/"), 2);
  assert.equal(cache.fileCount(), 1, "only the other instance's file is left");
  assert.equal(cache.memorySize, 100);
  let recomputed = false;
  await cache.get("sha1/1/x", async () => {
    recomputed = true;
    return Buffer.alloc(100, 1);
  });
  assert.ok(recomputed, "a forgotten entry is computed again");
});

test("disk cache with writeOnEviction: entries stay in memory unwritten, are written when they leave it, and are served from disk after", async (t) => {
  const dir = tempDir(t);
  // 16 KiB of memory (entries up to 1 KiB), 3,000 bytes of disk.
  const cache = new DiskCache(dir, 3000, { memoryBytes: 16 * 1024, writeOnEviction: true });
  let computed = 0;
  const make =
    (fill: number, size = 1000) =>
    async () => {
      computed++;
      return Buffer.alloc(size, fill);
    };
  const first = await Promise.all(Array.from({ length: 3 }, () => cache.get("e0", make(0))));
  assert.equal(computed, 1, "a stampede computes once");
  for (const b of first) assert.deepEqual(b, Buffer.alloc(1000, 0));
  for (let i = 1; i < 16; i++) await cache.get(`e${i}`, make(i));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(cache.fileCount(), 0, "16 entries fit in memory: nothing written");
  assert.equal(cache.memorySize, 16_000);
  // Two more push the two oldest out of memory: they are written then.
  await cache.get("e16", make(16));
  await cache.get("e17", make(17));
  await settle(cache, 2, dir);
  assert.equal(cache.size, 2000);
  assert.deepEqual(await cache.get("e0", make(99)), Buffer.alloc(1000, 0), "e0 is read back from its file");
  assert.deepEqual(await cache.get("e1", make(99)), Buffer.alloc(1000, 1));
  assert.equal(computed, 18, "neither was computed again");
  // An entry too big for memory is written right away.
  await cache.get("big", make(50, 2000));
  for (let i = 0; i < 100 && !filesIn(dir).includes(cacheFileName("big")); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(filesIn(dir).includes(cacheFileName("big")), "the big entry's file");
  assert.ok(cache.size <= 3000, `disk within its budget: ${cache.size}`);
  assert.deepEqual(await cache.get("big", make(51, 2000)), Buffer.alloc(2000, 50));
  assert.equal(computed, 19);
  // forget waits for writes under way and drops memory and disk entries alike.
  for (let i = 18; i < 40; i++) await cache.get(`e${i}`, make(i));
  assert.ok(countHeld(cache, 40) >= 16, "memory holds 16 entries, the disk a few, more are being written");
  assert.ok((await cache.forget("e")) >= 16);
  assert.equal(countHeld(cache, 40), 0, "every e entry forgotten");
  assert.ok(
    filesIn(dir).every((f) => f === cacheFileName("big")),
    "no e entry's file is left (the big one may have been evicted by the spills)",
  );
  assert.equal(cache.memorySize, 0);
});

function countHeld(cache: DiskCache, n: number): number {
  let held = 0;
  for (let i = 0; i < n; i++) if (cache.holds(`e${i}`)) held++;
  return held;
}
