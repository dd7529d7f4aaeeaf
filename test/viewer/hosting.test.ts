/**
 * Hosting the viewer over HTTP, on a small stand-in build folder (no download needed): the
 * generated app-config.js, SPA fallback for deep links, media types (wasm), cache headers, ETag
 * and gzip twins, no escape from the folder; CORS for the viewer's origin only; GET /ohif-config;
 * the landing page; a missing build and --no-viewer; flags merged into the viewer settings.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { test } from "node:test";
import { loadConfig } from "../../src/config.js";
import { viewerStudyUrl } from "../../src/viewer/ohif-config.js";
import { httpRequest, reasonOf, startInProcess } from "../helpers/archive-harness.js";

const INDEX = '<!doctype html><script>window.PUBLIC_URL="/"</script><script src="/app-config.js"></script><div id="root"></div>';
const BUNDLE = `console.log(${JSON.stringify("x".repeat(4000))});`;

function fakeBuild(): string {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-ohif-"));
  writeFileSync(join(dir, "index.html"), INDEX);
  writeFileSync(join(dir, "app-config.js"), "window.config = { shipped: true };");
  writeFileSync(join(dir, "app.bundle.0f6159c501addfe9.js"), BUNDLE);
  writeFileSync(join(dir, "app.bundle.0f6159c501addfe9.js.gz"), gzipSync(BUNDLE));
  writeFileSync(join(dir, "0ddf166f7a343eda.wasm"), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  mkdirSync(join(dir, "assets"));
  writeFileSync(join(dir, "assets", "logo.svg"), "<svg/>");
  return dir;
}

/** A server whose viewer serves a stand-in build; returns both base URLs. */
async function withViewer(
  t: { after(fn: () => unknown): unknown },
  viewer: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  const dist = fakeBuild();
  t.after(() => rmSync(dist, { recursive: true, force: true }));
  const server = await startInProcess(t, { viewer: { port: 0, dist, ...viewer }, ...extra });
  const landing = await httpRequest(server.url);
  const viewerUrl = /<a id="viewer" href="([^"]+)"/.exec(landing.text())?.[1] ?? "";
  return { server, viewerUrl, landing: landing.text() };
}

const windowConfigOf = (js: string): Record<string, unknown> =>
  JSON.parse(/window\.config = ([\s\S]*);\s*$/.exec(js)?.[1] ?? "null") as Record<string, unknown>;

type DataSource = { sourceName: string; configuration: Record<string, unknown> };

test("app-config.js is generated: a dicomweb data source at this server's DICOMweb root, never the shipped file", async (t) => {
  const { server, viewerUrl } = await withViewer(t);
  assert.match(viewerUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.notEqual(new URL(viewerUrl).port, new URL(server.url).port);
  const res = await httpRequest(`${viewerUrl}app-config.js`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers["content-type"]), /^text\/javascript/);
  assert.equal(res.headers["cache-control"], "no-cache");
  const config = windowConfigOf(res.text());
  assert.equal(config.shipped, undefined);
  assert.equal(config.defaultDataSourceName, "voxelgate");
  const source = (config.dataSources as DataSource[])[0];
  assert.ok(source);
  assert.equal(source.configuration.qidoRoot, server.dicomweb);
  assert.equal(source.configuration.wadoRoot, server.dicomweb);
  assert.equal(source.configuration.qidoSupportsIncludeField, true);
  assert.equal(source.configuration.supportsFuzzyMatching, true);
  assert.equal(source.configuration.requestTransferSyntaxUID, undefined, "frames as stored by default");
  assert.equal(config.oidc, undefined);
  // The root is really our DICOMweb root.
  const qido = await httpRequest(`${String(source.configuration.qidoRoot)}/studies`);
  assert.equal(qido.status, 200);
});

test("app-config.js follows the settings: publicUrl, transfer syntax, OIDC login", async (t) => {
  const { viewerUrl } = await withViewer(
    t,
    { transferSyntax: "1.2.840.10008.1.2.4.201", oidc: { authority: "https://login.example.org/realms/x", clientId: "ohif" } },
    { publicUrl: "https://pacs.example.org" },
  );
  const config = windowConfigOf((await httpRequest(`${viewerUrl}app-config.js`)).text());
  const source = (config.dataSources as DataSource[])[0];
  assert.equal(source?.configuration.qidoRoot, "https://pacs.example.org/dicomweb");
  assert.equal(source?.configuration.requestTransferSyntaxUID, "1.2.840.10008.1.2.4.201");
  const oidc = (config.oidc as Array<Record<string, unknown>>)[0];
  assert.equal(oidc?.authority, "https://login.example.org/realms/x");
  assert.equal(oidc?.client_id, "ohif");
  assert.equal(oidc?.response_type, "code");
});

