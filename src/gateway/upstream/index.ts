/**
 * Proxy mode: the configured upstreams, their capabilities report (/api/capabilities) and
 * readiness (/readyz). The first upstream is the default one.
 */
import { join } from "node:path";
import type { CircuitStatus } from "./breaker.js";
import type { Capabilities } from "./probe.js";
import type { UpstreamSettings } from "./settings.js";
import { Upstream, type UpstreamOptions } from "./upstream.js";

export { Upstream } from "./upstream.js";
export { UpstreamError } from "./client.js";
export type { Capabilities } from "./probe.js";

/** Each upstream's options; `cacheDir` holds one folder per upstream. */
export interface UpstreamSetOptions extends Omit<UpstreamOptions, "settings"> {
  upstreams: readonly UpstreamSettings[];
}

export interface UpstreamReport {
  name: string;
  default: boolean;
  /** The upstream's DICOMweb root (never its credentials). */
  url: string;
  /** Where the gateway serves it, below its own origin. */
  paths: string[];
  credentials: string;
  circuit: CircuitStatus;
  capabilities: Capabilities;
  /** What the gateway makes itself because the upstream does not. */
  filledLocally: string[];
}

export class UpstreamSet {
  readonly all: Upstream[];

  constructor(options: UpstreamSetOptions) {
    const n = options.upstreams.length;
    this.all = options.upstreams.map(
      (settings) =>
        new Upstream({
          settings,
          pool: options.pool,
          cacheDir: join(options.cacheDir, settings.name),
          // Several upstreams share the budgets.
          metadataCacheBytes: Math.floor(options.metadataCacheBytes / n),
          nativeCacheBytes: Math.floor(options.nativeCacheBytes / n),
          renderedCacheBytes: Math.floor(options.renderedCacheBytes / n),
          env: options.env,
          onLookup: options.onLookup,
          log: options.log,
        }),
    );
  }

  start(): void {
    for (const u of this.all) u.start();
  }

  stop(): void {
    for (const u of this.all) u.stop();
  }

  report(pathsOf: (u: Upstream, index: number) => string[]): UpstreamReport[] {
    return this.all.map((u, i) => {
      const caps = u.capabilities;
      const filled: string[] = [];
      if (caps.includefieldAll === false) filled.push("includefield=all (instance level)");
      if (caps.studyMetadata === false) filled.push("study-level metadata");
      if (caps.rendered === false) filled.push("rendered (instance and frame level)");
      if (caps.thumbnail === false) filled.push("thumbnail");
      const frameTypes = ["application/octet-stream", "image/jpeg", "image/jls", "image/jp2", "image/jphc", "image/dicom-rle"];
      const missing = caps.frameMediaTypes === null ? [] : frameTypes.filter((t) => !caps.frameMediaTypes?.includes(t));
      if (missing.length > 0) filled.push(`frames as ${missing.join(", ")} (transcoded from the frames as stored)`);
      return {
        name: u.name,
        default: i === 0,
        url: `${u.client.root.origin}${u.client.root.pathname}`,
        paths: pathsOf(u, i),
        credentials: u.client.settings.credentials.type,
        circuit: u.client.status(),
        capabilities: caps,
        filledLocally: filled,
      };
    });
  }

  /** /readyz checks: "ok" while an upstream's circuit is closed, else why not. */
  readiness(): Record<string, string> {
    const checks: Record<string, string> = {};
    for (const u of this.all) {
      const s = u.client.status();
      checks[`upstream ${u.name}`] =
        s.state === "closed"
          ? "ok"
          : `circuit ${s.state} after ${s.consecutiveFailures} failures (${s.lastError ?? "?"}); cached data is still served`;
    }
    return checks;
  }
}
