/**
 * Driving OHIF in headless Chromium (Debian `chromium`, through playwright-core) for the viewer
 * tests and the viewer bench: launch, watch a page for failed requests and console errors, read
 * the study list, and wait until the viewport canvas shows drawn pixels (not a blank or uniform
 * canvas: the sampled luminance must vary).
 *
 * Code run in the page is passed as strings: this project compiles without the DOM library.
 */
import { existsSync } from "node:fs";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const chromiumInstalled = (): boolean => existsSync(CHROMIUM);

/** OHIF renders with WebGL: headless Chromium needs SwiftShader for it. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
  });
}

/** Hides OHIF's first-visit onboarding tour (it covers the viewport) in every page of the context. */
export async function newViewerContext(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(
    "try { localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])); } catch {}\n" +
      "document.addEventListener('DOMContentLoaded', () => { const s = document.createElement('style');" +
      " s.textContent = '.shepherd-element, .shepherd-modal-overlay-container { display: none !important; }';" +
      " document.head.appendChild(s); });",
  );
  return context;
}

export interface PageWatch {
  /** Responses ≥ 400 and requests that failed, from the watched origins. */
  failures: string[];
  /** Console errors and uncaught page errors. */
  consoleErrors: string[];
  /** Every URL requested from the watched origins (to check what the viewer asked for). */
  requests: Array<{ url: string; headers: Record<string, string> }>;
  /** Frame responses (URL, Content-Type, and the first part's headers of a multipart body). */
  frames: Array<{ url: string; contentType: string; partHeaders: string }>;
}

/** Records what went wrong on `page` for requests to `origins` (e.g. the DICOMweb API and the viewer). */
export function watchPage(page: Page, origins: string[]): PageWatch {
  const ours = (url: string) => origins.some((o) => url.startsWith(o));
  const watch: PageWatch = { failures: [], consoleErrors: [], requests: [], frames: [] };
  page.on("request", (request) => {
    if (ours(request.url())) watch.requests.push({ url: request.url(), headers: request.headers() });
  });
  page.on("response", (response) => {
    if (response.status() >= 400 && ours(response.url()))
      watch.failures.push(`${response.status()} ${response.request().method()} ${response.url()}`);
  });
  page.on("response", (response) => {
    if (!ours(response.url()) || !/\/frames\/[0-9,]+$/.test(response.url().split("?")[0] ?? "") || response.status() !== 200) return;
    const contentType = response.headers()["content-type"] ?? "";
    void response
      .body()
      .then((body) => {
        const text = body.subarray(0, 400).toString("latin1");
        watch.frames.push({ url: response.url(), contentType, partHeaders: text.slice(0, Math.max(0, text.indexOf("\r\n\r\n"))) });
      })
      .catch(() => watch.frames.push({ url: response.url(), contentType, partHeaders: "" }));
  });
  page.on("requestfailed", (request) => {
    if (ours(request.url())) watch.failures.push(`failed ${request.method()} ${request.url()}: ${request.failure()?.errorText ?? "?"}`);
  });
  page.on("console", (message) => {
    if (message.type() === "error") watch.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => watch.consoleErrors.push(`uncaught: ${error.message}`));
  return watch;
}

/** Luminance statistics of the drawn viewport canvases. */
export interface CanvasSample {
  canvases: number;
  width: number;
  height: number;
  /** Mean and variance of the luminance (0–255) over the largest canvas. */
  mean: number;
  variance: number;
  /** Share of pixels whose R, G and B differ (colour, not grey). */
  colourShare: number;
}

const SAMPLE_SCRIPT = `(() => {
  const canvases = [...document.querySelectorAll('canvas.cornerstone-canvas')].filter((c) => c.width > 0 && c.height > 0);
  if (canvases.length === 0) return null;
  const c = canvases.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0, sum2 = 0, colour = 0;
  for (let i = 0; i < data.length; i += 16) {
    const r = data[i], g = data[i + 1], b = data[i + 2];
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    n++; sum += y; sum2 += y * y;
    if (Math.abs(r - g) > 16 || Math.abs(g - b) > 16) colour++;
  }
  const mean = sum / n;
  return { canvases: canvases.length, width: c.width, height: c.height, mean, variance: sum2 / n - mean * mean, colourShare: colour / n };
})()`;

export async function sampleViewport(page: Page): Promise<CanvasSample | null> {
  return (await page.evaluate(SAMPLE_SCRIPT)) as CanvasSample | null;
}

/** Waits until the viewport shows drawn pixels (luminance variance above `minVariance`), stable over two samples. */
export async function waitForDrawnViewport(page: Page, timeoutMs = 60_000, minVariance = 20): Promise<CanvasSample> {
  const deadline = Date.now() + timeoutMs;
  let last: CanvasSample | null = null;
  while (Date.now() < deadline) {
    const sample = await sampleViewport(page).catch(() => null);
    // Drawn, and the same as 100 ms ago: the image is complete, not caught mid-update.
    if (sample && last && sample.variance > minVariance && JSON.stringify(sample) === JSON.stringify(last)) return sample;
    last = sample;
    await page.waitForTimeout(last && last.variance > minVariance ? 100 : 50);
  }
  throw new Error(`no drawn pixels in the viewport within ${timeoutMs} ms (last sample: ${JSON.stringify(last)})`);
}

/** The text of the study list's rows (OHIF 3: tr[aria-selected] ... or table body rows). */
export async function studyListRows(page: Page, expected: number, timeoutMs = 30_000): Promise<string[]> {
  const script = `[...document.querySelectorAll('table tbody tr')].map((tr) => tr.innerText.replace(/\\s+/g, ' ').trim()).filter((t) => t.length > 0)`;
  const deadline = Date.now() + timeoutMs;
  let rows: string[] = [];
  while (Date.now() < deadline) {
    rows = (await page.evaluate(script)) as string[];
    if (rows.length >= expected) return rows;
    await page.waitForTimeout(100);
  }
  return rows;
}
