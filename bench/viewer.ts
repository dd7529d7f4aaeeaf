/**
 * Viewer bench: time to first image — from navigation to `/viewer?StudyInstanceUIDs=<CT>` until
 * the viewport canvas shows drawn pixels (luminance variance, checked in the page every frame) —
 * in headless Chromium, for Voxelgate's hosted OHIF and for the same OHIF build in front of
 * Orthanc + its DICOMweb plugin.
 *
 * - Cold: a fresh browser context (empty cache), so OHIF's 17 MB bundle is loaded too.
 * - Warm: the same context opening the study again (OHIF from the browser cache, data fetched again).
 *
 * Orthanc sends no CORS headers, so its OHIF is served the way Orthanc deployments do it: one
 * origin, /dicom-web/ forwarded to Orthanc by a small proxy here (one extra loopback hop).
 * OHIF's configuration for Orthanc says what Orthanc supports (no includefield, no fuzzy matching).
 * Skipped, with the reason, when Chromium or the OHIF build is missing (and in --quick mode).
 */
import http from "node:http";
import { performance } from "node:perf_hooks";
import type { Browser } from "playwright-core";
import { buildViewerApp } from "../src/viewer/hosted-viewer.js";
import { findOhifBuild } from "../src/viewer/ohif-dist.js";
import { ohifDataSource, ohifWindowConfig } from "../src/viewer/ohif-config.js";
import type { BenchRow, Suite, SuiteContext } from "./main.js";
import { multipartBody } from "./peers/http.js";
import { ORTHANC_PACKAGES, orthancInstalled, type PeerServer, startOrthanc } from "./peers/orthanc.js";
import { startVoxelgate } from "./peers/voxelgate.js";
import { chromiumInstalled, launchChromium, newViewerContext } from "./viewer-browser.js";
import { makeViewerStudies, type ViewerStudy } from "./viewer-corpus.js";

const DRAWN = `(() => {
  const c = [...document.querySelectorAll('canvas.cornerstone-canvas')].find((x) => x.width > 0 && x.height > 0);
  if (!c) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0;
  for (let i = 0; i < d.length; i += 64) { const y = d[i]; n++; s += y; s2 += y * y; }
  return s2 / n - (s / n) ** 2 > 20;
})()`;

interface Side {
  name: string;
  /** The viewer's base URL (ends with /). */
  viewer: string;
  stop(): Promise<void>;
}

async function stow(dicomweb: string, study: ViewerStudy): Promise<void> {
  const body = multipartBody(study.files.map((f) => [f]));
  const res = await fetch(`${dicomweb}/studies`, {
    method: "POST",
    headers: { "content-type": body.contentType },
    body: Buffer.concat(body.chunks),
  });
  if (res.status !== 200) throw new Error(`STOW to ${dicomweb}: ${res.status} ${(await res.text()).slice(0, 300)}`);
}

/** The hosted viewer's URL, printed by `voxelgate serve` right after the API's. */
async function viewerUrlOf(server: PeerServer): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const m = /Viewer \(OHIF\): (http:\/\/\S+)/.exec(server.log());
    if (m?.[1]) return m[1];
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`voxelgate printed no viewer URL:\n${server.log()}`);
}

/** OHIF and a /dicom-web/ proxy to Orthanc on one origin. */
async function orthancSide(orthanc: PeerServer, dist: string): Promise<Side> {
  let origin = "";
  const app = await buildViewerApp({
    build: { dist, version: "" },
    windowConfig: () => {
      const source = ohifDataSource(`${origin}/dicom-web`);
      Object.assign(source.configuration, { qidoSupportsIncludeField: false, supportsFuzzyMatching: false, friendlyName: "Orthanc" });
      return { ...ohifWindowConfig(`${origin}/dicom-web`), dataSources: [source] };
    },
  });
  const upstream = new URL(orthanc.url);
  app.all("/dicom-web/*", (request, reply) => {
    const proxied = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: request.method,
        path: request.url,
        headers: { ...request.headers, host: upstream.host },
      },
      (res) => {
        void reply.hijack();
        reply.raw.writeHead(res.statusCode ?? 502, res.headers);
        res.pipe(reply.raw);
      },
    );
    proxied.on("error", (err) => void reply.code(502).send({ error: `Orthanc: ${err.message}` }));
    proxied.end();
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  origin = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  return { name: orthanc.name, viewer: `${origin}/`, stop: () => app.close() };
}

