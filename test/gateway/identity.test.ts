/**
 * Identity against a real OIDC issuer started here (discovery + JWKS over HTTP, keys made with
 * jose): every bad token is refused with 401 and a reason, API keys, scopes per behaviour (403),
 * key rotation, and an issuer that is down (reported, retried, cached keys keep working).
 */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { SignJWT } from "jose";
import { createApiKey } from "../../src/gateway/api-keys.js";
import { InvalidToken, OidcVerifier } from "../../src/gateway/oidc.js";
import { httpRequest, type InProcessServer, reasonOf, startInProcess } from "../helpers/archive-harness.js";
import { AUDIENCE, makeKey, patientInstance, startIssuer, type TestIssuer, uid, unsignedToken } from "./fixtures.js";

const search = (s: InProcessServer, headers: Record<string, string> = {}) => httpRequest(`${s.dicomweb}/studies`, { headers });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const challengeOf = (res: { headers: Record<string, unknown> }): string => String(res.headers["www-authenticate"] ?? "");

describe("OIDC bearer tokens, API keys and scopes", () => {
  let issuer: TestIssuer;
  let server: InProcessServer;
  const robot = createApiKey("robot", ["dicomweb.search"]);
  const now = () => Math.floor(Date.now() / 1000);
  const study = uid(1, 1);
  const cleanups: Array<() => unknown> = [];

  before(async () => {
    issuer = await startIssuer();
    server = await startInProcess(
      { after: (fn) => cleanups.push(fn) },
      {
        auth: {
          oidc: { issuer: issuer.url, audiences: ["other-app", AUDIENCE], jwksCooldownSeconds: 0 },
          apiKeys: [robot.entry],
        },
      },
    );
    const r = await server.archive.ingestStream(
      Readable.from([patientInstance({ studyUid: study, seriesUid: uid(1, 2), sopUid: uid(1, 3), patientId: "P1" })]),
    );
    assert.ok(r.ok);
  });
  after(async () => {
    for (const fn of cleanups) await fn();
    await issuer.stop();
  });

  test("no credentials: 401 with a Bearer challenge and what to send", async () => {
    const res = await search(server);
    assert.equal(res.status, 401);
    assert.equal(challengeOf(res), 'Bearer realm="voxelgate"');
    assert.match(reasonOf(res), /Authorization: Bearer/);
  });

  test("a valid token searches; the study is there", async () => {
    const res = await search(server, bearer(await issuer.token()));
    assert.equal(res.status, 200, reasonOf(res));
    assert.equal((res.json() as unknown[]).length, 1);
  });

  const refused: Array<[string, () => Promise<string>, RegExp]> = [
    ["expired", () => issuer.token({ exp: now() - 3600, iat: now() - 7200 }), /expired at \d{4}-\d\d-\d\dT/],
    ["not yet valid (nbf in the future)", () => issuer.token({ nbf: now() + 3600 }), /not valid before/],
    ["wrong audience", () => issuer.token({ aud: "someone-else" }), /audience "someone-else" is not accepted.*voxelgate-test/],
    ["wrong issuer", () => issuer.token({ iss: "https://evil.example" }), /issuer "https:\/\/evil.example" is not trusted/],
    [
      "alg none",
      async () => unsignedToken({ iss: issuer.url, aud: AUDIENCE, sub: "mallory", exp: now() + 300, scope: "dicomweb.*" }),
      /algorithm none is not allowed/,
    ],
    [
      "HS256 signed with the issuer's public key",
      async () =>
        new SignJWT({ scope: "dicomweb.*" })
          .setProtectedHeader({ alg: "HS256", kid: "key-1" })
          .setIssuer(issuer.url)
          .setAudience(AUDIENCE)
          .setSubject("mallory")
          .setExpirationTime(now() + 300)
          .sign(Buffer.from((issuer.published[0] as { publicPem: string }).publicPem)),
      /algorithm HS256 is not allowed/,
    ],
    [
      "tampered payload (scope escalated after signing)",
      async () => {
        const [h, p, s] = (await issuer.token({ scope: "dicomweb.search" })).split(".");
        const claims = JSON.parse(Buffer.from(p ?? "", "base64url").toString()) as Record<string, unknown>;
        claims.scope = "dicomweb.*";
        return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
      },
      /signature does not verify/,
    ],
    ["signed by a key the issuer never published", async () => issuer.token({}, { key: await makeKey("rogue") }), /unknown key/],
  ];
  for (const [name, make, reason] of refused) {
    test(`refused: ${name} → 401 invalid_token with the reason`, async () => {
      const res = await search(server, bearer(await make()));
      assert.equal(res.status, 401, reasonOf(res));
      assert.match(challengeOf(res), /^Bearer realm="voxelgate", error="invalid_token", error_description="/);
      assert.match(reasonOf(res), reason);
    });
  }

  test("a scope for one behaviour does not open another: 403 insufficient_scope naming the scopes", async () => {
    const token = await issuer.token({ scope: "dicomweb.search" });
    assert.equal((await search(server, bearer(token))).status, 200);
    const res = await httpRequest(`${server.dicomweb}/studies/${study}/metadata`, { headers: bearer(token) });
    assert.equal(res.status, 403);
    assert.match(challengeOf(res), /error="insufficient_scope".*scope="dicomweb.retrieve user\/ImagingStudy.rs/);
    assert.match(reasonOf(res), /needs one of the scopes dicomweb.retrieve/);
    // SMART read scopes do not store.
    const stow = await httpRequest(`${server.dicomweb}/studies`, {
      method: "POST",
      headers: { ...bearer(await issuer.token({ scope: "user/ImagingStudy.rs" })), "content-type": "application/dicom" },
      body: patientInstance({ studyUid: uid(9, 1), seriesUid: uid(9, 2), sopUid: uid(9, 3), patientId: "P9" }),
    });
    assert.equal(stow.status, 403, reasonOf(stow));
  });

  test("patient/ scopes without a patient launch context grant nothing", async () => {
    const res = await search(server, bearer(await issuer.token({ scope: "patient/ImagingStudy.rs" })));
    assert.equal(res.status, 403);
    assert.match(reasonOf(res), /patient launch context/);
  });

  test("API keys: ApiKey scheme and X-Api-Key header; unknown key 401; its scopes apply", async () => {
    assert.equal((await search(server, { authorization: `ApiKey ${robot.key}` })).status, 200);
    assert.equal((await search(server, { "x-api-key": robot.key })).status, 200);
    const wrong = await search(server, { "x-api-key": `${robot.key}x` });
    assert.equal(wrong.status, 401);
    assert.match(reasonOf(wrong), /API key is not known/);
    const retrieve = await httpRequest(`${server.dicomweb}/studies/${study}/metadata`, { headers: { "x-api-key": robot.key } });
    assert.equal(retrieve.status, 403);
  });

  test("an unknown Authorization scheme is refused with what to use; health stays open", async () => {
    const res = await search(server, { authorization: "Basic YWxpY2U6c2VjcmV0" });
    assert.equal(res.status, 401);
    assert.match(reasonOf(res), /"Bearer <token>".*"ApiKey <key>"/);
    assert.equal((await httpRequest(`${server.url}healthz`, { headers: { authorization: "Bearer garbage" } })).status, 200);
    const ready = await httpRequest(`${server.url}readyz`);
    assert.equal(ready.status, 200);
    assert.equal((ready.json() as { checks: Record<string, string> }).checks.oidc, "ok");
  });

  test("a token verified once is remembered only as itself and only until it expires", async () => {
    const token = await issuer.token({ exp: now() + 2 });
    for (let i = 0; i < 2; i++) assert.equal((await search(server, bearer(token))).status, 200);
    // The same claims with one signature character changed: the remembered token must not cover it.
    const [head, body, sig] = token.split(".") as [string, string, string];
    const flipped = `${head}.${body}.${sig.startsWith("A") ? "B" : "A"}${sig.slice(1)}`;
    const tampered = await search(server, bearer(flipped));
    assert.equal(tampered.status, 401);
    assert.match(reasonOf(tampered), /signature does not verify|malformed/);
  });

  test("a remembered token is refused once it expires", async () => {
    const verifier = new OidcVerifier({
      issuer: issuer.url,
      audiences: [AUDIENCE],
      algorithms: ["RS256"],
      clockToleranceSeconds: 0,
      rolesClaims: ["roles"],
      patientClaim: "patient",
      jwksRefreshSeconds: 600,
      jwksCooldownSeconds: 0,
    });
    try {
      const token = await issuer.token({ exp: now() + 1 });
      assert.equal((await verifier.verify(token)).subject, "alice");
      assert.equal((await verifier.verify(token)).subject, "alice", "verified again from memory");
      await new Promise((resolve) => setTimeout(resolve, 2100));
      await assert.rejects(verifier.verify(token), (err: Error) => err instanceof InvalidToken && /expired/.test(err.message));
    } finally {
      verifier.close();
    }
  });

  test("key rotation: the issuer switches keys; a token with the new kid is accepted after a refetch", async () => {
    const fetchesBefore = issuer.jwksFetches;
    const next = await makeKey("key-2");
    issuer.published = [next];
    const res = await search(server, bearer(await issuer.token({}, { key: next })));
    assert.equal(res.status, 200, reasonOf(res));
    assert.ok(issuer.jwksFetches > fetchesBefore, "the key set was fetched again for the unknown kid");
  });
});

describe("an issuer that is down", () => {
  test("is reported by /readyz and retried; cached keys keep verifying when it goes down again", async (t) => {
    const issuer = await startIssuer();
    await issuer.stop();
    const server = await startInProcess(t, { auth: { oidc: { issuer: issuer.url, audiences: [AUDIENCE] } } });
    const down = await httpRequest(`${server.url}readyz`);
    assert.equal(down.status, 503);
    assert.match((down.json() as { checks: Record<string, string> }).checks.oidc ?? "", /OIDC discovery at .* failed/);
    const token = await issuer.token();
    const unavailable = await search(server, bearer(token));
    assert.equal(unavailable.status, 503);
    assert.match(reasonOf(unavailable), /identity provider cannot be reached/);

    await issuer.restart();
    let ready = 0;
    for (let i = 0; i < 100 && ready !== 200; i++) {
      await new Promise((r) => setTimeout(r, 200));
      ready = (await httpRequest(`${server.url}readyz`)).status;
    }
    assert.equal(ready, 200, "ready once the issuer answers");
    assert.equal((await search(server, bearer(token))).status, 200);

    await issuer.stop();
    assert.equal((await search(server, bearer(await issuer.token()))).status, 200, "a token signed by a cached key still verifies");
  });
});
