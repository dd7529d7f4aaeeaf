/**
 * Where the hosted OHIF build is: vendor/ohif/dist of this package, put there by
 * scripts/fetch-ohif.mjs (npm install runs it), or a folder the configuration names.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: this file is src/viewer/ohif-dist.ts, compiled to dist/src/viewer/ohif-dist.js. */
const packageRoot = (): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "package.json"))) return dir;
    dir = dirname(dir);
  }
  return process.cwd();
};

export const DEFAULT_OHIF_DIST = join(packageRoot(), "vendor", "ohif", "dist");

export const FETCH_COMMAND = "npm run viewer:fetch";

export interface OhifBuild {
  /** The folder served, or undefined when there is no OHIF build there. */
  dist?: string;
  /** E.g. "3.13.2" (from the fetch script's marker), or "" when unknown. */
  version: string;
  /** Why there is no build, with what to do (when `dist` is undefined). */
  missing?: string;
}

export function findOhifBuild(configured?: string): OhifBuild {
  const dist = resolve(configured ?? DEFAULT_OHIF_DIST);
  if (!existsSync(join(dist, "index.html"))) {
    const missing = configured
      ? `viewer.dist ${dist} holds no OHIF build (no index.html)`
      : `the OHIF viewer is not installed (no ${dist}): run \`${FETCH_COMMAND}\` in the Voxelgate folder, then restart`;
    return { version: "", missing };
  }
  let version = "";
  try {
    const marker = JSON.parse(readFileSync(join(dist, "..", "installed.json"), "utf8")) as { version?: unknown };
    if (typeof marker.version === "string") version = marker.version;
  } catch {
    // a folder of the operator's own: no marker
  }
  return { dist, version };
}
