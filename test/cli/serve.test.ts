/**
 * `voxelgate serve` as a user runs it: the config file is validated with the setting's name,
 * loopback is the default and anything else needs a deliberate setting, SIGTERM lets a STOW in
 * flight finish before exiting, and operations endpoints (/metrics, /readyz, request ids, HEAD,
 * OPTIONS) answer on the real server.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { openArchive } from "../../src/store/file-archive.js";
import { dicomPartHeader, httpRequest, spawnServer, syntheticInstance } from "../helpers/archive-harness.js";

const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-serve-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("a config file with an unknown or invalid setting stops the server with the setting's name", (t) => {
  const dir = tempDir(t);
  const config = join(dir, "config.json");
  writeFileSync(config, JSON.stringify({ port: "eighty", corsOrigin: ["x"], duplicatePolicy: "sometimes" }));
  const r = spawnSync(process.execPath, [CLI, "serve", "--config", config, "--data", join(dir, "data")], {
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /port/);
  assert.match(r.stderr, /unknown setting corsOrigin/);
  assert.match(r.stderr, /duplicatePolicy/);
  const missing = spawnSync(process.execPath, [CLI, "serve", "--config", join(dir, "nope.json")], { encoding: "utf8", timeout: 20_000 });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /cannot read config file/);
});

test("binding a non-loopback address without authentication is refused with what to do", (t) => {
  const dir = tempDir(t);
  const r = spawnSync(process.execPath, [CLI, "serve", "--host", "0.0.0.0", "--port", "0", "--data", join(dir, "data")], {
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /allowUnauthenticatedRemote/);
});

test("SIGTERM during a STOW: the request finishes, is acknowledged and stored, then the server exits", async (t) => {
  const dir = tempDir(t);
  const server = await spawnServer(dir);
  t.after(() => server.kill());
  const boundary = "graceful-boundary";
  const instance = syntheticInstance({
    studyUid: "1.2.826.0.1.3680043.9.77",
    seriesUid: "1.2.826.0.1.3680043.9.77.1",
    sopUid: "1.2.826.0.1.3680043.9.77.1.1",
    rows: 256,
    columns: 256,
  });
  const body = new PassThrough();
  const answer = httpRequest(`${server.dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` },
    body,
  });
  body.write(dicomPartHeader(boundary));
  body.write(instance.subarray(0, 1000));
  await new Promise((r) => setTimeout(r, 300));
  process.kill(server.pid, "SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(server.child.exitCode, null, "the server waits for the request in flight");
  body.end(Buffer.concat([instance.subarray(1000), Buffer.from(`\r\n--${boundary}--\r\n`)]));
  const res = await answer;
  assert.equal(res.status, 200, res.text());
  await server.exited;
  assert.equal(server.child.exitCode, 0);
  const archive = await openArchive({ dataDir: dir });
  try {
    assert.equal(archive.index.stats().instances, 1);
  } finally {
    await archive.close();
  }
});

test("operations: /readyz, /metrics, X-Request-Id echoed, HEAD and OPTIONS on DICOMweb routes", async (t) => {
  const dir = tempDir(t);
  const server = await spawnServer(dir);
  t.after(() => server.kill());
  const ready = await httpRequest(`${server.url}readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual((ready.json() as { checks: unknown }).checks, { index: "ok", storage: "ok", audit: "ok" });

  const given = await httpRequest(`${server.dicomweb}/studies`, { headers: { "x-request-id": "trace-42" } });
  assert.equal(given.headers["x-request-id"], "trace-42");
  const made = await httpRequest(`${server.dicomweb}/studies`);
  assert.match(String(made.headers["x-request-id"]), /^[0-9a-f-]{36}$/);

  const head = await httpRequest(`${server.dicomweb}/studies`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  const options = await httpRequest(`${server.dicomweb}/studies`, { method: "OPTIONS" });
  assert.equal(options.status, 204);
  assert.match(String(options.headers.allow), /GET/);

  const metrics = await httpRequest(`${server.url}metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.text(), /voxelgate_http_requests_total\{[^}]*transaction="qido"[^}]*\} [1-9]/);
});