/** Milliseconds from navigation to the first drawn pixels, cold (new context) then warm (same context). */
async function timeToFirstImage(browser: Browser, viewer: string, studyUid: string): Promise<{ cold: number; warm: number }> {
  const context = await newViewerContext(browser);
  try {
    const page = await context.newPage();
    const once = async () => {
      await page.goto("about:blank");
      const t0 = performance.now();
      await page.goto(`${viewer}viewer?StudyInstanceUIDs=${studyUid}`);
      await page.waitForFunction(DRAWN, undefined, { polling: "raf", timeout: 120_000 });
      return performance.now() - t0;
    };
    const cold = await once();
    const warm = await once();
    return { cold, warm };
  } finally {
    await context.close();
  }
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

export const viewerSuite: Suite = {
  name: "viewer",
  async run(context: SuiteContext): Promise<BenchRow[]> {
    const build = findOhifBuild();
    const missing = !chromiumInstalled() ? "Chromium not installed (apt-get install chromium)" : build.missing;
    if (context.quick || missing || build.dist === undefined) {
      context.log(`viewer: skipped (${context.quick ? "--quick: a browser run takes a minute" : missing})`);
      return [];
    }
    const wantPeer = context.options.peer !== false;
    if (wantPeer && !orthancInstalled()) {
      const message = `Orthanc not installed (apt-get install ${ORTHANC_PACKAGES})`;
      if (process.env.CI === "true") throw new Error(`CI is missing the bench's peer: ${message}`);
      context.log(`viewer: ${message}: Voxelgate runs alone`);
    }
    const ct = makeViewerStudies()[0] as ViewerStudy;
    const sides: Side[] = [];
    const servers: PeerServer[] = [];
    let browser: Browser | undefined;
    try {
      const voxelgate = await startVoxelgate({ viewer: { port: 0 } });
      servers.push(voxelgate);
      await stow(voxelgate.dicomweb, ct);
      sides.push({ name: "Voxelgate", viewer: await viewerUrlOf(voxelgate), stop: async () => undefined });
      if (wantPeer && orthancInstalled()) {
        const orthanc = await startOrthanc();
        servers.push(orthanc);
        await stow(orthanc.dicomweb, ct);
        sides.push(await orthancSide(orthanc, build.dist));
      }
      browser = await launchChromium();
      const runs = 5;
      const times = sides.map(() => ({ cold: [] as number[], warm: [] as number[] }));
      // Interleaved, so that load from elsewhere hits both sides alike; one untimed run each first.
      for (const side of sides) await timeToFirstImage(browser, side.viewer, ct.studyUid);
      for (let r = 0; r < runs; r++) {
        for (const [i, side] of sides.entries()) {
          const t = await timeToFirstImage(browser, side.viewer, ct.studyUid);
          times[i]?.cold.push(t.cold);
          times[i]?.warm.push(t.warm);
        }
      }
      const [ours, peer] = times;
      if (!ours) return [];
      const row = (kind: "cold" | "warm", what: string): BenchRow => {
        const o = median(ours[kind]);
        const p = peer ? median(peer[kind]) : undefined;
        return {
          name: `viewer: time to first image, CT 5×256² (${what})`,
          ours: o,
          peer: p,
          unit: "ms",
          ratio: p !== undefined ? p / o : undefined,
          peerName: peer ? `OHIF ${build.version} + ${sides[1]?.name ?? "Orthanc"} (same-origin proxy)` : undefined,
          note: `median of ${runs}, headless Chromium (SwiftShader), OHIF ${build.version}`,
        };
      };
      return [row("cold", "cold browser cache"), row("warm", "OHIF cached")];
    } finally {
      await browser?.close();
      for (const side of sides) await side.stop();
      for (const server of servers) await server.stop();
    }
  },
};