test("deep links get index.html (SPA fallback); missing files are 404s; no path leaves the build", async (t) => {
  const { viewerUrl } = await withViewer(t);
  for (const path of ["", "viewer?StudyInstanceUIDs=1.2.3.4", "viewer/dicomweb?StudyInstanceUIDs=1.2", "callback"]) {
    const res = await httpRequest(`${viewerUrl}${path}`);
    assert.equal(res.status, 200, path);
    assert.equal(res.text(), INDEX, path);
    assert.equal(res.headers["cache-control"], "no-cache");
    assert.match(String(res.headers["content-type"]), /^text\/html/);
  }
  const missing = await httpRequest(`${viewerUrl}9999.bundle.0123456789abcdef.js`);
  assert.equal(missing.status, 404);
  assert.match(reasonOf(missing), /no file/);
  for (const path of ["..%2f..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/etc/passwd", "assets/..%2f..%2fpackage.json"]) {
    const res = await httpRequest(`${viewerUrl}${path}`);
    assert.ok(res.status === 404 || (res.status === 200 && res.text() === INDEX), `${path}: ${res.status}`);
    assert.doesNotMatch(res.text(), /root:|"name"/);
  }
});

test("static files: media types, immutable hashed bundles, ETag 304, gzip twin", async (t) => {
  const { viewerUrl } = await withViewer(t);
  const wasm = await httpRequest(`${viewerUrl}0ddf166f7a343eda.wasm`);
  assert.equal(wasm.headers["content-type"], "application/wasm");
  assert.equal(wasm.headers["cache-control"], "public, max-age=31536000, immutable");
  const svg = await httpRequest(`${viewerUrl}assets/logo.svg`);
  assert.equal(svg.headers["content-type"], "image/svg+xml");
  assert.equal(svg.headers["cache-control"], "public, max-age=3600");

  const plain = await httpRequest(`${viewerUrl}app.bundle.0f6159c501addfe9.js`);
  assert.equal(plain.text(), BUNDLE);
  assert.equal(plain.headers["content-encoding"], undefined);
  const gz = await httpRequest(`${viewerUrl}app.bundle.0f6159c501addfe9.js`, { headers: { "accept-encoding": "gzip, br" } });
  assert.equal(gz.headers["content-encoding"], "gzip");
  assert.ok(gz.body.length < BUNDLE.length / 10);
  assert.equal(gz.headers.vary, "Accept-Encoding");
  assert.notEqual(gz.headers.etag, plain.headers.etag);
  const again = await httpRequest(`${viewerUrl}app.bundle.0f6159c501addfe9.js`, {
    headers: { "if-none-match": String(plain.headers.etag) },
  });
  assert.equal(again.status, 304);
  assert.equal(again.body.length, 0);
  const head = await httpRequest(`${viewerUrl}app.bundle.0f6159c501addfe9.js`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers["content-length"], String(BUNDLE.length));
});

test("CORS: the DICOMweb API lets the viewer's origins in (127.0.0.1 and localhost), not others", async (t) => {
  const { server, viewerUrl } = await withViewer(t, {}, { corsOrigins: ["https://other-viewer.example.org"] });
  const port = new URL(viewerUrl).port;
  for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, "https://other-viewer.example.org"]) {
    const res = await httpRequest(`${server.dicomweb}/studies`, { headers: { origin } });
    assert.equal(res.headers["access-control-allow-origin"], origin);
    const preflight = await httpRequest(`${server.dicomweb}/studies`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers["access-control-allow-origin"], origin);
  }
  const stranger = await httpRequest(`${server.dicomweb}/studies`, { headers: { origin: "http://127.0.0.1:1" } });
  assert.equal(stranger.headers["access-control-allow-origin"], undefined);
});

