/**
 * What the gateway costs (issue 7), measured side by side in one run:
 *
 *  1. Overhead. Two Voxelgate processes hold the same data: one plain (no authentication, audit
 *     off, rate limits off) and one with the gateway on as production runs it (API keys and OIDC
 *     bearer tokens from an issuer this bench starts, per-patient grant rules, audit JSON lines,
 *     rate limits whose buckets are wide enough never to refuse, so every check still runs).
 *     Requests to the plain server, with an API key and with a bearer token are interleaved:
 *     frame p50, frames/s at concurrency 8, QIDO p50, series metadata p50. Goal: within 10 %.
 *  2. Proxy. Voxelgate (gateway on, API key) in front of Orthanc as its upstream, against
 *     Orthanc asked directly, interleaved: QIDO and metadata p50 (metadata never served from the
 *     cache: metadataMaxAgeSeconds 0), frames cold (through to Orthanc) and cached. Goals: ≤ 2 ms
 *     added at p50; cached frames faster than Orthanc serves them.
 *
 * Every answer is checked (result counts, frame bytes, rewritten URLs): a fast wrong answer fails.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { createApiKey } from "../src/gateway/api-keys.js";
import {
  check,
  CpuMeter,
  DICOM_JSON,
  expectStatus,
  firstValue,
  fmt,
  inFlight,
  interleaved,
  type Json,
  median,
  parseJson,
  qido,
  round,
  type Side,
  stow,
} from "./archive-kit.js";
import { type BigSeries, type CorpusInstance, makeBigSeries, makeSmallStudies, type SmallStudy } from "./corpus.js";
import type { BenchRow, Goal, Suite, SuiteContext } from "./main.js";
import { Client, parseMultipart } from "./peers/http.js";
import { ORTHANC_PACKAGES, orthancInstalled, type PeerServer, startOrthanc } from "./peers/orthanc.js";
import { startVoxelgate } from "./peers/voxelgate.js";
import { seededRandom } from "./seeded-random.js";

/** What OHIF sends for frames: the stored bytes. */
const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const AUDIENCE = "voxelgate-bench";
const ROLE = "radiology";
/** Variant of the generated big series (its own UIDs; patient PID-BIG-<variant>). */
const VARIANT = 7;

/** Rate-limit buckets far above what two cores can serve: the checks run, nothing is refused. */
const WIDE = { rate: 1e6, burst: 1e6 };
const WIDE_LIMITS = {
  enabled: true,
  ...Object.fromEntries(["search", "retrieve", "render", "store", "delete"].map((b) => [b, { perPrincipal: WIDE, perIp: WIDE }])),
};

// ---------------------------------------------------------------------------------------------
// An OIDC issuer of our own (discovery document + JWKS over HTTP on loopback), keys from jose

interface Issuer {
  url: string;
  token(claims: Record<string, unknown>): Promise<string>;
  stop(): Promise<void>;
}

