/**
 * The hosted OHIF viewer in headless Chromium against the real server: the study list shows the
 * stored studies with their descriptions; CT, MR, multi-frame XA and RGB ultrasound studies draw
 * pixels that vary; a JPEG-LS study is drawn from its stored bytes (OHIF decodes) and from frames
 * the server decoded, both exactly like the uncompressed original; an OHIF on another origin
 * works through CORS; a share token in the launch URL reaches the API as a Bearer header. No
 * request to our servers fails and the console stays clean. Screenshots: test-artifacts/viewer/.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test, type TestContext } from "node:test";
import type { Browser, Page } from "playwright-core";
import {
  type CanvasSample,
  chromiumInstalled,
  launchChromium,
  newViewerContext,
  type PageWatch,
  studyListRows,
  waitForDrawnViewport,
  watchPage,
} from "../../bench/viewer-browser.js";
import { makeCompressedStudy, makeViewerStudies, type ViewerStudy } from "../../bench/viewer-corpus.js";
import { buildViewerApp } from "../../src/viewer/hosted-viewer.js";
import { findOhifBuild } from "../../src/viewer/ohif-dist.js";
import { type Cleanup, httpRequest, type InProcessServer, multipartBody, startInProcess } from "../helpers/archive-harness.js";
import { BROWSER_TEST_TIMEOUT_MS, requireTools, TOOLS } from "../helpers/tools.js";

const ARTIFACTS = join("test-artifacts", "viewer");
const EXPLICIT_LE = "1.2.840.10008.1.2.1";
const JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80";

const build = findOhifBuild();
let browser: Browser | undefined;
let studies: ViewerStudy[] = [];
let compressed: ViewerStudy;
/** Server with the hosted viewer (frames as stored) and all the studies. */
let server: InProcessServer & { viewerUrl: string };
/** The CT's viewport sample: the JPEG-LS copy must look exactly the same. */
let ctSample: CanvasSample | undefined;

/** Under CI the build must be there (npm ci ran the fetch script); elsewhere the test is skipped. */
function ready(t: TestContext): boolean {
  if (!requireTools(t, TOOLS.chromium)) return false;
  if (build.missing) {
    if (process.env.CI === "true") throw new Error(`CI has no OHIF build: ${build.missing}`);
    t.skip(build.missing);
    return false;
  }
  return browser !== undefined;
}

