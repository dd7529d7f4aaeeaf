/**
 * Server configuration: one validated schema. Sources, lowest precedence first: defaults, the
 * JSON config file (`--config`), environment (VOXELGATE_HOST, VOXELGATE_PORT, VOXELGATE_DATA),
 * command-line flags. A bad setting stops the server with the setting's name and what is wrong.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { UpstreamListSchema } from "./gateway/upstream/settings.js";

// ---- Gateway: CORS, security headers, rate limits (src/http/cors.ts, security-headers.ts, src/gateway/rate-limit.ts) ----

/** A browser origin as the Origin header sends it: scheme://host[:port], no path, no trailing slash. */
const corsOrigin = z.string().refine(
  (o) => {
    if (o === "*") return true;
    try {
      return new URL(o).origin === o;
    } catch {
      return false;
    }
  },
  { message: 'each origin must be "*" or scheme://host[:port] with no path or trailing slash, e.g. http://localhost:3000' },
);

/** A token bucket: `rate` requests per second sustained, `burst` at once; `false` turns it off. */
const bucket = (rate: number, burst: number) =>
  z
    .union([z.object({ rate: z.number().positive(), burst: z.number().int().positive() }).strict(), z.literal(false)])
    .default({ rate, burst });

/** Limits of one DICOMweb behaviour: per authenticated principal, and per client IP (every request). */
const behaviourLimits = (perPrincipal: [number, number], perIp: [number, number]) =>
  z.object({ perPrincipal: bucket(...perPrincipal), perIp: bucket(...perIp) }).strict();

/**
 * Defaults that never bother one OHIF user (a 3,000-slice CT fires thousands of frame requests in
 * seconds; a study list opens dozens of thumbnails) but stop a scraper's sustained rate.
 */
