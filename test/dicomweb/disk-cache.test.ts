import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { DiskCache } from "../../src/dicomweb/disk-cache.js";

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-disk-cache-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
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

test("disk cache: an entry whose file the computation wrote itself is counted, served from disk and evicted like any other", async (t) => {
  const dir = tempDir(t);
  // No memory tier: every hit below is read from the file the computation wrote.
  const cache = new DiskCache(dir, 2500, { memoryBytes: 0 });
  let computed = 0;
  const writer = (fill: number) => async (file: string) => {
    computed++;
    const bytes = Buffer.alloc(1000, fill);
    writeFileSync(file, bytes);
    return bytes;
  };
  const first = await Promise.all(Array.from({ length: 3 }, () => cache.getWrittenBy("w1", writer(1))));
  assert.equal(computed, 1, "a stampede computes once");
  for (const b of first) assert.deepEqual(b, Buffer.alloc(1000, 1));
  await settle(cache, 1, dir);
  assert.deepEqual(await cache.getWrittenBy("w1", writer(9)), Buffer.alloc(1000, 1));
  assert.equal(computed, 1, "the second request is a disk hit");
  assert.equal(cache.size, 1000);
  // Over the 2,500-byte budget: the oldest-used entry goes, its file too.
  await cache.getWrittenBy("w2", writer(2));
  await cache.getWrittenBy("w3", writer(3));
  await settle(cache, 2, dir);
  assert.equal(cache.size, 2000);
  assert.deepEqual(await cache.get("w1", async () => Buffer.alloc(1000, 7)), Buffer.alloc(1000, 7), "w1 was evicted and computed again");
  // A file that vanished is computed (and written) again rather than failing the request.
  for (const f of filesIn(dir)) rmSync(join(dir, f));
  assert.deepEqual(await cache.getWrittenBy("w3", writer(4)), Buffer.alloc(1000, 4));
});
