/**
 * CORS as a browser sees it: headless Chromium (Debian package chromium, driven by
 * playwright-core) loads a page from an allowed origin and one from a forbidden origin (other
 * local ports), and each page fetches QIDO (with a bearer token and credentials, so a preflight
 * happens) and a frame from Voxelgate.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test, type TestContext } from "node:test";
import { chromium } from "playwright-core";
import { httpRequest, multipartBody, startInProcess, syntheticInstance } from "../helpers/archive-harness.js";
import { BROWSER_TEST_TIMEOUT_MS, requireTools, TOOLS } from "../helpers/tools.js";

/** A server on its own port (so its own origin) serving one empty HTML page. */
async function pageOrigin(t: TestContext): Promise<string> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>viewer</title><p>viewer</p>");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Outcome {
  status?: number;
  error?: string;
  studies?: number;
  contentType?: string | null;
  bytes?: number;
  requestId?: string | null;
}

test(
  "CORS from headless Chromium: an allowed origin reads QIDO and a frame; a forbidden origin is blocked",
  { timeout: BROWSER_TEST_TIMEOUT_MS },
  async (t) => {
    if (!requireTools(t, TOOLS.chromium)) return;
    const allowed = await pageOrigin(t);
    const forbidden = await pageOrigin(t);
    const s = await startInProcess(t, { corsOrigins: [allowed], corsCredentials: true });
    const ids = { studyUid: "1.2.3.91.1", seriesUid: "1.2.3.91.2", sopUid: "1.2.3.91.3" };
    const { body, contentType } = multipartBody([syntheticInstance({ ...ids, rows: 32, columns: 32 })]);
    assert.equal(
      (await httpRequest(`${s.dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body })).status,
      200,
    );
    const urls = {
      qido: `${s.dicomweb}/studies?PatientName=TEST*`,
      frame: `${s.dicomweb}/studies/${ids.studyUid}/series/${ids.seriesUid}/instances/${ids.sopUid}/frames/1`,
    };

    const browser = await chromium.launch({
      executablePath: TOOLS.chromium.command,
      args: ["--headless", "--no-sandbox", "--disable-gpu"],
    });
    t.after(() => browser.close());

    const fetchFrom = async (origin: string) => {
      const page = await browser.newPage();
      await page.goto(`${origin}/`);
      return page.evaluate(async ({ qido, frame }): Promise<{ qido: Outcome; frame: Outcome }> => {
        const attempt = async (run: () => Promise<Outcome>): Promise<Outcome> => {
          try {
            return await run();
          } catch (err) {
            return { error: String(err) };
          }
        };
        return {
          // Authorization and a non-simple Accept: the browser sends a preflight first.
          qido: await attempt(async () => {
            const r = await fetch(qido, {
              credentials: "include",
              headers: { accept: "application/dicom+json", authorization: "Bearer test-token" },
            });
            return { status: r.status, studies: ((await r.json()) as unknown[]).length, requestId: r.headers.get("x-request-id") };
          }),
          frame: await attempt(async () => {
            const r = await fetch(frame, { headers: { accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' } });
            return { status: r.status, contentType: r.headers.get("content-type"), bytes: (await r.arrayBuffer()).byteLength };
          }),
        };
      }, urls);
    };

    const ok = await fetchFrom(allowed);
    assert.equal(ok.qido.error, undefined, ok.qido.error);
    assert.equal(ok.qido.status, 200);
    assert.equal(ok.qido.studies, 1);
    assert.ok(ok.qido.requestId, "X-Request-Id is exposed to the page");
    assert.equal(ok.frame.error, undefined, ok.frame.error);
    assert.equal(ok.frame.status, 200);
    assert.match(ok.frame.contentType ?? "", /^multipart\/related/, "Content-Type is readable");
    assert.ok((ok.frame.bytes ?? 0) > 32 * 32, "the frame arrived");

    const blocked = await fetchFrom(forbidden);
    assert.match(blocked.qido.error ?? "", /TypeError/, "the browser blocks the forbidden origin's request");
    assert.equal(blocked.qido.status, undefined);
    assert.match(blocked.frame.error ?? "", /TypeError/);
  },
);
