/**
 * What the gateway tests share: a real OIDC issuer (node:http serving the discovery document and
 * the JWKS, keys made with jose, rotation on demand), token minting, and DICOM instances with
 * the patient attributes grants look at.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";
import { Dataset, TransferSyntaxUids, type Vr, writePart10 } from "../../src/dicom/index.js";

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

export interface SigningKey {
  kid: string;
  alg: string;
  privateKey: PrivateKey;
  publicJwk: JWK;
  publicPem: string;
}

export async function makeKey(kid: string, alg = "RS256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicJwk, publicPem: await exportSPKI(publicKey) };
}

export interface TestIssuer {
  /** Issuer URL (no trailing slash). */
  url: string;
  port: number;
  /** Keys published in the JWKS now. */
  published: SigningKey[];
  /** How many times the JWKS was fetched. */
  jwksFetches: number;
  /** Signs a token with `key` (default: the first published key); claims override the defaults. */
  token(claims?: JWTPayload, options?: { key?: SigningKey; header?: Record<string, unknown> }): Promise<string>;
  stop(): Promise<void>;
  /** Starts again on the same port (after stop). */
  restart(): Promise<void>;
}

export const AUDIENCE = "voxelgate-test";

/** A real issuer on 127.0.0.1: GET /.well-known/openid-configuration and GET /jwks. */
export async function startIssuer(port = 0): Promise<TestIssuer> {
  const first = await makeKey("key-1");
  let server: Server | undefined;
  const issuer: TestIssuer = {
    url: "",
    port: 0,
    published: [first],
    jwksFetches: 0,
    async token(claims = {}, options = {}) {
      const key = options.key ?? (issuer.published[0] as SigningKey);
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ scope: "dicomweb.*", ...claims })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT", ...options.header })
        .setIssuer(typeof claims.iss === "string" ? claims.iss : issuer.url)
        .setAudience(claims.aud ?? AUDIENCE)
        .setSubject(typeof claims.sub === "string" ? claims.sub : "alice")
        .setIssuedAt(typeof claims.iat === "number" ? claims.iat : now)
        .setExpirationTime(typeof claims.exp === "number" ? claims.exp : now + 300)
        .sign(key.privateKey);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (!server) return resolve();
        server.closeAllConnections();
        server.close(() => resolve());
        server = undefined;
      }),
    restart: () => listen(issuer.port),
  };
  const listen = (p: number) =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((req, res) => {
        res.setHeader("content-type", "application/json");
        if (req.url === "/.well-known/openid-configuration") {
          res.end(JSON.stringify({ issuer: issuer.url, jwks_uri: `${issuer.url}/jwks`, id_token_signing_alg_values_supported: ["RS256"] }));
        } else if (req.url === "/jwks") {
          issuer.jwksFetches++;
          res.end(JSON.stringify({ keys: issuer.published.map((k) => k.publicJwk) }));
        } else {
          res.statusCode = 404;
          res.end("{}");
        }
      });
      s.once("error", reject);
      s.listen(p, "127.0.0.1", () => {
        server = s;
        issuer.port = (s.address() as AddressInfo).port;
        issuer.url = `http://127.0.0.1:${issuer.port}`;
        resolve();
      });
    });
  await listen(port);
  return issuer;
}

/** An unsigned token (`alg: none`). */
export function unsignedToken(payload: JWTPayload): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "none", typ: "JWT" })}.${b64(payload)}.`;
}

// ---------------------------------------------------------------------------------------------
// Instances

export interface PatientInstance {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  patientId: string;
  issuerOfPatientId?: string;
  institutionName?: string;
  modality?: string;
}

const padded = (value: string, vr: Vr): Buffer => {
  const b = Buffer.from(value, "latin1");
  return b.length % 2 === 0 ? b : Buffer.concat([b, Buffer.from(vr === "UI" ? "\0" : " ", "latin1")]);
};

const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};

/** A small Secondary Capture instance (8 × 8 pixels) of a given patient. */
export function patientInstance(o: PatientInstance): Buffer {
  const ds = new Dataset(true);
  const put = (tag: number, vr: Vr, bytes: Buffer) => ds.set({ tag, vr, bytes, position: -1 });
  const str = (tag: number, vr: Vr, value: string) => put(tag, vr, padded(value, vr));
  str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.7");
  str(0x00080018, "UI", o.sopUid);
  str(0x00080060, "CS", o.modality ?? "OT");
  if (o.institutionName !== undefined) str(0x00080080, "LO", o.institutionName);
  str(0x00100010, "PN", `PATIENT^${o.patientId}`);
  str(0x00100020, "LO", o.patientId);
  if (o.issuerOfPatientId !== undefined) str(0x00100021, "LO", o.issuerOfPatientId);
  str(0x0020000d, "UI", o.studyUid);
  str(0x0020000e, "UI", o.seriesUid);
  str(0x00200013, "IS", "1");
  put(0x00280002, "US", u16(1));
  str(0x00280004, "CS", "MONOCHROME2");
  put(0x00280010, "US", u16(8));
  put(0x00280011, "US", u16(8));
  put(0x00280100, "US", u16(8));
  put(0x00280101, "US", u16(8));
  put(0x00280102, "US", u16(7));
  put(0x00280103, "US", u16(0));
  put(0x7fe00010, "OB", Buffer.alloc(64, 0x40));
  return writePart10(ds, { transferSyntaxUid: TransferSyntaxUids.ExplicitVRLittleEndian });
}

export const uid = (n: number, level: number): string => `1.2.826.0.1.3680043.10.543.${level}.${n}`;