export const LimitsSchema = z
  .object({
    /** false: no rate limits, concurrency caps or body limits at all. */
    enabled: z.boolean().default(true),
    search: behaviourLimits([20, 200], [50, 500]).prefault({}),
    retrieve: behaviourLimits([300, 5000], [1000, 10000]).prefault({}),
    render: behaviourLimits([100, 1000], [200, 2000]).prefault({}),
    store: behaviourLimits([100, 1000], [200, 2000])
      .extend({
        /** Largest STOW-RS request body (all parts together); larger → 413. */
        maxRequestBytes: z
          .number()
          .int()
          .positive()
          .default(4 * 1024 * 1024 * 1024),
      })
      .prefault({}),
    delete: behaviourLimits([10, 100], [10, 100]).prefault({}),
    /** Buckets kept per behaviour and key kind; the least recently used is forgotten beyond this. */
    maxTrackedClients: z.number().int().positive().default(10000),
    /** Server-wide caps on heavy work running at once, with a bounded wait queue (then 503 + Retry-After). */
    concurrency: z
      .object({
        /** Study- and series-level instance retrieves (multipart / zip of many files). */
        studyRetrieve: z.number().int().positive().default(4),
        /** Rendered images and thumbnails (decode + encode in the codec pool). */
        render: z.number().int().positive().default(8),
        /** Requests waiting per cap before new ones are refused. */
        queue: z.number().int().nonnegative().default(64),
        /** Longest wait in the queue. */
        queueTimeoutSeconds: z.number().positive().default(30),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type LimitsConfig = z.infer<typeof LimitsSchema>;

/** Response headers every answer carries (src/http/security-headers.ts). */
export const SecurityHeadersSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Origins allowed to frame Voxelgate's pages (CSP frame-ancestors); empty: none (X-Frame-Options: DENY). */
    frameAncestors: z.array(corsOrigin).default([]),
    /** Content-Security-Policy of HTML pages that set none themselves (the landing page); default: a strict one. */
    pageContentSecurityPolicy: z.string().min(1).optional(),
    /** Strict-Transport-Security max-age when publicUrl is https; 0 turns it off. */
    hstsMaxAgeSeconds: z.number().int().nonnegative().default(15552000),
  })
  .strict();

export type SecurityHeadersConfig = z.infer<typeof SecurityHeadersSchema>;

// ---- end gateway block ----
// ---- Gateway identity and authorization (src/gateway; README "Authentication and authorization") ----

/** Signature algorithms a JWT may use: asymmetric only (never `none`, never HS* with a public key set). */
export const JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;

const GrantSchema = z
  .object({
    patientId: z.string().min(1).optional(),
    issuerOfPatientId: z.string().min(1).optional(),
    institutionName: z.string().min(1).optional(),
    studyUids: z.array(z.string().min(1)).optional(),
  })
  .strict();

const AuthSchema = z
  .object({
    /** OAuth 2.0 / OpenID Connect bearer tokens, verified locally against the issuer's published keys. */
    oidc: z
      .object({
        issuer: z.url(),
        /** Accepted `aud` values; a token must name at least one. */
        audiences: z.array(z.string().min(1)).min(1, "give at least one audience (--oidc-audience)"),
        algorithms: z
          .array(z.enum(JWT_ALGORITHMS))
          .min(1)
          .default([...JWT_ALGORITHMS]),
        /** Leeway for exp / nbf / iat against clock drift. */
        clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
        /** Claims (dot paths) whose values are roles; all present ones are joined. */
        rolesClaims: z.array(z.string().min(1)).default(["realm_access.roles", "roles", "groups"]),
        /** Claim holding the SMART launch patient. */
        patientClaim: z.string().min(1).default("patient"),
        /** How often the key set is refreshed in the background; an unknown kid refetches at most every cooldown. */
        jwksRefreshSeconds: z.number().int().positive().default(600),
        jwksCooldownSeconds: z.number().int().min(0).default(30),
      })
      .strict()
      .optional(),
    /** Service accounts: only the SHA-256 (hex) of each key is kept (`voxelgate apikey create` prints an entry). */
    apiKeys: z
      .array(
        z
          .object({
            id: z.string().min(1),
            sha256: z
              .string()
              .regex(/^[0-9a-fA-F]{64}$/, "must be the 64-hex-digit SHA-256 of the key")
              .transform((v) => v.toLowerCase()),
            scopes: z.array(z.string().min(1)),
            roles: z.array(z.string().min(1)).default([]),
          })
          .strict(),
      )
      .default([]),
    /** Scopes of requests without credentials (e.g. ["dicomweb.search"]); none by default once auth is on. */
    anonymousScopes: z.array(z.string().min(1)).default([]),
    /**
     * Rule-based grants. Without rules every scope reaches every study; with rules a principal sees
     * the union of what the rules matching it allow (nothing when none matches).
     */
    rules: z
      .array(
        z
          .object({
            when: z
              .object({
                role: z.string().min(1).optional(),
                subject: z.string().min(1).optional(),
                client: z.string().min(1).optional(),
                scope: z.string().min(1).optional(),
              })
              .strict(),
            allow: z.union([z.literal("all"), GrantSchema]),
          })
          .strict(),
      )
      .default([]),
    /** SMART patient context matches PatientID and, when set, this Issuer of Patient ID. */
    patientIdIssuer: z.string().min(1).optional(),
    /** Signed, expiring links to one study (or series) for report-launched viewers. */
    shareTokens: z
      .object({
        /** HMAC key file (created with a random key when missing; default <data>/gateway/share-token.key). Share it between nodes. */
        secretFile: z.string().min(1).optional(),
        defaultTtlSeconds: z.number().int().positive().default(3600),
        maxTtlSeconds: z
          .number()
          .int()
          .positive()
          .default(7 * 24 * 3600),
        /** Viewer URL template: {origin}, {dicomweb}, {studyUid}, {seriesUid}, {token} are filled in (URL-encoded); query parameters left empty are dropped. */
        viewerUrl: z.string().min(1).default("{origin}/viewer?StudyInstanceUIDs={studyUid}&SeriesInstanceUIDs={seriesUid}&token={token}"),
      })
      .strict()
      .default(() => ({
        defaultTtlSeconds: 3600,
        maxTtlSeconds: 7 * 24 * 3600,
        viewerUrl: "{origin}/viewer?StudyInstanceUIDs={studyUid}&SeriesInstanceUIDs={seriesUid}&token={token}",
      })),
  })
  .strict();

export type AuthConfig = z.infer<typeof AuthSchema>;

/** True when the gateway authenticates callers (an OIDC issuer or API keys): then a remote bind is allowed. */
export const authenticates = (auth: AuthConfig): boolean => auth.oidc !== undefined || auth.apiKeys.length > 0;

/** True when any policy is configured; otherwise every request is allowed (the archive's loopback default). */
export const authEnabled = (auth: AuthConfig): boolean => authenticates(auth) || auth.anonymousScopes.length > 0 || auth.rules.length > 0;

export const ConfigSchema = z
  .object({
    host: z.string().min(1).default("127.0.0.1"),
    port: z.number().int().min(0).max(65535).default(8042),
    /** Data folder of the embedded archive (index + files). */
    data: z.string().min(1).default("voxelgate-data"),
    /** Public URL of this server as clients see it (e.g. https://pacs.example.org); default: the listening address. */
    publicUrl: z.url().optional(),
    /** Path of the DICOMweb root. */
    dicomwebPath: z
      .string()
      .regex(/^\/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$/, "must start with / and not end with /")
      .default("/dicomweb"),
    /** Proxies whose Forwarded / X-Forwarded-* headers are believed: addresses or CIDRs (Fastify trustProxy). */
    trustedProxies: z.array(z.string()).default([]),
    /** Origins allowed by CORS (exact origins, or "*"); empty: CORS off. */
    corsOrigins: z.array(corsOrigin).default([]),
    /** Access-Control-Allow-Credentials (cookies / client certificates); only with explicit corsOrigins, never "*". */
    corsCredentials: z.boolean().default(false),
    /** How long a browser may cache a preflight answer (Chromium caps it at 7200). */
    corsMaxAgeSeconds: z.number().int().nonnegative().default(7200),
    securityHeaders: SecurityHeadersSchema.prefault({}),
    /** Rate limits per behaviour, concurrency caps, request body sizes. */
    limits: LimitsSchema.prefault({}),
    /** DELETE on studies, series and instances. */
    allowDelete: z.boolean().default(false),
    /** What STOW does with a SOP Instance UID already stored with different bytes. */
    duplicatePolicy: z.enum(["reject", "ignore", "overwrite"]).default("reject"),
    /** Largest single instance accepted. */
    maxInstanceBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024 * 1024),
    /** Most results a QIDO query returns; more gives a Warning header. */
    qidoMaxResults: z.number().int().positive().default(1000),
    /** Memory for assembled metadata documents (gzipped). */
    metadataCacheBytes: z
      .number()
      .int()
      .nonnegative()
      .default(256 * 1024 * 1024),
    /** Disk budget of transcoded frames (<data>/cache/native). */
    nativeCacheBytes: z
      .number()
      .int()
      .nonnegative()
      .default(1024 * 1024 * 1024),
    /** Disk budget of rendered images and thumbnails (<data>/cache/rendered). */
    renderedCacheBytes: z
      .number()
      .int()
      .nonnegative()
      .default(512 * 1024 * 1024),
    /** Memory in front of those two disk caches, for the most recently used small entries. */
    pixelMemoryCacheBytes: z
      .number()
      .int()
      .nonnegative()
      .default(64 * 1024 * 1024),
    /**
     * Ingest policy: besides the file as received, make the frames of these modalities in this
     * syntax right after STOW (kept in the native cache), e.g. HTJ2K lossless for progressive viewers.
     */
    pretranscode: z
      .object({
        modalities: z.array(z.string().min(1)).min(1),
        transferSyntax: z.string().default("1.2.840.10008.1.2.4.201"),
      })
      .strict()
      .optional(),
    /** Worker threads for codecs and rendering (default: one per CPU). */
    codecThreads: z.number().int().positive().optional(),
    /**
     * The hosted OHIF viewer (vendor/ohif/dist, fetched by `npm install` / `npm run viewer:fetch`)
     * on a listener of its own, since OHIF expects the web root of its origin. Its origins are
     * added to corsOrigins automatically; its app-config.js points at our DICOMweb root.
     */
    viewer: z
      .object({
        enabled: z.boolean().default(true),
        /** Address to bind; default: the API's `host`. */
        host: z.string().min(1).optional(),
        /** Port, or "auto": the API port + 1 (8043), any free port when the API's is 0. */
        port: z.union([z.number().int().min(0).max(65535), z.literal("auto")]).default("auto"),
        /** The viewer's public URL when a proxy serves it under another name (its origin joins corsOrigins). */
        publicUrl: z.url().optional(),
        /** Serve this OHIF build folder instead of vendor/ohif/dist. */
        dist: z.string().min(1).optional(),
        /** Frames as stored ("*", decoded by OHIF) or transcoded by the server to this transfer syntax UID. */
        transferSyntax: z
          .string()
          .regex(/^\*$|^[0-9]+(\.[0-9]+)*$/, 'must be "*" or a transfer syntax UID')
          .default("*"),
        /** OpenID Connect login in OHIF (code flow + PKCE); OHIF then sends "Authorization: Bearer". */
        oidc: z
          .object({ authority: z.url(), clientId: z.string().min(1), scope: z.string().default("openid profile email") })
          .strict()
          .optional(),
      })
      .strict()
      .prefault({}),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** Serve on a non-loopback address without authentication (the gateway adds authentication). */
    allowUnauthenticatedRemote: z.boolean().default(false),
    auth: AuthSchema.default(() => AuthSchema.parse({})),
    /**
     * Audit of every access to patient data (gateway, issue 7). On by default: JSON lines in
     * <data>/audit/. Add FHIR AuditEvent NDJSON files and DICOM audit messages over syslog
     * (IHE ATNA); a failing sink spools to disk. `false` turns audit off (benchmark comparisons only).
     */
    audit: z
      .union([
        z.literal(false),
        z
          .object({
            /** JSON lines, one file per day (default dir <data>/audit); false: none. */
            jsonl: z.union([z.literal(false), z.object({ dir: z.string().min(1).optional() }).strict()]).default({}),
            /** FHIR R4 AuditEvent (IHE BALP) NDJSON, one file per day (default dir <data>/audit/fhir). */
            fhir: z
              .object({ dir: z.string().min(1).optional() })
              .strict()
              .optional(),
            /** DICOM audit messages (PS3.15 A.5) to syslog receivers (RFC 5424 over UDP or TLS). */
            syslog: z
              .array(
                z
                  .object({
                    transport: z.enum(["udp", "tls"]),
                    host: z.string().min(1),
                    port: z.number().int().min(1).max(65535),
                    /** PEM files: CA of the receiver's certificate; client certificate and key for mutual TLS. */
                    ca: z.string().min(1).optional(),
                    cert: z.string().min(1).optional(),
                    key: z.string().min(1).optional(),
                    appName: z
                      .string()
                      .regex(/^[\x21-\x7e]{1,48}$/, "must be 1 to 48 printable ASCII characters without spaces (RFC 5424 APP-NAME)")
                      .optional(),
                  })
                  .strict()
                  .refine((t) => (t.cert === undefined) === (t.key === undefined), "cert and key go together (mutual TLS)")
                  .refine((t) => t.transport === "tls" || (!t.ca && !t.cert && !t.key), "ca, cert and key apply to transport tls only"),
              )
              .default([]),
            /** Where records a failing sink could not take wait (default <data>/audit/spool). */
            spoolDir: z.string().min(1).optional(),
            /** Disk budget of each sink's spool; beyond it records are dropped (counted, readiness fails). */
            spoolMaxBytes: z
              .number()
              .int()
              .positive()
              .default(1024 * 1024 * 1024),
            /** Longest wait between retries of a failing sink. */
            retryMaxSeconds: z.number().positive().default(30),
            /** AuditSourceID of DICOM messages, observer of FHIR AuditEvents. */
            sourceId: z.string().min(1).optional(),
          })
          .strict(),
      ])
      .default({ jsonl: {}, syslog: [], spoolMaxBytes: 1024 * 1024 * 1024, retryMaxSeconds: 30 }),
    /**
     * Proxy mode (src/gateway/upstream): DICOMweb archives served through this gateway instead of
     * the local archive. The first is the default at `dicomwebPath`; each is also at
     * /upstreams/<name>/dicomweb. Caches reuse metadataCacheBytes, nativeCacheBytes and renderedCacheBytes.
     */
    upstreams: UpstreamListSchema,
  })
  .strict()
  .superRefine((c, ctx) => {
    // Browsers refuse a credentialed response with a wildcard origin: a config that asks for both cannot work.
    if (c.corsCredentials && (c.corsOrigins.length === 0 || c.corsOrigins.includes("*"))) {
      ctx.addIssue({
        code: "custom",
        path: ["corsCredentials"],
        message:
          'true needs explicit origins in corsOrigins (not "*", not empty): browsers refuse credentials with a wildcard origin; list the viewer origins, e.g. ["https://viewer.example.org"]',
      });
    }
  });

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

export class ConfigError extends Error {}

/** Validates a configuration object; the error lists every bad setting by name. */
export function parseConfig(input: unknown, source = "configuration"): Config {
  const result = ConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const where = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    const message =
      issue.code === "unrecognized_keys" ? `unknown setting${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}` : issue.message;
    return `  ${where}: ${message}`;
  });
  throw new ConfigError(`invalid ${source}:\n${problems.join("\n")}`);
}