test("GET /ohif-config: the data source snippet as JSON, a whole app-config.js, 400 for another format", async (t) => {
  const { server } = await withViewer(t);
  const json = await httpRequest(`${server.url}ohif-config`);
  assert.equal(json.status, 200);
  assert.match(String(json.headers["content-type"]), /^application\/json/);
  const snippet = json.json() as { dataSources: DataSource[]; defaultDataSourceName: string };
  assert.equal(snippet.defaultDataSourceName, "voxelgate");
  assert.equal(snippet.dataSources[0]?.configuration.qidoRoot, server.dicomweb);
  const js = await httpRequest(`${server.url}ohif-config?format=js`);
  assert.match(String(js.headers["content-type"]), /^text\/javascript/);
  assert.deepEqual((windowConfigOf(js.text()).dataSources as DataSource[])[0], snippet.dataSources[0]);
  const byAccept = await httpRequest(`${server.url}ohif-config`, { headers: { accept: "text/javascript" } });
  assert.match(byAccept.text(), /^\/\*.*\*\/\nwindow\.config = /);
  const bad = await httpRequest(`${server.url}ohif-config?format=yaml`);
  assert.equal(bad.status, 400);
  assert.match(reasonOf(bad), /format=json .* format=js/);
  // Behind a trusted proxy the snippet carries the public URL the browser uses.
  const proxied = await startInProcess(t, { viewer: { enabled: false }, trustedProxies: ["127.0.0.1"] });
  const viaProxy = await httpRequest(`${proxied.url}ohif-config`, {
    headers: { "x-forwarded-proto": "https", "x-forwarded-host": "pacs.example.org" },
  });
  assert.equal((viaProxy.json() as typeof snippet).dataSources[0]?.configuration.wadoRoot, "https://pacs.example.org/dicomweb");
});

test("the landing page links the viewer, the study list and the OHIF configuration", async (t) => {
  const { landing, viewerUrl } = await withViewer(t);
  assert.match(landing, new RegExp(`<a id="viewer" href="${viewerUrl}">`));
  assert.match(landing, /href="\/ohif-config"/);
  assert.match(landing, /href="\/ohif-config\?format=js"/);
  assert.match(landing, /viewer\?StudyInstanceUIDs=/);
});

test("without an OHIF build the viewer port says how to get one, and so does the landing page", async (t) => {
  const empty = mkdtempSync(join(tmpdir(), "voxelgate-no-ohif-"));
  t.after(() => rmSync(empty, { recursive: true, force: true }));
  const server = await startInProcess(t, { viewer: { port: 0, dist: empty } });
  const landing = (await httpRequest(server.url)).text();
  assert.match(landing, /id="viewer-missing"/);
  assert.match(landing, /holds no OHIF build/);
  const viewerUrl = /data-url="([^"]+)"/.exec(landing)?.[1] ?? "";
  for (const path of ["", "viewer?StudyInstanceUIDs=1.2.3"]) {
    const page = await httpRequest(`${viewerUrl}${path}`);
    assert.equal(page.status, 503);
    assert.match(page.text(), /The viewer is not installed/);
  }
  // The default location names the command to run.
  const { findOhifBuild } = await import("../../src/viewer/ohif-dist.js");
  assert.match(findOhifBuild(join(empty, "nothing")).missing ?? "", /holds no OHIF build/);
});

test("viewer.enabled false (--no-viewer): no second listener, the landing page says so", async (t) => {
  const server = await startInProcess(t, { viewer: { enabled: false } });
  const landing = (await httpRequest(server.url)).text();
  assert.doesNotMatch(landing, /id="viewer"/);
  assert.match(landing, /hosted viewer is off/);
  const cors = await httpRequest(`${server.dicomweb}/studies`, {
    headers: { origin: `http://127.0.0.1:${Number(new URL(server.url).port) + 1}` },
  });
  assert.equal(cors.headers["access-control-allow-origin"], undefined);
});

test("flags change one viewer setting and keep the file's others; bad settings are named", () => {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-cfg-"));
  try {
    const file = join(dir, "config.json");
    writeFileSync(file, JSON.stringify({ viewer: { port: 9000, transferSyntax: "1.2.840.10008.1.2.1" } }));
    const config = loadConfig({ file, flags: { viewer: { enabled: false, port: undefined } } });
    assert.deepEqual([config.viewer.enabled, config.viewer.port, config.viewer.transferSyntax], [false, 9000, "1.2.840.10008.1.2.1"]);
    assert.equal(loadConfig({}).viewer.port, "auto");
    assert.throws(() => loadConfig({ flags: { viewer: { transferSyntax: "jpeg" } } }), /viewer\.transferSyntax/);
    assert.throws(() => loadConfig({ flags: { viewer: { colour: "red" } } }), /viewer: unknown setting colour/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("viewerStudyUrl: the launch seam opens one study and passes a share token", () => {
  assert.equal(viewerStudyUrl("http://127.0.0.1:8043/", "1.2.3"), "http://127.0.0.1:8043/viewer?StudyInstanceUIDs=1.2.3");
  assert.equal(
    viewerStudyUrl("https://view.example.org", "1.2.3", "a b"),
    "https://view.example.org/viewer?StudyInstanceUIDs=1.2.3&token=a+b",
  );
});