async function startIssuer(): Promise<Issuer> {
  const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "bench-1", alg: "RS256", use: "sig" };
  let url = "";
  const server: Server = createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.url === "/.well-known/openid-configuration") res.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/jwks` }));
    else if (req.url === "/jwks") res.end(JSON.stringify({ keys: [jwk] }));
    else res.writeHead(404).end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    token: (claims) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "RS256", kid: "bench-1", typ: "JWT" })
        .setIssuer(url)
        .setAudience(AUDIENCE)
        .setSubject("bench-user")
        .setIssuedAt()
        .setExpirationTime("2h")
        .sign(privateKey),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Checked operations

const framePath = (i: CorpusInstance) => `/studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopUid}/frames/1`;

/** Frame 1 of instance `index`, as stored; checks the bytes against the generated pixels. */
async function frame(side: Side, big: BigSeries, index: number): Promise<number> {
  const instance = big.instances[index] as CorpusInstance;
  const r = await side.client.request(framePath(instance), { headers: { accept: FRAME_ACCEPT } });
  const what = `${side.label} frame of instance ${index + 1}`;
  expectStatus(r, 200, what);
  const parts = parseMultipart(r.body, r.headers["content-type"]);
  check(parts.length === 1, `${what}: ${parts.length} parts`);
  check((parts[0] as { body: Buffer }).body.equals(big.pixels[index] as Buffer), `${what}: the bytes differ from the source pixels`);
  return r.ms;
}

/** Series metadata; checks the instances and, when given, that bulk data points at `bulkBase`. */
async function seriesMetadata(
  side: Side,
  series: { studyUid: string; seriesUid: string; sops: string[] },
  bulkBase?: string,
): Promise<number> {
  const r = await side.client.request(`/studies/${series.studyUid}/series/${series.seriesUid}/metadata`, {
    headers: { accept: DICOM_JSON },
  });
  const what = `${side.label} series metadata of ${series.seriesUid}`;
  expectStatus(r, 200, what);
  const items = parseJson(r, what) as Json[];
  check(Array.isArray(items) && items.length === series.sops.length, `${what}: ${items.length} instances, expected ${series.sops.length}`);
  const uids = new Set(items.map((item) => String(firstValue(item, "00080018"))));
  for (const sop of series.sops) check(uids.has(sop), `${what}: ${sop} is missing`);
  if (bulkBase) {
    const uri = (items[0]?.["7FE00010"] as { BulkDataURI?: unknown } | undefined)?.BulkDataURI;
    check(typeof uri !== "string" || uri.startsWith(bulkBase), `${what}: BulkDataURI ${String(uri)} not rewritten to ${bulkBase}`);
  }
  return r.ms;
}

/** Queries every server must answer alike, with their result counts. */
function queries(big: BigSeries, small: SmallStudy[]): Array<[string, number]> {
  const [s0, s1] = small as [SmallStudy, SmallStudy];
  return [
    ["/studies", small.length + 1],
    [`/studies?PatientID=${s1.patientId}`, 1],
    [`/studies/${big.studyUid}/series`, 1],
    [`/studies/${s0.studyUid}/series/${s0.series[0]?.seriesUid}/instances`, 2],
  ];
}

// ---------------------------------------------------------------------------------------------
// Figures

interface Measures {
  rows: BenchRow[];
  log(message: string): void;
}

/** p50 per side of `count` interleaved calls (warm up before). */
async function p50s(sides: Side[], count: number, fn: (side: Side, i: number) => Promise<number>): Promise<Map<Side, number>> {
  const all = await interleaved(sides, count, fn);
  return new Map([...all].map(([side, ms]) => [side, median(ms)]));
}

/** Frames/s per side at `concurrency`, in alternating rounds (load from elsewhere hits all alike), and server CPU µs per frame. */
async function frameRates(
  sides: Side[],
  big: BigSeries,
  concurrency: number,
  perRound: number,
  rounds: number,
): Promise<Map<Side, { perSecond: number; cpuUs: number }>> {
  const totals = new Map(sides.map((s) => [s, { calls: 0, ms: 0, cpu: 0 }]));
  const random = seededRandom(0x9a7e);
  for (let round = 0; round < rounds; round++) {
    for (const side of round % 2 ? [...sides].reverse() : sides) {
      const order = Array.from({ length: perRound }, () => Math.floor(random() * big.instances.length));
      const cpu = new CpuMeter([side]);
      const r = await inFlight(concurrency, perRound, (i) => frame(side, big, order[i] as number));
      const t = totals.get(side) as { calls: number; ms: number; cpu: number };
      t.calls += r.calls;
      t.ms += r.ms;
      t.cpu += cpu.seconds()[0] as number;
    }
  }
  return new Map([...totals].map(([s, t]) => [s, { perSecond: t.calls / (t.ms / 1000), cpuUs: (t.cpu * 1e6) / t.calls }]));
}

const within = (text: string, ratio: number, min: number): Goal[] => [{ text, met: ratio >= min }];

// ---------------------------------------------------------------------------------------------
// 1. Overhead of identity, authorization, audit and rate limits

async function overhead(context: SuiteContext, m: Measures, big: BigSeries, small: SmallStudy[]): Promise<void> {
  const { quick } = context;
  const issuer = await startIssuer();
  const writer = createApiKey("bench-writer", ["dicomweb.store", "dicomweb.read"], [ROLE]);
  const reader = createApiKey("bench-reader", ["dicomweb.read"], [ROLE]);
  const patients = [`PID-BIG-${VARIANT}`, ...small.map((s) => s.patientId)];
  const gatewayConfig = {
    auth: {
      oidc: { issuer: issuer.url, audiences: [AUDIENCE] },
      apiKeys: [writer.entry, reader.entry],
      // Per-patient grants: every request is checked against the study's patient.
      rules: patients.map((patientId) => ({ when: { role: ROLE }, allow: { patientId } })),
    },
    limits: WIDE_LIMITS,
  };
  const started = await Promise.allSettled([startVoxelgate({ audit: false, limits: { enabled: false } }), startVoxelgate(gatewayConfig)]);
  const servers = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const clients: Client[] = [];
  try {
    for (const s of started) if (s.status === "rejected") throw s.reason;
    const [plainServer, gatewayServer] = servers as [PeerServer, PeerServer];
    const side = (label: string, server: PeerServer, headers: Record<string, string> = {}): Side => {
      const client = new Client(server.dicomweb, 16, headers);
      clients.push(client);
      return { label, server, client };
    };
    const bearer = await issuer.token({ scope: "dicomweb.read", roles: [ROLE] });
    const plain = side("plain", plainServer);
    const withKey = side("API key", gatewayServer, { authorization: `ApiKey ${reader.key}` });
    const withToken = side("bearer token", gatewayServer, { authorization: `Bearer ${bearer}` });
    const writing = side("writer", gatewayServer, { authorization: `ApiKey ${writer.key}` });
    const sides = [plain, withKey, withToken];

    // The same data in both; the refusal of anonymous callers is checked once.
    const files = [...big.instances, ...small.flatMap((s) => s.series.flatMap((se) => se.instances))];
    for (let i = 0; i < files.length; i += 50) {
      await stow(plain, files.slice(i, i + 50));
      await stow(writing, files.slice(i, i + 50));
    }
    const anonymous = side("anonymous", gatewayServer);
    const refused = await anonymous.client.request("/studies", { headers: { accept: DICOM_JSON } });
    check(refused.status === 401, `the gateway answered an anonymous search with ${refused.status}, not 401`);
    m.log(`overhead: ${files.length} instances stored in the plain and the gateway server`);

    // Warm: every frame once per side (page cache, frame tables), the queries and the metadata.
    const qs = queries(big, small);
    const series = { studyUid: big.studyUid, seriesUid: big.seriesUid, sops: big.instances.map((i) => i.sopUid) };
    for (const s of sides) {
      for (let i = 0; i < big.instances.length; i++) await frame(s, big, i);
      for (const [path, n] of qs) await qido(s, path, n);
      await seriesMetadata(s, series);
    }

    const random = seededRandom(0x6a7e);
    const frameCount = quick ? 150 : 1500;
    const order = Array.from({ length: frameCount }, () => Math.floor(random() * big.instances.length));
    const frameP50 = await p50s(sides, frameCount, (s, i) => frame(s, big, order[i] as number));
    const qidoP50 = await p50s(sides, quick ? 100 : 800, (s, i) => {
      const [path, n] = qs[i % qs.length] as [string, number];
      return qido(s, path, n);
    });
    const metadataP50 = await p50s(sides, quick ? 30 : 200, (s) => seriesMetadata(s, series));
    const rates = await frameRates(sides, big, 8, quick ? 150 : 600, quick ? 2 : 6);

    const plainName = "same server, gateway off";
    const note = (what: string) =>
      `${what}; gateway on: OIDC (RS256) or API key, ${patients.length} per-patient grant rules, audit JSON lines, rate limits checked; plain: auth, audit and limits off`;
    for (const s of [withKey, withToken]) {
      const time = (name: string, p50: Map<Side, number>, what: string) => {
        const ours = p50.get(s) as number;
        const peer = p50.get(plain) as number;
        m.rows.push({
          name: `Gateway overhead (${s.label}): ${name}`,
          ours: round(ours, 3),
          peer: round(peer, 3),
          unit: "ms",
          ratio: round(peer / ours, 2),
          higherIsBetter: false,
          peerName: plainName,
          goals: within("within 10 % of the server without the gateway", peer / ours, 1 / 1.1),
          note: note(what),
        });
        m.log(`gateway overhead (${s.label}) ${name}: ${fmt(ours, 3)} ms vs ${fmt(peer, 3)} ms plain`);
      };
      time("frame p50, concurrency 1", frameP50, `${frameCount} interleaved requests, 512×512 CT as stored`);
      time(
        "QIDO p50",
        qidoP50,
        `${qs.length} queries in turn: ${qs.map(([p]) => p.split("?")[0]?.replace(/\/[0-9.]{20,}/g, "/{uid}")).join(", ")}`,
      );
      time("series metadata p50", metadataP50, `${big.instances.length}-instance series, no gzip`);
      const ours = rates.get(s) as { perSecond: number; cpuUs: number };
      const peer = rates.get(plain) as { perSecond: number; cpuUs: number };
      m.rows.push({
        name: `Gateway overhead (${s.label}): frames/s, concurrency 8`,
        ours: round(ours.perSecond, 0),
        peer: round(peer.perSecond, 0),
        unit: "frames/s",
        ratio: round(ours.perSecond / peer.perSecond, 2),
        higherIsBetter: true,
        peerName: plainName,
        goals: within("within 10 % of the server without the gateway", ours.perSecond / peer.perSecond, 0.9),
        note: note(`alternating rounds; server CPU per frame ${fmt(ours.cpuUs, 0)} µs vs ${fmt(peer.cpuUs, 0)} µs`),
      });
      m.log(`gateway overhead (${s.label}) frames/s c8: ${fmt(ours.perSecond, 0)} vs ${fmt(peer.perSecond, 0)} plain`);
    }
  } finally {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop()));
    await issuer.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Proxy mode in front of Orthanc

async function proxy(context: SuiteContext, m: Measures, big: BigSeries, small: SmallStudy[]): Promise<void> {
  const { quick } = context;
  const orthancServer = await startOrthanc();
  const servers: PeerServer[] = [orthancServer];
  const clients: Client[] = [];
  try {
    const direct: Side = { label: "Orthanc", server: orthancServer, client: new Client(orthancServer.dicomweb) };
    clients.push(direct.client);
    const files = [...big.instances, ...small.flatMap((s) => s.series.flatMap((se) => se.instances))];
    for (let i = 0; i < files.length; i += 50) await stow(direct, files.slice(i, i + 50));

    const reader = createApiKey("bench-reader", ["dicomweb.read"]);
    const gatewayServer = await startVoxelgate({
      // The same Orthanc twice: metadata always asked again (first), and cached for 30 s (the default).
      upstreams: [
        { name: "orthanc", url: orthancServer.dicomweb, probeIntervalMs: 0, metadataMaxAgeSeconds: 0 },
        { name: "orthanc-cached", url: orthancServer.dicomweb, probeIntervalMs: 0 },
      ],
      auth: { apiKeys: [reader.entry] },
      limits: WIDE_LIMITS,
    });
    servers.push(gatewayServer);
    const proxied: Side = {
      label: "Voxelgate → Orthanc",
      server: gatewayServer,
      client: new Client(gatewayServer.dicomweb, 16, { authorization: `ApiKey ${reader.key}` }),
    };
    const proxiedCached: Side = {
      label: "Voxelgate → Orthanc, metadata cached",
      server: gatewayServer,
      client: new Client(`${gatewayServer.url}upstreams/orthanc-cached/dicomweb`, 16, { authorization: `ApiKey ${reader.key}` }),
    };
    clients.push(proxied.client, proxiedCached.client);
    const sides = [proxied, direct];
    m.log(`proxy: ${files.length} instances in Orthanc; Voxelgate in front (pid ${gatewayServer.pid})`);

    const qs = queries(big, small);
    const [s0] = small as [SmallStudy];
    const smallSeries = {
      studyUid: s0.studyUid,
      seriesUid: s0.series[0]?.seriesUid as string,
      sops: s0.series[0]?.instances.map((i) => i.sopUid) as string[],
    };
    const bigSeries = { studyUid: big.studyUid, seriesUid: big.seriesUid, sops: big.instances.map((i) => i.sopUid) };
    for (const s of sides) for (const [path, n] of qs) await qido(s, path, n);

    const addedRow = (name: string, p50: Map<Side, number>, note: string, via = proxied) => {
      const ours = p50.get(via) as number;
      const extra = ours - (p50.get(direct) as number);
      m.rows.push({
        name: `Proxy in front of Orthanc: ${name}`,
        ours: round(ours, 3),
        peer: round(p50.get(direct) as number, 3),
        unit: "ms",
        ratio: round((p50.get(direct) as number) / ours, 2),
        higherIsBetter: false,
        peerName: `${orthancServer.name} asked directly`,
        goals: [{ text: "adds ≤ 2 ms at p50", met: extra <= 2 }],
        note: `adds ${fmt(extra, 2)} ms; ${note}`,
      });
      m.log(`proxy ${name}: ${fmt(ours, 2)} ms vs ${fmt(p50.get(direct) as number, 2)} ms direct (+${fmt(extra, 2)})`);
    };
    addedRow(
      "QIDO p50",
      await p50s(sides, quick ? 80 : 600, (s, i) => {
        const [path, n] = qs[i % qs.length] as [string, number];
        return qido(s, path, n);
      }),
      "searches pass through (URLs rewritten, results filtered by the caller's grant)",
    );
    const bulkBase = `${gatewayServer.dicomweb}/`;
    addedRow(
      "series metadata p50, 2 instances",
      await p50s(sides, quick ? 40 : 300, (s) => seriesMetadata(s, smallSeries, s === proxied ? bulkBase : undefined)),
      "metadataMaxAgeSeconds 0: every request goes to Orthanc; BulkDataURIs rewritten to the gateway",
    );
    addedRow(
      `series metadata p50, ${big.instances.length} instances`,
      await p50s(sides, quick ? 10 : 60, (s) => seriesMetadata(s, bigSeries, s === proxied ? bulkBase : undefined)),
      "metadataMaxAgeSeconds 0: every request goes to Orthanc, which sends the whole answer before the gateway parses, rewrites and sends it",
    );
    await seriesMetadata(proxiedCached, bigSeries);
    addedRow(
      `series metadata p50, ${big.instances.length} instances, cached`,
      await p50s([proxiedCached, direct], quick ? 10 : 60, (s) =>
        seriesMetadata(s, bigSeries, s === direct ? undefined : `${s.client.root}/`),
      ),
      "metadataMaxAgeSeconds 30 (the default): what a viewer gets when the series was opened in the last 30 s",
      proxiedCached,
    );

    // Frames: the first request of each goes through to Orthanc (cold); then all come from the gateway's cache.
    // Orthanc keeps recently parsed instances in memory: each frame is asked of it once first, so
    // that whichever side asks first does not pay Orthanc's parse for the other.
    for (let i = 0; i < big.instances.length; i++) await frame(direct, big, i);
    const cold = await p50s(sides, big.instances.length, (s, i) => frame(s, big, i));
    addedRow(
      "frame p50, cold (fetched from Orthanc)",
      cold,
      "first request of each frame through the gateway (streamed from Orthanc while kept in the gateway's frame cache); Orthanc had seen each frame once before",
    );
    const random = seededRandom(0x5f0c);
    const count = quick ? 150 : 1500;
    const order = Array.from({ length: count }, () => Math.floor(random() * big.instances.length));
    const cached = await p50s(sides, count, (s, i) => frame(s, big, order[i] as number));
    const rates = await frameRates(sides, big, 8, quick ? 150 : 600, quick ? 2 : 4);
    const ours = cached.get(proxied) as number;
    const peer = cached.get(direct) as number;
    m.rows.push({
      name: "Proxy in front of Orthanc: cached frame p50 vs Orthanc directly",
      ours: round(ours, 3),
      peer: round(peer, 3),
      unit: "ms",
      ratio: round(peer / ours, 2),
      higherIsBetter: false,
      peerName: `${orthancServer.name} asked directly`,
      goals: [{ text: "cached frames faster than Orthanc serves them", met: ours < peer }],
      note: `${count} interleaved requests, 512×512 CT as stored, API key checked and audited on every hit`,
    });
    const r = (s: Side) => rates.get(s) as { perSecond: number; cpuUs: number };
    m.rows.push({
      name: "Proxy in front of Orthanc: cached frames/s, concurrency 8, vs Orthanc directly",
      ours: round(r(proxied).perSecond, 0),
      peer: round(r(direct).perSecond, 0),
      unit: "frames/s",
      ratio: round(r(proxied).perSecond / r(direct).perSecond, 2),
      higherIsBetter: true,
      peerName: `${orthancServer.name} asked directly`,
      goals: [{ text: "cached frames faster than Orthanc serves them", met: r(proxied).perSecond > r(direct).perSecond }],
      note: `server CPU per frame ${fmt(r(proxied).cpuUs, 0)} µs (gateway) vs ${fmt(r(direct).cpuUs, 0)} µs (Orthanc)`,
    });
    m.log(
      `proxy cached frame p50 ${fmt(ours, 2)} ms vs Orthanc ${fmt(peer, 2)} ms; c8 ${fmt(r(proxied).perSecond, 0)}/s vs ${fmt(r(direct).perSecond, 0)}/s`,
    );
  } finally {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop()));
  }
}

export const gatewaySuite: Suite = {
  name: "Gateway: overhead and proxy mode",
  async run(context: SuiteContext) {
    const started = performance.now();
    const count = context.quick ? 50 : 200;
    const big = makeBigSeries(count, VARIANT);
    const small = makeSmallStudies();
    const m: Measures = { rows: [], log: context.log };
    await overhead(context, m, big, small);
    const wantPeer = context.options.peer !== false;
    if (wantPeer && orthancInstalled()) await proxy(context, m, big, small);
    else if (wantPeer) {
      const message = `Orthanc not installed (apt-get install ${ORTHANC_PACKAGES}): proxy mode not measured`;
      if (process.env.CI === "true") throw new Error(`CI is missing the bench's peer: ${message}`);
      context.log(message);
    }
    context.log(`gateway suite: ${fmt((performance.now() - started) / 1000)} s`);
    return m.rows;
  },
};
