/** The scope vocabulary and the policy decisions, as a table (the HTTP tests cover enforcement). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, parseConfig } from "../../src/config.js";
import { decide } from "../../src/gateway/policy.js";
import type { Principal } from "../../src/gateway/request-state.js";
import { parseScope } from "../../src/gateway/scopes.js";

test("scopes map to behaviours: SMART v1/v2 and plain DICOMweb; unknown or query-qualified scopes grant nothing", () => {
  const cases: Array<[string, ReturnType<typeof parseScope>]> = [
    ["dicomweb.search", { behaviours: ["search"], context: "any" }],
    ["dicomweb.*", { behaviours: ["search", "retrieve", "render", "store", "delete"], context: "any" }],
    ["user/ImagingStudy.rs", { behaviours: ["search", "retrieve", "render"], context: "any" }],
    ["patient/ImagingStudy.rs", { behaviours: ["search", "retrieve", "render"], context: "patient" }],
    ["system/ImagingStudy.cruds", { behaviours: ["search", "retrieve", "render", "store", "delete"], context: "any" }],
    ["system/ImagingStudy.c", { behaviours: ["store"], context: "any" }],
    ["user/ImagingStudy.d", { behaviours: ["delete"], context: "any" }],
    ["patient/ImagingStudy.read", { behaviours: ["search", "retrieve", "render"], context: "patient" }],
    ["user/ImagingStudy.write", { behaviours: ["store", "delete"], context: "any" }],
    ["user/*.rs", { behaviours: ["search", "retrieve", "render"], context: "any" }],
    ["user/ImagingStudy.*", { behaviours: ["search", "retrieve", "render", "store", "delete"], context: "any" }],
    ["user/Patient.rs", undefined],
    ["user/ImagingStudy.rs?category=x", undefined],
    ["user/ImagingStudy.sr", undefined],
    ["openid", undefined],
    ["dicomweb.everything", undefined],
  ];
  for (const [scope, expected] of cases) assert.deepEqual(parseScope(scope), expected, scope);
});

test("decisions: patient scopes need the launch patient and narrow the rules; the widest scope wins per behaviour", () => {
  const auth = parseConfig({
    auth: { patientIdIssuer: "SITE-A", rules: [{ when: { role: "a" }, allow: { institutionName: "General" } }] },
  }).auth;
  const p = (scopes: string[], extra: Partial<Principal> = {}): Principal => ({
    kind: "user",
    subject: "u",
    roles: ["a"],
    scopes,
    ...extra,
  });
  assert.equal(decide(auth, p(["patient/ImagingStudy.rs"])).size, 0);
  assert.deepEqual(decide(auth, p(["patient/ImagingStudy.rs"], { patient: "P1" })).get("search"), [
    { institutionName: "General", patientId: "P1", issuerOfPatientId: "SITE-A" },
  ]);
  const mixed = decide(auth, p(["patient/ImagingStudy.rs", "user/ImagingStudy.r", "dicomweb.store"], { patient: "P1" }));
  assert.deepEqual(mixed.get("retrieve"), [{ institutionName: "General" }]);
  assert.deepEqual(mixed.get("store"), [{ institutionName: "General" }]);
  assert.equal(mixed.get("delete"), undefined);
  assert.deepEqual(decide(auth, p(["dicomweb.search"], { roles: [] })).get("search"), [], "no matching rule: nothing");
  const open = parseConfig({}).auth;
  assert.equal(decide(open, p(["dicomweb.read"])).get("render"), "all");
  assert.deepEqual(
    decide(open, p([], { kind: "share-token" }), { studyUid: "1.2", seriesUid: "1.2.3", expiresAt: 0, issuedBy: "u" }).get("retrieve"),
    [{ studyUids: ["1.2"], seriesUids: ["1.2.3"] }],
  );
});

test("config: --oidc-audience from the environment merges with the file's auth block; unknown auth settings are named", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-config-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "config.json");
  writeFileSync(
    file,
    JSON.stringify({
      auth: { anonymousScopes: ["dicomweb.search"], oidc: { issuer: "https://file.example", audiences: ["x"], clockToleranceSeconds: 5 } },
    }),
  );
  const config = loadConfig({
    file,
    env: { VOXELGATE_OIDC_ISSUER: "https://idp.example/realms/r", VOXELGATE_OIDC_AUDIENCE: "viewer, api" },
    flags: { auth: { oidc: { audiences: ["cli"] } } },
  });
  assert.equal(config.auth.oidc?.issuer, "https://idp.example/realms/r");
  assert.deepEqual(config.auth.oidc?.audiences, ["cli"]);
  assert.equal(config.auth.oidc?.clockToleranceSeconds, 5);
  assert.deepEqual(config.auth.anonymousScopes, ["dicomweb.search"]);
  assert.throws(() => parseConfig({ auth: { oidc: { issuer: "https://idp.example", audiences: [] } } }), /auth.oidc.audiences/);
  assert.throws(() => parseConfig({ auth: { apiKeys: [{ id: "x", sha256: "abc", scopes: [] }] } }), /auth.apiKeys.0.sha256/);
  assert.throws(
    () => parseConfig({ auth: { oidc: { issuer: "https://idp.example", audiences: ["a"], algorithms: ["HS256"] } } }),
    /algorithms/,
  );
  assert.throws(() => parseConfig({ auth: { anonymous: [] } }), /unknown setting anonymous/);
});
