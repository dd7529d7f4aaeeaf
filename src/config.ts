/**
 * Server configuration: one validated schema. Sources, lowest precedence first: defaults, the
 * JSON config file (`--config`), environment (VOXELGATE_HOST, VOXELGATE_PORT, VOXELGATE_DATA),
 * command-line flags. A bad setting stops the server with the setting's name and what is wrong.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";

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
    corsOrigins: z.array(z.string()).default([]),
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
  })
  .strict();

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
  return out;
}

/** Merges the sources (later wins) and validates. */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; flags?: Record<string, unknown> }): Config {
  const fromFile = options.file ? readConfigFile(options.file) : {};
  const merged = mergeSettings(mergeSettings(fromFile, configFromEnv(options.env ?? {})), stripUndefined(options.flags ?? {}));
  return parseConfig(merged, options.file ? `configuration (file ${options.file}, environment and flags)` : "configuration");
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** `over` wins; setting groups such as `viewer` are merged key by key (a flag changes one key, not the group). */
function mergeSettings(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const had = out[key];
    out[key] = isPlainObject(had) && isPlainObject(value) ? { ...had, ...stripUndefined(value) } : value;
  }
  return out;
}

const stripUndefined = (o: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