async function stow(dicomweb: string, study: ViewerStudy): Promise<void> {
  const { body, contentType } = multipartBody(study.files);
  const res = await httpRequest(`${dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
  assert.equal(res.status, 200, `STOW of ${study.key}: ${res.text().slice(0, 300)}`);
}

/** Servers started by the before hook, closed by the after hook. */
const cleanups: Array<() => unknown> = [];
const fileCleanup: Cleanup = { after: (fn) => cleanups.push(fn) };

async function startWithViewer(
  cleanup: Cleanup,
  overrides: Record<string, unknown> = {},
): Promise<InProcessServer & { viewerUrl: string }> {
  const s = await startInProcess(cleanup, { viewer: { port: 0, ...overrides } });
  const landing = await httpRequest(s.url);
  const viewerUrl = /<a id="viewer" href="([^"]+)"/.exec(landing.text())?.[1];
  assert.ok(viewerUrl, "the landing page links the hosted viewer");
  return { ...s, viewerUrl };
}

before(async () => {
  // Nothing to set up without the browser or the build: each test then skips (or fails under CI) saying why.
  if (build.missing || !chromiumInstalled()) return;
  mkdirSync(ARTIFACTS, { recursive: true });
  studies = makeViewerStudies();
  compressed = await makeCompressedStudy();
  server = await startWithViewer(fileCleanup);
  for (const s of [...studies, compressed]) await stow(server.dicomweb, s);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const fn of cleanups.reverse()) await fn();
});

/** A fresh page (own storage) watched for failures on the given origins. */
async function openPage(origins: string[]): Promise<{ page: Page; watch: PageWatch; close(): Promise<void> }> {
  if (!browser) throw new Error("no browser");
  const context = await newViewerContext(browser);
  const page = await context.newPage();
  const watch = watchPage(page, origins);
  return { page, watch, close: () => context.close() };
}

function assertClean(watch: PageWatch, what: string): void {
  assert.deepEqual(watch.failures, [], `${what}: requests to our servers failed`);
  assert.deepEqual(watch.consoleErrors, [], `${what}: console errors`);
}

async function openStudy(page: Page, viewerUrl: string, study: ViewerStudy, shot: string, query = ""): Promise<CanvasSample> {
  await page.goto(`${viewerUrl}viewer?StudyInstanceUIDs=${study.studyUid}${query}`);
  const sample = await waitForDrawnViewport(page, 90_000);
  await page.screenshot({ path: join(ARTIFACTS, `${shot}.png`) });
  return sample;
}

test("the study list shows every stored study with its description", { timeout: BROWSER_TEST_TIMEOUT_MS }, async (t) => {
  if (!ready(t)) return;
  const { page, watch, close } = await openPage([server.url, server.viewerUrl]);
  try {
    await page.goto(server.viewerUrl);
    const rows = await studyListRows(page, studies.length + 1);
    await page.screenshot({ path: join(ARTIFACTS, "study-list.png") });
    for (const s of [...studies, compressed]) {
      const row = rows.find((r) => r.includes(s.description));
      assert.ok(row, `no row with "${s.description}" in ${JSON.stringify(rows)}`);
      assert.match(row, new RegExp(s.modality));
    }
    // OHIF asked QIDO for the description through includefield (comma-separated list).
    assert.ok(watch.requests.some((r) => /\/studies\?.*includefield=/i.test(r.url)));
    assertClean(watch, "study list");
  } finally {
    await close();
  }
});

for (const key of ["ct", "mr", "xa-multiframe", "us-rgb"]) {
  test(`opening the ${key} study draws its pixels`, { timeout: BROWSER_TEST_TIMEOUT_MS }, async (t) => {
    if (!ready(t)) return;
    const study = studies.find((s) => s.key === key);
    assert.ok(study);
    const { page, watch, close } = await openPage([server.url, server.viewerUrl]);
    try {
      const sample = await openStudy(page, server.viewerUrl, study, key);
      assert.ok(sample.variance > 20, `flat viewport: ${JSON.stringify(sample)}`);
      if (key === "us-rgb") assert.ok(sample.colourShare > 0.01, `the RGB colour bars are not in colour: ${JSON.stringify(sample)}`);
      else assert.equal(sample.colourShare, 0, "a greyscale image drawn in colour");
      if (key === "ct") ctSample = sample;
      assert.ok(watch.frames.length > 0, "no frames were fetched");
      assertClean(watch, key);
    } finally {
      await close();
    }
  });
}

/**
 * What a viewport shows, without how many canvases OHIF happened to have on the page when it was
 * sampled (a second one comes and goes with its timing: the drawn pixels are what must match).
 */
function pixelsOf(sample: CanvasSample): Omit<CanvasSample, "canvases"> {
  const { canvases: _canvases, ...pixels } = sample;
  return pixels;
}

test(
  "a JPEG-LS study is drawn from its stored frames (decoded by OHIF) exactly like the original",
  { timeout: BROWSER_TEST_TIMEOUT_MS },
  async (t) => {
    if (!ready(t)) return;
    const { page, watch, close } = await openPage([server.url, server.viewerUrl]);
    try {
      const sample = await openStudy(page, server.viewerUrl, compressed, "ct-jpegls-as-stored");
      assert.ok(watch.frames.length > 0);
      for (const f of watch.frames)
        assert.match(f.partHeaders, new RegExp(`image/jls|transfer-syntax=${JPEG_LS_LOSSLESS}`), `frame ${f.url} not as stored`);
      if (ctSample) assert.deepEqual(pixelsOf(sample), pixelsOf(ctSample), "lossless JPEG-LS must look exactly like the uncompressed CT");
      assertClean(watch, "JPEG-LS as stored");
    } finally {
      await close();
    }
  },
);

test(
  "a JPEG-LS study is drawn from frames the server decoded (viewer.transferSyntax) exactly like the original",
  { timeout: BROWSER_TEST_TIMEOUT_MS },
  async (t) => {
    if (!ready(t)) return;
    const transcoding = await startWithViewer(t, { transferSyntax: EXPLICIT_LE });
    await stow(transcoding.dicomweb, compressed);
    const { page, watch, close } = await openPage([transcoding.url, transcoding.viewerUrl]);
    try {
      const sample = await openStudy(page, transcoding.viewerUrl, compressed, "ct-jpegls-server-decoded");
      assert.ok(watch.frames.length > 0);
      for (const f of watch.frames) {
        assert.match(
          f.partHeaders,
          new RegExp(`application/octet-stream.*transfer-syntax=${EXPLICIT_LE.replaceAll(".", "\\.")}`, "s"),
          f.url,
        );
      }
      if (ctSample) assert.deepEqual(pixelsOf(sample), pixelsOf(ctSample), "decoded by the server, the pixels must be the original's");
      assertClean(watch, "JPEG-LS decoded by the server");
    } finally {
      await close();
      await transcoding.close();
    }
  },
);

test(
  "an OHIF served from another origin reads Voxelgate through CORS with the /ohif-config snippet",
  { timeout: BROWSER_TEST_TIMEOUT_MS },
  async (t) => {
    if (!ready(t)) return;
    // Our own static server plays "somebody's OHIF": it is not Voxelgate's hosted viewer.
    let windowConfig: object = {};
    const external = await buildViewerApp({ build, windowConfig: () => windowConfig });
    await external.listen({ host: "127.0.0.1", port: 0 });
    const address = external.server.address();
    const origin = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    const api = await startInProcess(t, { viewer: { enabled: false }, corsOrigins: [origin] });
    try {
      await stow(api.dicomweb, studies[1] as ViewerStudy);
      const res = await httpRequest(`${api.url}ohif-config?format=js`);
      assert.equal(res.status, 200);
      windowConfig = JSON.parse(/window\.config = ([\s\S]*);\s*$/.exec(res.text())?.[1] ?? "{}") as object;
      const { page, watch, close } = await openPage([api.url, `${origin}/`]);
      try {
        await page.goto(`${origin}/`);
        const rows = await studyListRows(page, 2);
        assert.ok(
          rows.some((r) => r.includes("VIEWER MR BRAIN")),
          JSON.stringify(rows),
        );
        const sample = await openStudy(page, `${origin}/`, studies[1] as ViewerStudy, "external-origin-mr");
        assert.ok(sample.variance > 20);
        assertClean(watch, "external origin");
      } finally {
        await close();
      }
    } finally {
      await external.close();
      await api.close();
    }
  },
);

test(
  "a share token in the launch URL reaches every DICOMweb request as a Bearer header (gateway seam)",
  { timeout: BROWSER_TEST_TIMEOUT_MS },
  async (t) => {
    if (!ready(t)) return;
    const { page, watch, close } = await openPage([server.url, server.viewerUrl]);
    try {
      await openStudy(page, server.viewerUrl, studies[0] as ViewerStudy, "share-token", "&token=share-abc.123");
      const api = watch.requests.filter((r) => r.url.startsWith(`${server.dicomweb}/`));
      assert.ok(api.length > 0);
      const withToken = api.filter((r) => r.headers.authorization === "Bearer share-abc.123");
      // OHIF's first QIDO calls may leave before it reads the token; metadata and frames carry it.
      assert.ok(
        api.filter((r) => /\/(metadata|frames\/)/.test(r.url)).every((r) => r.headers.authorization === "Bearer share-abc.123"),
        `metadata/frames without the token: ${JSON.stringify(api.filter((r) => !r.headers.authorization).map((r) => r.url))}`,
      );
      assert.ok(withToken.length > 0);
      assert.doesNotMatch(page.url(), /token=/, "OHIF removes the token from the address bar");
      assertClean(watch, "share token");
    } finally {
      await close();
    }
  },
);
