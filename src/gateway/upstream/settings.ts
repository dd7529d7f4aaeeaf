/**
 * Settings of proxy mode (one entry per upstream DICOMweb archive), validated with the rest of the
 * configuration in src/config.ts. Secrets may be given inline or as `{ "env": "NAME" }` so that a
 * config file can be committed without them.
 */
import { z } from "zod";

/** A secret inline, or the name of the environment variable holding it. */
export const Secret = z.union([z.string().min(1), z.object({ env: z.string().min(1) }).strict()]);
export type SecretInput = z.infer<typeof Secret>;

export const UpstreamCredentialsSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("none") }).strict(),
  z.object({ type: z.literal("basic"), username: z.string().min(1), password: Secret }).strict(),
  z.object({ type: z.literal("bearer"), token: Secret }).strict(),
  z
    .object({
      /** OAuth 2.0 client credentials grant (RFC 6749 §4.4). */
      type: z.literal("oauth2"),
      tokenUrl: z.url(),
      clientId: z.string().min(1),
      clientSecret: Secret,
      scope: z.string().optional(),
      audience: z.string().optional(),
      /** How the client authenticates at the token endpoint: HTTP basic (default) or form fields. */
      clientAuth: z.enum(["basic", "post"]).default("basic"),
    })
    .strict(),
  z
    .object({
      /** AWS Signature Version 4 (AWS HealthImaging); keys default to AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_REGION. */
      type: z.literal("sigv4"),
      region: z.string().min(1).optional(),
      service: z.string().min(1).default("medical-imaging"),
      accessKeyId: Secret.optional(),
      secretAccessKey: Secret.optional(),
      sessionToken: Secret.optional(),
    })
    .strict(),
]);
export type UpstreamCredentials = z.infer<typeof UpstreamCredentialsSchema>;

/** What probing finds out; a value here overrides the probe (for an upstream whose quirks are known). */
export const CapabilityOverridesSchema = z
  .object({
    qido: z.boolean(),
    includefieldAll: z.boolean(),
    studyMetadata: z.boolean(),
    rendered: z.boolean(),
    thumbnail: z.boolean(),
    /** Frame media types the upstream produces, e.g. ["application/octet-stream", "image/jls"]. */
    frameMediaTypes: z.array(z.string()),
  })
  .partial()
  .strict();

export const UpstreamSchema = z
  .object({
    /** Name in URLs (/upstreams/<name>/dicomweb), logs and /api/capabilities. */
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "lower-case letters, digits, - and _"),
    /** DICOMweb root of the upstream, e.g. http://orthanc:8042/dicom-web */
    url: z.url(),
    credentials: UpstreamCredentialsSchema.default({ type: "none" }),
    /** Longest wait for the upstream's response headers (a body then streams as long as it takes). */
    timeoutMs: z.number().int().positive().default(30_000),
    /** Extra attempts for idempotent requests after a connection failure or a 502/503/504 (with jittered backoff). */
    retries: z.number().int().min(0).max(5).default(2),
    /** The circuit opens after this many consecutive failures ... */
    breakerFailures: z.number().int().positive().default(5),
    /** ... and lets one request through (half-open) after this long. */
    breakerResetMs: z.number().int().positive().default(15_000),
    /** Probing period of the upstream's capabilities (0: only at start-up). */
    probeIntervalMs: z.number().int().min(0).default(300_000),
    /**
     * Ask for gzip-compressed search and metadata answers: worth it over a WAN, pure cost (both
     * sides' CPU) next door. "auto": only when the upstream is not on a loopback address.
     */
    compressJson: z.union([z.literal("auto"), z.boolean()]).default("auto"),
    /** Metadata younger than this is served from the cache without asking the upstream. */
    metadataMaxAgeSeconds: z.number().int().min(0).default(30),
    capabilities: CapabilityOverridesSchema.default({}),
  })
  .strict();
export type UpstreamSettings = z.infer<typeof UpstreamSchema>;
export type CapabilityOverrides = z.infer<typeof CapabilityOverridesSchema>;

/** The upstream list: names must be unique. */
export const UpstreamListSchema = z
  .array(UpstreamSchema)
  .default([])
  .refine((list) => new Set(list.map((u) => u.name)).size === list.length, "upstream names must be unique");

/** Upstream entries for `--upstream URL` flags: user:password in the URL becomes basic credentials. */
export function upstreamsFromUrls(urls: readonly string[]): Array<Record<string, unknown>> {
  return urls.map((text, i) => {
    const name = `upstream${i + 1}`;
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return { name, url: text };
    }
    const entry: Record<string, unknown> = { name };
    if (url.username) {
      entry.credentials = { type: "basic", username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
      url.username = "";
      url.password = "";
    }
    entry.url = url.href.replace(/\/+$/, "");
    return entry;
  });
}

/** The secret's value; a missing environment variable is an error naming it. */
export function resolveSecret(secret: SecretInput, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof secret === "string") return secret;
  const value = env[secret.env];
  if (value === undefined || value === "") throw new Error(`environment variable ${secret.env} (an upstream secret) is not set`);
  return value;
}
