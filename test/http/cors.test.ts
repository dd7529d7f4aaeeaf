/**
 * CORS and security headers on the real server: allowed and forbidden origins, preflights with
 * Authorization, the credentials rules, headers on multipart and error answers.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, parseConfig } from "../../src/config.js";
import { httpRequest, type HttpResponse, multipartBody, reasonOf, startInProcess, syntheticInstance } from "../helpers/archive-harness.js";

const VIEWER = "http://viewer.example:3000";
const EVIL = "http://evil.example";
const STUDY = "1.2.3.77.1";
const SERIES = "1.2.3.77.2";
const SOP = "1.2.3.77.3";

async function storeOne(dicomweb: string): Promise<void> {
  const { body, contentType } = multipartBody([syntheticInstance({ studyUid: STUDY, seriesUid: SERIES, sopUid: SOP })]);
  const res = await httpRequest(`${dicomweb}/studies`, { method: "POST", headers: { "content-type": contentType }, body });
  assert.equal(res.status, 200, res.text());
}

const noCorsHeaders = (res: HttpResponse, what: string) => {
  for (const name of Object.keys(res.headers)) assert.ok(!name.startsWith("access-control-"), `${what}: unexpected ${name}`);
};

const varyHasOrigin = (res: HttpResponse) => /\borigin\b/i.test(String(res.headers.vary));

test("config: credentials only with explicit origins; origins must be origins", () => {
  assert.throws(
    () => parseConfig({ corsCredentials: true, corsOrigins: ["*"] }),
    (err: Error) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /corsCredentials: .*explicit origins.*not "\*"/);
      return true;
    },
  );
  assert.throws(() => parseConfig({ corsCredentials: true }), /corsCredentials: .*explicit origins/);
  assert.throws(() => parseConfig({ corsOrigins: ["http://localhost:3000/"] }), /corsOrigins\.0: .*no path or trailing slash/);
  assert.throws(() => parseConfig({ corsOrigins: ["localhost:3000"] }), /corsOrigins\.0/);
  const ok = parseConfig({ corsCredentials: true, corsOrigins: [VIEWER], corsMaxAgeSeconds: 60 });
  assert.equal(ok.corsCredentials, true);
});

test("CORS with explicit origins and credentials: preflight with Authorization, exposed headers, multipart and errors, forbidden origins", async (t) => {
  const s = await startInProcess(t, { corsOrigins: [VIEWER], corsCredentials: true, corsMaxAgeSeconds: 1234 });
  await storeOne(s.dicomweb);
  const frames = `${s.dicomweb}/studies/${STUDY}/series/${SERIES}/instances/${SOP}/frames/1`;

  // A preflight like OHIF's for a frame request with a bearer token.
  const pre = await httpRequest(frames, {
    method: "OPTIONS",
    headers: { origin: VIEWER, "access-control-request-method": "GET", "access-control-request-headers": "accept,authorization" },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers["access-control-allow-origin"], VIEWER);
  assert.equal(pre.headers["access-control-allow-credentials"], "true");
  assert.match(String(pre.headers["access-control-allow-methods"]), /\bGET\b/);
  assert.match(String(pre.headers["access-control-allow-headers"]), /\bauthorization\b/i);
  assert.equal(pre.headers["access-control-max-age"], "1234");
  assert.ok(varyHasOrigin(pre));

  // Search: the answer is readable and names what the viewer may read.
  const qido = await httpRequest(`${s.dicomweb}/studies`, { headers: { origin: VIEWER, authorization: "Bearer x" } });
  assert.equal(qido.status, 200);
  assert.equal(qido.headers["access-control-allow-origin"], VIEWER);
  assert.equal(qido.headers["access-control-allow-credentials"], "true");
  const exposed = String(qido.headers["access-control-expose-headers"]).split(/\s*,\s*/);
  for (const h of ["Content-Location", "Content-Range", "ETag", "Warning", "X-Request-Id", "Retry-After", "WWW-Authenticate"]) {
    assert.ok(exposed.includes(h), `${h} is exposed`);
  }
  assert.ok(varyHasOrigin(qido));

  // Metadata sets its own Vary (Accept, Accept-Encoding): Origin is added to it, not lost.
  const meta = await httpRequest(`${s.dicomweb}/studies/${STUDY}/metadata`, { headers: { origin: VIEWER } });
  assert.equal(meta.status, 200);
  assert.match(String(meta.headers.vary), /Accept-Encoding/);
  assert.ok(varyHasOrigin(meta), `Vary: ${String(meta.headers.vary)}`);

  // Multipart answers: frames and a whole study.
  const frame = await httpRequest(frames, { headers: { origin: VIEWER, accept: 'multipart/related; type="application/octet-stream"' } });
  assert.equal(frame.status, 200);
  assert.match(String(frame.headers["content-type"]), /^multipart\/related/);
  assert.equal(frame.headers["access-control-allow-origin"], VIEWER);
  const study = await httpRequest(`${s.dicomweb}/studies/${STUDY}`, {
    headers: { origin: VIEWER, accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
  });
  assert.equal(study.status, 200);
  assert.equal(study.headers["access-control-allow-origin"], VIEWER);

  // Errors: thrown by a route (400, 404) and from the not-found handler, all readable by the viewer.
  for (const url of [`${s.dicomweb}/studies/1.2.3.999/metadata`, `${s.dicomweb}/studies/not-a-uid/metadata`, `${s.url}nothing-here`]) {
    const res = await httpRequest(url, { headers: { origin: VIEWER } });
    assert.ok(res.status === 400 || res.status === 404, `${url}: ${res.status}`);
    assert.equal(res.headers["access-control-allow-origin"], VIEWER, url);
    assert.equal(res.headers["access-control-allow-credentials"], "true", url);
    assert.ok(reasonOf(res).length > 0);
  }

  // A forbidden origin: its preflight is refused with a reason and no CORS headers.
  const evilPre = await httpRequest(frames, {
    method: "OPTIONS",
    headers: { origin: EVIL, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
  });
  assert.equal(evilPre.status, 403);
  assert.match(reasonOf(evilPre), /origin http:\/\/evil\.example is not allowed by CORS.*corsOrigins/);
  noCorsHeaders(evilPre, "forbidden preflight");
  // A simple GET from it is served (the server cannot tell a browser from curl) but without CORS headers, so a browser hides it.
  const evilGet = await httpRequest(`${s.dicomweb}/studies`, { headers: { origin: EVIL } });
  noCorsHeaders(evilGet, "forbidden GET");
  assert.ok(varyHasOrigin(evilGet), "Vary: Origin also on answers without CORS headers (caches)");

  // A method nobody serves.
  const put = await httpRequest(frames, { method: "OPTIONS", headers: { origin: VIEWER, "access-control-request-method": "PUT" } });
  assert.equal(put.status, 403);
  assert.match(reasonOf(put), /method PUT is not served/);
});

