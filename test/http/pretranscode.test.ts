/**
 * Ingest policy "also keep a copy in another syntax" (config `pretranscode`): after a STOW, the
 * frames of the listed modalities are made in that syntax in the background, so the first frame
 * request in it is a cache hit; other modalities are left as received.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { httpRequest, multipartBody, startInProcess, syntheticInstance } from "../helpers/archive-harness.js";

const STUDY = "1.2.826.0.1.3680043.9.5151";
const SERIES = `${STUDY}.1`;
const HTJ2K = "1.2.840.10008.1.2.4.201";

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

test("pretranscode: OT frames are made as HTJ2K after STOW; the first HTJ2K request is a cache hit", async (t) => {
  // syntheticInstance writes Modality OT.
  const s = await startInProcess(t, { pretranscode: { modalities: ["OT"], transferSyntax: HTJ2K } });
  const sop = `${SERIES}.1`;
  const file = syntheticInstance({ studyUid: STUDY, seriesUid: SERIES, sopUid: sop, rows: 32, columns: 32, frames: 3 });
  const { body, contentType } = multipartBody([file]);
  const res = await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
  assert.equal(res.status, 200, res.text());
  const metricsHits = async () => {
    const m = (await httpRequest(`${s.url}metrics`)).text();
    const line = m.split("\n").find((l) => l.includes('cache="native"') && l.includes('result="hit"') && !l.startsWith("#"));
    return Number(line?.split(" ").pop() ?? 0);
  };
  // Three frames made in the background (files in the native cache).
  const made = await waitFor(() => readdirSync(join(s.dataDir, "cache", "native")).filter((n) => !n.startsWith(".")).length === 3, 20_000);
  assert.ok(made, "three HTJ2K frames were made after the STOW");
  const before = await metricsHits();
  const frame = await httpRequest(`${s.dicomweb}/studies/${STUDY}/series/${SERIES}/instances/${sop}/frames/2`, {
    headers: { accept: `multipart/related; type="image/jphc"; transfer-syntax=${HTJ2K}` },
  });
  assert.equal(frame.status, 200, frame.text());
  assert.match(String(frame.headers["content-type"]), /transfer-syntax=1\.2\.840\.10008\.1\.2\.4\.201/);
  assert.equal(await metricsHits(), before + 1, "served from the copy made at ingest");
});

test("pretranscode leaves modalities not listed as received", async (t) => {
  const s = await startInProcess(t, { pretranscode: { modalities: ["CT"], transferSyntax: HTJ2K } });
  const file = syntheticInstance({ studyUid: STUDY, seriesUid: SERIES, sopUid: `${SERIES}.2`, rows: 16, columns: 16 });
  const { body, contentType } = multipartBody([file]);
  assert.equal(
    (await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body })).status,
    200,
  );
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(
    readdirSync(join(s.dataDir, "cache", "native")).filter((n) => !n.startsWith(".")),
    [],
  );
});
