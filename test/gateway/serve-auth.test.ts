/**
 * `voxelgate serve --oidc-issuer … --oidc-audience …` as a real process: with authentication a
 * non-loopback address may be bound, tokens are checked, and a share token given as `?token=` works
 * but never appears in the logs.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ShareTokens } from "../../src/gateway/share-tokens.js";
import { httpRequest, multipartBody, reasonOf, spawnServer } from "../helpers/archive-harness.js";
import { AUDIENCE, patientInstance, startIssuer, uid } from "./fixtures.js";

test("serve with --oidc-issuer/--oidc-audience binds a non-loopback address, checks tokens, keeps ?token= out of the logs", async (t) => {
  const issuer = await startIssuer();
  t.after(() => issuer.stop());
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-serve-auth-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const data = join(dir, "data");
  // 127.0.0.2 is not in the loopback list of the bind rule: it stands for a remote address here.
  const server = await spawnServer(data, [
    "--host",
    "127.0.0.2",
    "--oidc-issuer",
    issuer.url,
    "--oidc-audience",
    "other",
    "--oidc-audience",
    AUDIENCE,
  ]);
  t.after(() => server.kill());
  assert.match(server.url, /127\.0\.0\.2/);

  assert.equal((await httpRequest(`${server.dicomweb}/studies`)).status, 401);
  const study = uid(7, 1);
  const { body, contentType } = multipartBody([
    patientInstance({ studyUid: study, seriesUid: uid(71, 2), sopUid: uid(711, 3), patientId: "P7" }),
  ]);
  const stored = await httpRequest(`${server.dicomweb}/studies`, {
    method: "POST",
    headers: { authorization: `Bearer ${await issuer.token({ scope: "system/ImagingStudy.c" })}`, "content-type": contentType },
    body,
  });
  assert.equal(stored.status, 200, reasonOf(stored));

  const share = new ShareTokens(join(data, "gateway", "share-token.key")).mint({ studyUid: study, ttlSeconds: 300, issuedBy: "test" });
  const res = await httpRequest(`${server.dicomweb}/studies?StudyInstanceUID=${study}&token=${encodeURIComponent(share.token)}`);
  assert.equal(res.status, 200, reasonOf(res));
  assert.equal((res.json() as unknown[]).length, 1);
  const logged = new RegExp(`StudyInstanceUID=${study.replaceAll(".", "\\.")}`);
  for (let i = 0; i < 50 && !logged.test(server.output()); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(server.output(), logged, "the request was logged");
  assert.doesNotMatch(server.output(), /vgs1\./, "the share token was not");
});