test('CORS "*" never sends credentials; CORS off refuses preflights with the flag to use', async (t) => {
  const star = await startInProcess(t, { corsOrigins: ["*"] });
  const res = await httpRequest(`${star.dicomweb}/studies`, { headers: { origin: EVIL } });
  assert.equal(res.headers["access-control-allow-origin"], "*");
  assert.equal(res.headers["access-control-allow-credentials"], undefined);
  const pre = await httpRequest(`${star.dicomweb}/studies`, {
    method: "OPTIONS",
    headers: { origin: EVIL, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers["access-control-allow-origin"], "*");
  assert.equal(pre.headers["access-control-allow-credentials"], undefined);

  const off = await startInProcess(t, { viewer: { enabled: false } }); // the hosted viewer would add its own origins
  const offPre = await httpRequest(`${off.dicomweb}/studies`, {
    method: "OPTIONS",
    headers: { origin: VIEWER, "access-control-request-method": "GET" },
  });
  assert.equal(offPre.status, 403);
  assert.match(reasonOf(offPre), /CORS is off.*--cors-origin http:\/\/viewer\.example:3000/);
  noCorsHeaders(offPre, "CORS off");
  const plainOptions = await httpRequest(`${off.dicomweb}/studies`, { method: "OPTIONS" });
  assert.equal(plainOptions.status, 204, "OPTIONS without Origin is not a preflight");
  assert.match(String(plainOptions.headers.allow), /GET/);
});

test("security headers: strict page CSP on the landing page, API CSP elsewhere, framing, CORP, HSTS only for https", async (t) => {
  const s = await startInProcess(t, { corsOrigins: [VIEWER] });
  const page = await httpRequest(s.url);
  assert.equal(page.status, 200);
  const csp = String(page.headers["content-security-policy"]);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /style-src 'unsafe-inline'/, "the landing page's inline style is allowed");
  assert.doesNotMatch(csp, /script-src/, "no script may run on the landing page");
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(page.headers["x-frame-options"], "DENY");
  assert.equal(page.headers["cross-origin-resource-policy"], "same-site");
  assert.equal(page.headers["strict-transport-security"], undefined, "no HSTS over http");

  const answers = [
    await httpRequest(`${s.dicomweb}/studies`),
    await httpRequest(`${s.dicomweb}/studies/1.2.3.999/metadata`),
    await httpRequest(`${s.url}healthz`),
  ];
  for (const res of answers) {
    assert.equal(res.headers["x-content-type-options"], "nosniff");
    assert.equal(res.headers["referrer-policy"], "no-referrer");
    assert.match(String(res.headers["content-security-policy"]), /^default-src 'none';.*frame-ancestors 'none'$/);
  }
  // DICOMweb answers (data, errors too) get the bare policy.
  assert.equal(answers[0]?.headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
  assert.equal(answers[1]?.headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
  assert.equal(answers[0]?.headers["cross-origin-resource-policy"], "cross-origin", "DICOMweb with CORS origins: other sites may load it");
  assert.equal(answers[2]?.headers["cross-origin-resource-policy"], "same-site");

  const https = await startInProcess(t, {
    publicUrl: "https://pacs.example.org",
    securityHeaders: { frameAncestors: ["https://portal.example.org"], hstsMaxAgeSeconds: 600 },
  });
  const hp = await httpRequest(https.url);
  assert.equal(hp.headers["strict-transport-security"], "max-age=600");
  assert.equal(hp.headers["x-frame-options"], undefined, "framing allowed for the listed portal: CSP frame-ancestors says where");
  assert.match(String(hp.headers["content-security-policy"]), /frame-ancestors https:\/\/portal\.example\.org/);
  const hq = await httpRequest(`${https.dicomweb}/studies`);
  assert.equal(hq.headers["cross-origin-resource-policy"], "same-site", "no CORS origins: same-site");
});
