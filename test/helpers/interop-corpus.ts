/**
 * The interop data set (test/fixtures/interop_corpus.py): pydicom's test files in several
 * transfer syntaxes and character sets plus generated studies with distinct patients, dates,
 * modalities and accession numbers; and what pydicom finds in each file
 * (test/fixtures/interop_oracle.py). Both need TOOLS.pydicom.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PYTHON } from "./tools.js";

export interface CorpusFile {
  file: string;
  /** The pydicom file it comes from, or "generated". */
  source: string;
  sop: string;
  series: string;
  study: string;
  transferSyntax: string;
  frames: number;
}

export interface OracleEntry {
  sop: string;
  series: string;
  study: string;
  transferSyntax: string;
  native: boolean;
  bigEndian: boolean;
  /** SHA-1 of each frame: native little-endian bytes, or the compressed bitstream. */
  frames: string[];
  /** SHA-1 of the whole Pixel Data value, for native little-endian files. */
  pixelData: string | null;
  /** SHA-1 of each top-level binary value other than Pixel Data (explicit VR little endian files). */
  bulk: Record<string, string>;
}

const fixture = (name: string): string => new URL(`../../../test/fixtures/${name}`, import.meta.url).pathname;

function python(script: string, args: string[]): string {
  const r = spawnSync(PYTHON, [fixture(script), ...args], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** Writes the data set into a new temporary folder, removed by `after`. */
export function makeInteropCorpus(after: (fn: () => void) => void): CorpusFile[] {
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-interop-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return JSON.parse(python("interop_corpus.py", [dir])) as CorpusFile[];
}

/** pydicom's view of each file, by path. */
export function pydicomOracle(files: string[]): Record<string, OracleEntry> {
  return JSON.parse(python("interop_oracle.py", files)) as Record<string, OracleEntry>;
}
