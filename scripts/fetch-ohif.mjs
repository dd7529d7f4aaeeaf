#!/usr/bin/env node
/**
 * Puts the prebuilt OHIF viewer (the `dist/` folder of the npm package @ohif/app, pinned below)
 * into vendor/ohif/dist, where `voxelgate serve` hosts it.
 *
 * Why not a normal dependency: @ohif/app's own dependencies are not all installable, and we only
 * need its finished build. So: `npm pack` the exact version (npm's cache and registry settings
 * apply), check the tarball against the pinned integrity, extract `package/dist` with `tar`, and
 * write a marker. Idempotent: a matching marker means nothing to do.
 *
 *   node scripts/fetch-ohif.mjs              (npm run viewer:fetch) — exits 1 on failure
 *   node scripts/fetch-ohif.mjs --optional   (postinstall) — a failure is a warning, exit 0
 *
 * VOXELGATE_SKIP_OHIF=1 skips it (deployments without the hosted viewer).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { constants, gzipSync } from "node:zlib";

export const OHIF_PACKAGE = "@ohif/app";
export const OHIF_VERSION = "3.13.2";
export const OHIF_INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const vendor = join(root, "vendor", "ohif");
const target = join(vendor, "dist");
const marker = join(vendor, "installed.json");
const optional = process.argv.includes("--optional");
/** Bumped when what this script leaves in vendor/ohif changes (e.g. the .gz files). */
const LAYOUT = 2;

function installed() {
  try {
    const m = JSON.parse(readFileSync(marker, "utf8"));
    return m.version === OHIF_VERSION && m.integrity === OHIF_INTEGRITY && m.layout === LAYOUT && existsSync(join(target, "index.html"));
  } catch {
    return false;
  }
}

/** The lines of npm's error output that say what went wrong (no stack frames). */
const summary = (stderr) =>
  (stderr || "")
    .split("\n")
    .filter((line) => line.trim() && !/^\S*\s+at /.test(line.replace(/^npm error/, "")))
    .slice(0, 4)
    .join("\n    ");

function run(command, args, cwd) {
  const r = spawnSync(command, args, { cwd, encoding: "utf8", maxBuffer: 1 << 26 });
  if (r.error) throw new Error(`${command}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${r.status}: ${summary(r.stderr)}`);
  return r.stdout;
}

/**
 * Writes FILE.gz next to each compressible file of the viewer's own code (the app bundle alone is
 * 17 MB, ~4 MB gzipped), once here instead of on every request. The optional onnxruntime and
 * microscopy folders (150 MB, loaded only by tools that need them) are left as they are.
 */
function precompress(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "ort" && entry.name !== "dicom-microscopy-viewer") precompress(path);
    } else if (/\.(js|css|html|json|svg|wasm|map|txt)$/.test(entry.name) && statSync(path).size > 1024) {
      writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: constants.Z_BEST_COMPRESSION }));
    }
  }
}

function fetchOhif() {
  mkdirSync(vendor, { recursive: true });
  const work = mkdtempSync(join(vendor, ".fetch-"));
  try {
    const npm =
      process.env.npm_execpath && process.env.npm_execpath.endsWith(".js") ? [process.execPath, process.env.npm_execpath] : ["npm"];
    const out = run(
      npm[0],
      [...npm.slice(1), "pack", `${OHIF_PACKAGE}@${OHIF_VERSION}`, "--json", "--loglevel=error", "--pack-destination", work],
      work,
    );
    const info = JSON.parse(out.slice(out.indexOf("[")));
    const tarball = join(work, info[0].filename);
    const actual = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
    if (actual !== OHIF_INTEGRITY) throw new Error(`integrity mismatch for ${OHIF_PACKAGE}@${OHIF_VERSION}: got ${actual}`);
    run("tar", ["-xzf", tarball, "-C", work, "package/dist"], work);
    precompress(join(work, "package", "dist"));
    // Swap in whole: a reader never sees half a viewer.
    rmSync(target, { recursive: true, force: true });
    renameSync(join(work, "package", "dist"), target);
    writeFileSync(
      marker,
      JSON.stringify({ package: OHIF_PACKAGE, version: OHIF_VERSION, integrity: OHIF_INTEGRITY, layout: LAYOUT }, null, 2) + "\n",
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.env.VOXELGATE_SKIP_OHIF === "1") {
  console.log("fetch-ohif: VOXELGATE_SKIP_OHIF=1, the hosted viewer is not installed");
} else if (installed()) {
  console.log(`fetch-ohif: OHIF ${OHIF_VERSION} already in vendor/ohif/dist`);
} else {
  try {
    console.log(`fetch-ohif: fetching ${OHIF_PACKAGE}@${OHIF_VERSION} (about 50 MB) into vendor/ohif/dist …`);
    fetchOhif();
    console.log(`fetch-ohif: OHIF ${OHIF_VERSION} installed in vendor/ohif/dist`);
  } catch (err) {
    const message =
      `fetch-ohif: could not install the OHIF viewer: ${err.message}\n` +
      "  Voxelgate works without it; to add the viewer later run: npm run viewer:fetch";
    if (!optional) {
      console.error(message);
      process.exit(1);
    }
    console.warn(`warning: ${message}`);
  }
}
