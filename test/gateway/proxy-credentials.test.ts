/**
 * Upstream credentials of proxy mode:
 *  - OAuth 2.0 client credentials against a token endpoint started here, in front of a real
 *    Orthanc: a tiny forwarding stub (written for this test) accepts only the current bearer token
 *    and forwards to Orthanc with its basic authentication. The token is fetched once, reused,
 *    and fetched again once when the stub revokes it (401).
 *  - AWS Signature Version 4 (AWS HealthImaging cannot be reached here): a local receiver signs
 *    the same request independently with @smithy/signature-v4 and the same secret, and compares.
 */
import assert from "node:assert/strict";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import { httpRequest, reasonOf, startInProcess, syntheticInstance } from "../helpers/archive-harness.js";
import { type OrthancServer, startOrthanc } from "../helpers/orthanc.js";
import { requireTools, TOOLS, toolsAvailable } from "../helpers/tools.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const STUDY = "1.2.826.0.1.3680043.10.1341.77";

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const readBody = async (req: IncomingMessage): Promise<string> => {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
};

const waitForProbe = async (gatewayUrl: string) => {
  for (let i = 0; i < 100; i++) {
    const caps = (await httpRequest(`${gatewayUrl}api/capabilities`)).json() as {
      upstreams: Array<{ capabilities: { probedAt: string | null } }>;
    };
    if (caps.upstreams.every((u) => u.capabilities.probedAt)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe("OAuth 2.0 client credentials in front of Orthanc", { concurrency: false }, () => {
  const cleanups: Array<() => unknown> = [];
  const cleanup = { after: (fn: () => unknown) => cleanups.push(fn) };
  let orthanc: OrthancServer;
  let gateway: { url: string; dicomweb: string };
  const issued: string[] = [];
  const tokenRequests: Array<{ authorization?: string; body: string }> = [];
  let valid = new Set<string>();

  before(async () => {
    if (!toolsAvailable(TOOLS.orthanc)) return;
    orthanc = await startOrthanc(cleanup, { basicAuth: { username: "svc", password: "pw-orthanc" } });
    const dir = mkdtempSync(join(tmpdir(), "voxelgate-proxy-oauth-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "one.dcm");
    writeFileSync(file, syntheticInstance({ studyUid: STUDY, seriesUid: `${STUDY}.1`, sopUid: `${STUDY}.1.1` }));
    await orthanc.upload([file]);

    const tokens = await listen((req, res) => {
      void readBody(req).then((body) => {
        tokenRequests.push({ authorization: req.headers.authorization, body });
        const expected = `Basic ${Buffer.from("voxelgate:client-secret").toString("base64")}`;
        if (req.headers.authorization !== expected || !body.includes("grant_type=client_credentials")) {
          res.writeHead(401, { "content-type": "application/json" }).end('{"error":"invalid_client"}');
          return;
        }
        const token = `token-${issued.length + 1}`;
        issued.push(token);
        valid.add(token);
        res
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify({ access_token: token, token_type: "Bearer", expires_in: 3600 }));
      });
    });
    cleanups.push(() => tokens.close());
    // The forwarding stub: bearer token in, Orthanc's basic authentication out.
    const stub = await listen((req, res) => {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      if (!token || !valid.has(token)) {
        res.writeHead(401, { "www-authenticate": 'Bearer error="invalid_token"' }).end();
        return;
      }
      const target = new URL(orthanc.url.replace(/\/$/, "") + (req.url ?? "/"));
      const forward = http.request(
        target,
        { method: req.method, headers: { ...req.headers, ...orthanc.headers, host: target.host } },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      forward.on("error", () => res.destroy());
      req.pipe(forward);
    });
    cleanups.push(() => stub.close());

    process.env.VOXELGATE_TEST_WRONG_SECRET = "not-the-secret";
    gateway = await startInProcess(cleanup, {
      upstreams: [
        {
          name: "secured",
          url: `${stub.url}/dicom-web`,
          credentials: {
            type: "oauth2",
            tokenUrl: `${tokens.url}/token`,
            clientId: "voxelgate",
            clientSecret: "client-secret",
            scope: "system/ImagingStudy.rs",
          },
          probeIntervalMs: 0,
          metadataMaxAgeSeconds: 0,
        },
        {
          name: "wrong-secret",
          url: `${stub.url}/dicom-web`,
          credentials: {
            type: "oauth2",
            tokenUrl: `${tokens.url}/token`,
            clientId: "voxelgate",
            clientSecret: { env: "VOXELGATE_TEST_WRONG_SECRET" },
          },
          probeIntervalMs: 0,
          retries: 0,
        },
      ],
    });
    await waitForProbe(gateway.url);
  });

  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  it("fetches a token once, reuses it, and fetches a new one once when the upstream refuses it", async (t) => {
    if (!requireTools(t, TOOLS.orthanc)) return;
    for (let i = 0; i < 3; i++) {
      const res = await httpRequest(`${gateway.dicomweb}/studies/${STUDY}/series`);
      assert.equal(res.status, 200, reasonOf(res));
      assert.equal((res.json() as unknown[]).length, 1);
    }
    assert.equal(issued.length, 1, "one token for the probe and every request");
    assert.match(tokenRequests[0]?.body ?? "", /scope=system%2FImagingStudy\.rs/);

    // Revoked: the next request gets 401 from the upstream, the gateway asks for a new token once and retries.
    valid = new Set();
    const res = await httpRequest(`${gateway.dicomweb}/studies/${STUDY}/metadata`);
    assert.equal(res.status, 200, reasonOf(res));
    assert.equal(issued.length, 2);
    assert.ok(valid.has("token-2"));

    // A token endpoint that refuses the client is a 502 naming the upstream and the endpoint.
    const refused = await httpRequest(`${gateway.url}upstreams/wrong-secret/dicomweb/studies`);
    assert.equal(refused.status, 502);
    assert.match(
      reasonOf(refused),
      /upstream "wrong-secret" .*token endpoint http:\/\/127\.0\.0\.1:\d+\/token refused the client credentials: HTTP 401/,
    );
  });
});

describe("AWS SigV4 (a local receiver checks the signature)", { concurrency: false }, () => {
  const cleanups: Array<() => unknown> = [];
  const cleanup = { after: (fn: () => unknown) => cleanups.push(fn) };
  let gateway: { url: string; dicomweb: string };
  const seen: Array<{ ok: boolean; path: string; reason?: string }> = [];
  const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

  const signer = (secretAccessKey: string) =>
    new SignatureV4({
      credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey },
      region: "us-east-1",
      service: "medical-imaging",
      sha256: Sha256,
    });

  /** Signs the received request again, at the time it names, and compares Authorization. */
  async function verify(req: IncomingMessage, secretAccessKey: string): Promise<boolean> {
    const url = new URL(req.url ?? "/", "http://placeholder");
    const amzDate = String(req.headers["x-amz-date"] ?? "");
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
    if (!m) return false;
    const signingDate = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
    const signedHeaders = /SignedHeaders=([^,]+)/.exec(String(req.headers.authorization))?.[1]?.split(";") ?? [];
    const headers: Record<string, string> = {};
    for (const name of signedHeaders) headers[name] = String(req.headers[name] ?? "");
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const [hostname, port] = (req.headers.host ?? "").split(":");
    const signed = await signer(secretAccessKey).sign(
      { method: req.method ?? "GET", protocol: "http:", hostname: hostname ?? "", port: Number(port), path: url.pathname, query, headers },
      { signingDate },
    );
    return signed.headers.authorization === req.headers.authorization;
  }

  before(async () => {
    const receiver = await listen((req, res) => {
      void (async () => {
        const ok = await verify(req, secret);
        const wrongSecretAlsoOk = await verify(req, "not-the-secret");
        seen.push({ ok: ok && !wrongSecretAlsoOk, path: req.url ?? "" });
        if (!ok) {
          res.writeHead(403, { "content-type": "application/json" }).end('{"message":"signature does not match"}');
          return;
        }
        res.writeHead(200, { "content-type": "application/dicom+json" }).end("[]");
      })();
    });
    cleanups.push(() => receiver.close());
    gateway = await startInProcess(cleanup, {
      upstreams: [
        {
          name: "healthimaging",
          url: `${receiver.url}/datastore/0123456789abcdef0123456789abcdef`,
          credentials: { type: "sigv4", region: "us-east-1", accessKeyId: "AKIDEXAMPLE", secretAccessKey: secret },
          probeIntervalMs: 0,
        },
      ],
    });
    await waitForProbe(gateway.url);
  });

  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });

  it("signs every request so that the same secret gives the same signature", async () => {
    const res = await httpRequest(`${gateway.dicomweb}/studies?PatientID=ABC%5E1&limit=5&includefield=00081030`);
    assert.equal(res.status, 200, reasonOf(res));
    assert.deepEqual(res.json(), []);
    const last = seen.at(-1);
    assert.ok(last?.path.startsWith("/datastore/0123456789abcdef0123456789abcdef/studies?"), last?.path);
    assert.ok(seen.length >= 2, "the probe and the search");
    assert.ok(
      seen.every((s) => s.ok),
      `every request verified with the secret (and not with another): ${JSON.stringify(seen)}`,
    );
  });
});