/** Reads the JSON config file, if any. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error("the file must hold one JSON object");
    return value as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Environment settings (strings converted; a bad number is reported by the schema). */
export function configFromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.VOXELGATE_HOST) out.host = env.VOXELGATE_HOST;
  if (env.VOXELGATE_PORT) out.port = Number(env.VOXELGATE_PORT);
  if (env.VOXELGATE_DATA) out.data = env.VOXELGATE_DATA;
  const oidc: Record<string, unknown> = {};
  if (env.VOXELGATE_OIDC_ISSUER) oidc.issuer = env.VOXELGATE_OIDC_ISSUER;
  if (env.VOXELGATE_OIDC_AUDIENCE)
    oidc.audiences = env.VOXELGATE_OIDC_AUDIENCE.split(",")
      .map((a) => a.trim())
      .filter(Boolean);
  if (Object.keys(oidc).length > 0) out.auth = { oidc };
  return out;
}

/** Merges the sources (later wins) and validates. */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; flags?: Record<string, unknown> }): Config {
  const fromFile = options.file ? readConfigFile(options.file) : {};
  const merged = deepMerge(deepMerge(fromFile, configFromEnv(options.env ?? {})), stripUndefined(options.flags ?? {}));
  return parseConfig(merged, options.file ? `configuration (file ${options.file}, environment and flags)` : "configuration");
}

const stripUndefined = (o: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Later wins; nested objects (e.g. auth.oidc from a flag over the file's auth block) are merged, arrays replaced. */
function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue; // a flag not given leaves the file's setting alone
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k], v) : v;
  }
  return out;
}
