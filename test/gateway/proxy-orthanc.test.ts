/**
 * Proxy mode in front of a real Orthanc (Debian orthanc + orthanc-dicomweb) that requires HTTP
 * basic authentication: an OHIF-style flow through the gateway equals direct Orthanc except for
 * the rewritten URLs; gaps Orthanc has (HTJ2K frames, thumbnails, includefield=all) are filled
 * locally; a second upstream that never answers gives 504; STOW streams through; Orthanc
 * stopped mid-test gives 502 with a reason while cached metadata and frames are still served,
 * and the gateway recovers when Orthanc is back on the same port.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import sharp from "sharp";
import { decodeFrame } from "../../src/codec/index.js";
import { readParts } from "../../src/http/multipart.js";
import {
  httpRequest,
  type HttpResponse,
  multipartBody,
  reasonOf,
  startInProcess,
  stowItems,
  syntheticInstance,
} from "../helpers/archive-harness.js";
import { freePort, type OrthancServer, startOrthanc } from "../helpers/orthanc.js";
import { requireTools, TOOLS, toolsAvailable } from "../helpers/tools.js";

const AUTH = { username: "viewer", password: "orthanc-secret" };
const STUDY_A = "1.2.826.0.1.3680043.10.1341.1";
const STUDY_B = "1.2.826.0.1.3680043.10.1341.2";
const SERIES_A1 = `${STUDY_A}.1`;
const SERIES_A2 = `${STUDY_A}.2`;
const SERIES_B1 = `${STUDY_B}.1`;
const SOP_A1 = `${SERIES_A1}.1`;
const SOP_A1B = `${SERIES_A1}.2`;
const SOP_A2 = `${SERIES_A2}.1`;
const SOP_B1 = `${SERIES_B1}.1`;
const MF = `/studies/${STUDY_A}/series/${SERIES_A2}/instances/${SOP_A2}`;
const A1 = `/studies/${STUDY_A}/series/${SERIES_A1}/instances/${SOP_A1}`;

const OCTET_AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

interface Part {
  contentType: string;
  headers: Record<string, string>;
  bytes: Buffer;
}

async function partsOf(res: HttpResponse): Promise<Part[]> {
  const out: Part[] = [];
  for await (const part of readParts(Readable.from([res.body]), res.headers["content-type"])) {
    const chunks: Buffer[] = [];
    for await (const c of part.stream) chunks.push(c as Buffer);
    out.push({ contentType: part.contentType, headers: { ...part.headers }, bytes: Buffer.concat(chunks) });
  }
  return out;
}

/** Every RetrieveURL and BulkDataURI in DICOM JSON. */
function urlsIn(json: unknown, out: string[] = []): string[] {
  if (Array.isArray(json)) for (const v of json) urlsIn(v, out);
  else if (json && typeof json === "object") {
    for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
      if (key === "BulkDataURI" && typeof value === "string") out.push(value);
      else if (key === "00081190") out.push(...(((value as { Value?: string[] }).Value ?? []) as string[]));
      else urlsIn(value, out);
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("proxy mode in front of Orthanc (basic auth)", { concurrency: false }, () => {
  let orthanc: OrthancServer;
  let gateway: { url: string; dicomweb: string };
  let orthancPort: number;
  let orthancData: string;
  let hangingServer: ReturnType<typeof createServer> | undefined;
  const sockets: Socket[] = [];
  const cleanups: Array<() => unknown> = [];
  const cleanup = { after: (fn: () => unknown) => cleanups.push(fn) };
  let available = false;

  const direct = (path: string, accept?: string) =>
    httpRequest(orthanc.dicomweb + path, { headers: { ...orthanc.headers, ...(accept ? { accept } : {}) } });
  const via = (path: string, accept?: string, headers: Record<string, string> = {}) =>
    httpRequest(gateway.dicomweb + path, { headers: { ...(accept ? { accept } : {}), ...headers } });
  /** Direct JSON with Orthanc's base replaced by the gateway's: what the gateway must answer. */
  const expected = (res: HttpResponse): unknown => JSON.parse(res.text().replaceAll(orthanc.dicomweb, gateway.dicomweb));

  before(async () => {
    available = toolsAvailable(TOOLS.orthanc);
    if (!available) return;
    orthancData = mkdtempSync(join(tmpdir(), "voxelgate-proxy-orthanc-"));
    cleanups.push(() => rmSync(orthancData, { recursive: true, force: true }));
    orthancPort = await freePort();
    orthanc = await startOrthanc(cleanup, { basicAuth: AUTH, httpPort: orthancPort, dataDirectory: orthancData });
    const files: string[] = [];
    const add = (name: string, bytes: Buffer) => {
      const file = join(orthancData, name);
      writeFileSync(file, bytes);
      files.push(file);
    };
    add(
      "a1.dcm",
      syntheticInstance({ studyUid: STUDY_A, seriesUid: SERIES_A1, sopUid: SOP_A1, instanceNumber: 1, patientName: "PROXY^ALPHA" }),
    );
    add(
      "a1b.dcm",
      syntheticInstance({
        studyUid: STUDY_A,
        seriesUid: SERIES_A1,
        sopUid: SOP_A1B,
        instanceNumber: 2,
        seed: 5,
        patientName: "PROXY^ALPHA",
      }),
    );
    add(
      "a2.dcm",
      syntheticInstance({
        studyUid: STUDY_A,
        seriesUid: SERIES_A2,
        sopUid: SOP_A2,
        frames: 3,
        rows: 32,
        columns: 48,
        seed: 9,
        patientName: "PROXY^ALPHA",
      }),
    );
    add("b1.dcm", syntheticInstance({ studyUid: STUDY_B, seriesUid: SERIES_B1, sopUid: SOP_B1, patientName: "PROXY^BETA" }));
    await orthanc.upload(files);

    // A second upstream that accepts connections and never answers.
    hangingServer = createServer((socket) => {
      sockets.push(socket);
      socket.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => hangingServer?.listen(0, "127.0.0.1", resolve));
    const hangPort = (hangingServer.address() as { port: number }).port;
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          hangingServer?.close(() => resolve());
        }),
    );

    const server = await startInProcess(cleanup, {
      upstreams: [
        {
          name: "orthanc",
          url: orthanc.dicomweb,
          credentials: { type: "basic", username: AUTH.username, password: AUTH.password },
          timeoutMs: 5000,
          retries: 1,
          breakerFailures: 3,
          breakerResetMs: 300,
          metadataMaxAgeSeconds: 0,
          probeIntervalMs: 0,
        },
        { name: "hang", url: `http://127.0.0.1:${hangPort}/dicom-web`, timeoutMs: 300, retries: 0, probeIntervalMs: 0 },
      ],
    });
    gateway = server;
    // The start-up probe runs in the background: wait for its answer.
    for (let i = 0; i < 100; i++) {
      const caps = (await httpRequest(`${gateway.url}api/capabilities`)).json() as {
        upstreams: Array<{ capabilities: { probedAt: string | null } }>;
      };
      if (caps.upstreams[0]?.capabilities.probedAt) break;
      await sleep(100);
    }
  });

  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  it("reports what Orthanc can do and what the gateway fills in", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const res = await httpRequest(`${gateway.url}api/capabilities`);
    assert.equal(res.status, 200);
    const [first, second] = (res.json() as { upstreams: Array<Record<string, unknown>> }).upstreams as Array<{
      name: string;
      default: boolean;
      paths: string[];
      credentials: string;
      capabilities: Record<string, unknown>;
      filledLocally: string[];
      url: string;
    }>;
    assert.ok(first && second);
    assert.equal(first.name, "orthanc");
    assert.equal(first.default, true);
    assert.deepEqual(first.paths, ["/dicomweb", "/upstreams/orthanc/dicomweb"]);
    assert.equal(first.credentials, "basic");
    assert.ok(!first.url.includes(AUTH.password));
    assert.equal(first.capabilities.reachable, true);
    assert.equal(first.capabilities.qido, true);
    assert.equal(first.capabilities.studyMetadata, true);
    assert.equal(first.capabilities.rendered, true);
    // Orthanc 1.10 / DICOMweb 1.7: includefield=all ignored, no thumbnails, no HTJ2K frames.
    assert.equal(first.capabilities.includefieldAll, false);
    assert.equal(first.capabilities.thumbnail, false);
    assert.ok(!(first.capabilities.frameMediaTypes as string[]).includes("image/jphc"));
    assert.ok((first.capabilities.frameMediaTypes as string[]).includes("application/octet-stream"));
    assert.ok(first.filledLocally.includes("thumbnail"));
    assert.deepEqual(second.paths, ["/upstreams/hang/dicomweb"]);
  });

  it("answers an OHIF-style flow like Orthanc, with every URL pointing at the gateway", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const steps: Array<[string, string | undefined]> = [
      ["/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060", "application/dicom+json"],
      [`/studies?PatientName=PROXY%5EALPHA`, undefined],
      [`/studies/${STUDY_A}/series?includefield=0008103E`, "application/dicom+json"],
      [`/studies/${STUDY_A}/series/${SERIES_A1}/instances`, "application/dicom+json"],
      [`/studies/${STUDY_A}/series/${SERIES_A1}/metadata`, "application/dicom+json"],
      [`/studies/${STUDY_A}/metadata`, undefined],
      [`${A1}/metadata`, "application/dicom+json"],
    ];
    const seen: string[] = [];
    for (const [path, accept] of steps) {
      const [mine, theirs] = [await via(path, accept), await direct(path, accept)];
      assert.equal(mine.status, 200, `${path}: ${reasonOf(mine)}`);
      assert.equal(theirs.status, 200);
      assert.match(String(mine.headers["content-type"]), /^application\/dicom\+json/);
      assert.deepEqual(mine.json(), expected(theirs), path);
      const urls = urlsIn(mine.json());
      for (const u of urls) assert.ok(u.startsWith(`${gateway.dicomweb}/studies/`), `${u} should start with the gateway's base`);
      seen.push(...urls);
    }
    assert.ok(
      seen.some((u) => u.includes("/bulk/")),
      "series metadata has BulkDataURIs",
    );
    // Each URL resolves through the gateway (bulk data and retrieve stream through).
    for (const u of [...new Set(seen)].slice(0, 12)) {
      const res = await httpRequest(u, {
        headers: {
          accept: u.includes("/bulk/")
            ? 'multipart/related; type="application/octet-stream"'
            : 'multipart/related; type="application/dicom"',
        },
      });
      assert.equal(res.status, 200, `${u}: ${reasonOf(res)}`);
    }
    // Pixel data through the BulkDataURI equals Orthanc's.
    const bulk = seen.find((u) => u.includes(SOP_A1) && u.includes("/bulk/")) as string;
    const [viaBulk, directBulk] = [
      await httpRequest(bulk, { headers: { accept: 'multipart/related; type="application/octet-stream"' } }),
      await direct(bulk.slice(gateway.dicomweb.length), 'multipart/related; type="application/octet-stream"'),
    ];
    assert.deepEqual((await partsOf(viaBulk))[0]?.bytes, (await partsOf(directBulk))[0]?.bytes);

    // Frames as stored (what OHIF asks for), one and several.
    for (const frames of ["1", "1,3"]) {
      const [mine, theirs] = [
        await via(`${MF}/frames/${frames}`, OCTET_AS_STORED),
        await direct(`${MF}/frames/${frames}`, OCTET_AS_STORED),
      ];
      assert.equal(mine.status, 200, reasonOf(mine));
      const [a, b] = [await partsOf(mine), await partsOf(theirs)];
      assert.equal(a.length, frames.split(",").length);
      assert.deepEqual(
        a.map((p) => p.bytes),
        b.map((p) => p.bytes),
      );
      assert.ok(a.every((p) => p.headers["content-location"]?.startsWith(`${gateway.dicomweb}${MF}/frames/`)));
      assert.match(a[0]?.contentType ?? "", /^application\/octet-stream; transfer-syntax=1\.2\.840\.10008\.1\.2\.1$/);
    }
    // Rendered: Orthanc makes them; the gateway passes them on.
    const [mine, theirs] = [await via(`${A1}/rendered`, "image/jpeg"), await direct(`${A1}/rendered`, "image/jpeg")];
    assert.equal(mine.status, 200);
    assert.equal(mine.headers["content-type"], "image/jpeg");
    assert.deepEqual(mine.body, theirs.body);
    // Retrieve of a whole instance streams through unchanged.
    const [inst, instDirect] = [
      await via(A1, 'multipart/related; type="application/dicom"'),
      await direct(A1, 'multipart/related; type="application/dicom"'),
    ];
    assert.deepEqual((await partsOf(inst))[0]?.bytes, (await partsOf(instDirect))[0]?.bytes);
    // The other upstream path serves the same upstream.
    const named = await httpRequest(`${gateway.url}upstreams/orthanc/dicomweb/studies/${STUDY_B}/series`);
    assert.equal(named.status, 200);
    assert.ok(urlsIn(named.json()).every((u) => u.startsWith(`${gateway.url}upstreams/orthanc/dicomweb/studies/`)));
  });

  it("fills Orthanc's gaps: HTJ2K frames, thumbnails, includefield=all", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const jphc = 'multipart/related; type="image/jphc"';
    assert.equal((await direct(`${MF}/frames/2`, jphc)).status, 400, "Orthanc cannot make HTJ2K frames");
    const mine = await via(`${MF}/frames/2`, jphc);
    assert.equal(mine.status, 200, reasonOf(mine));
    const [part] = await partsOf(mine);
    assert.match(part?.contentType ?? "", /^image\/jphc; transfer-syntax=1\.2\.840\.10008\.1\.2\.4\.201$/);
    const native = (await partsOf(await direct(`${MF}/frames/2`, OCTET_AS_STORED)))[0]?.bytes as Buffer;
    const info = {
      rows: 32,
      columns: 48,
      samplesPerPixel: 1,
      bitsAllocated: 8,
      bitsStored: 8,
      highBit: 7,
      pixelRepresentation: 0,
      photometricInterpretation: "MONOCHROME2",
      planarConfiguration: 0,
    };
    const decoded = await decodeFrame(part?.bytes as Buffer, "1.2.840.10008.1.2.4.201", info);
    assert.deepEqual(Buffer.from(decoded.pixels), native, "HTJ2K lossless decodes to Orthanc's pixels");
    // Single part as well.
    const single = await via(`${MF}/frames/2`, "image/jphc");
    assert.equal(single.status, 200);
    assert.deepEqual(single.body, part?.bytes);

    // Thumbnails: Orthanc has none; the gateway renders one (never enlarged: 64 × 64 stays 64 × 64).
    assert.equal((await direct(`${A1}/thumbnail`, "image/jpeg")).status, 404);
    for (const path of [`${A1}/thumbnail`, `/studies/${STUDY_A}/series/${SERIES_A2}/thumbnail`, `/studies/${STUDY_B}/thumbnail`]) {
      const thumb = await via(path, "image/png");
      assert.equal(thumb.status, 200, `${path}: ${reasonOf(thumb)}`);
      assert.equal(thumb.headers["content-type"], "image/png");
      const meta = await sharp(thumb.body).metadata();
      assert.equal(meta.format, "png");
      assert.ok((meta.width ?? 0) > 0 && (meta.width ?? 0) <= 128);
    }
    const middleFrame = await sharp((await via(`${MF}/thumbnail`, "image/png")).body).metadata();
    assert.deepEqual([middleFrame.width, middleFrame.height], [48, 32]);

    // includefield=all at instance level: Orthanc leaves out e.g. Photometric Interpretation and Bits Stored; the gateway adds the instance's attributes.
    const path = `/studies/${STUDY_A}/series/${SERIES_A1}/instances?includefield=all`;
    const theirs = (await direct(path)).json() as Array<Record<string, unknown>>;
    assert.ok(theirs.every((ds) => ds["00280004"] === undefined && ds["00280101"] === undefined));
    const ours = (await via(path)).json() as Array<Record<string, { Value?: unknown[] }>>;
    assert.equal(ours.length, 2);
    for (const ds of ours) {
      assert.deepEqual(ds["00280004"]?.Value, ["MONOCHROME2"]);
      assert.deepEqual(ds["00280101"]?.Value, [8]);
      assert.equal(ds["7FE00010"], undefined, "no bulk data in search results");
    }
  });

  it("stores through the gateway (STOW streams to Orthanc) and answers with gateway URLs", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const sop = `${SERIES_B1}.9`;
    const { body, contentType } = multipartBody([
      syntheticInstance({ studyUid: STUDY_B, seriesUid: SERIES_B1, sopUid: sop, instanceNumber: 9 }),
    ]);
    const res = await httpRequest(`${gateway.dicomweb}/studies`, {
      method: "POST",
      headers: { "content-type": contentType, accept: "application/dicom+json" },
      body,
    });
    assert.equal(res.status, 200, reasonOf(res));
    const items = stowItems(res.json());
    assert.equal(items.referenced[0]?.sopUid, sop);
    assert.ok(items.referenced[0]?.retrieveUrl?.startsWith(`${gateway.dicomweb}/studies/${STUDY_B}`), items.referenced[0]?.retrieveUrl);
    const found = await via(`/studies/${STUDY_B}/series/${SERIES_B1}/instances?SOPInstanceUID=${sop}`);
    assert.equal((found.json() as unknown[]).length, 1);
  });

  it("gives 504 naming an upstream that does not answer in time", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const res = await httpRequest(`${gateway.url}upstreams/hang/dicomweb/studies`);
    assert.equal(res.status, 504);
    assert.match(reasonOf(res), /upstream "hang" .* did not answer GET \/dicom-web\/studies within 300 ms/);
  });

  it("keeps serving cached metadata and frames while Orthanc is down, gives 502 for the rest, and recovers", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    const seriesMeta = `/studies/${STUDY_A}/series/${SERIES_A1}/metadata`;
    const frame = `${MF}/frames/1`;
    const before = [await via(seriesMeta), await via(frame, OCTET_AS_STORED)];
    assert.ok(before.every((r) => r.status === 200));

    await orthanc.stop();

    const cachedMeta = await via(seriesMeta);
    assert.equal(cachedMeta.status, 200);
    assert.deepEqual(cachedMeta.json(), before[0]?.json());
    assert.match(String(cachedMeta.headers.warning), /110 - "Response is stale"/);
    const cachedFrame = await via(frame, OCTET_AS_STORED);
    assert.equal(cachedFrame.status, 200);
    assert.deepEqual((await partsOf(cachedFrame))[0]?.bytes, (await partsOf(before[1] as HttpResponse))[0]?.bytes);

    const missing = await via(`/studies/${STUDY_B}/series/${SERIES_B1}/metadata`);
    assert.equal(missing.status, 502);
    assert.match(reasonOf(missing), /upstream "orthanc" \(http:\/\/127\.0\.0\.1:\d+\/dicom-web\) (refused the connection|is unavailable)/);
    // Enough failures open the circuit: requests fail at once, /readyz and /api/capabilities say why.
    for (let i = 0; i < 3; i++) await via("/studies");
    const open = await via("/studies");
    assert.equal(open.status, 502);
    assert.match(reasonOf(open), /is unavailable: \d+ consecutive failures/);
    const ready = await httpRequest(`${gateway.url}readyz`);
    assert.equal(ready.status, 503);
    assert.match(String((ready.json() as { checks: Record<string, string> }).checks["upstream orthanc"]), /circuit (open|half-open)/);
    const caps = (await httpRequest(`${gateway.url}api/capabilities`)).json() as { upstreams: Array<{ circuit: { state: string } }> };
    assert.notEqual(caps.upstreams[0]?.circuit.state, "closed");
    // The gateway itself stays up.
    assert.equal((await httpRequest(`${gateway.url}healthz`)).status, 200);

    // Orthanc back on the same port with the same data: after the reset time the circuit closes again.
    orthanc = await startOrthanc(cleanup, { basicAuth: AUTH, httpPort: orthancPort, dataDirectory: orthancData });
    let recovered: HttpResponse | undefined;
    for (let i = 0; i < 50; i++) {
      await sleep(200);
      recovered = await via(`/studies/${STUDY_B}/series/${SERIES_B1}/metadata`);
      if (recovered.status === 200) break;
    }
    assert.equal(recovered?.status, 200, recovered ? reasonOf(recovered) : "no answer");
    const fresh = await via(seriesMeta);
    assert.equal(fresh.headers.warning, undefined);
    assert.equal((await httpRequest(`${gateway.url}readyz`)).status, 200);
  });
});
