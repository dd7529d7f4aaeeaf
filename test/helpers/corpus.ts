/**
 * The real-world corpus the DICOM core is checked on: pydicom's test files (Debian
 * python3-pydicom) and variants made here with DCMTK and GDCM, built once per test process.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PYDICOM_DATA } from "./tools.js";

export const pydicomFiles = (): string[] => {
  const dirs = [join(PYDICOM_DATA, "test_files"), join(PYDICOM_DATA, "charset_files")];
  return dirs.flatMap((d) =>
    readdirSync(d)
      .filter((f) => f.endsWith(".dcm"))
      .sort()
      .map((f) => join(d, f)),
  );
};

export interface Variant {
  path: string;
  /** How it was made, e.g. "dcmconv +tb CT_small.dcm". */
  recipe: string;
}

const RECIPES: Array<{ name: string; source: string; tool: string; args: string[] }> = [
  { name: "CT_implicit", source: "CT_small.dcm", tool: "dcmconv", args: ["+ti"] },
  { name: "CT_bigendian", source: "CT_small.dcm", tool: "dcmconv", args: ["+tb"] },
  { name: "CT_deflated", source: "CT_small.dcm", tool: "dcmconv", args: ["+td"] },
  { name: "CT_undefined_lengths", source: "CT_small.dcm", tool: "dcmconv", args: ["-e"] },
  { name: "CT_group_lengths", source: "CT_small.dcm", tool: "dcmconv", args: ["+g"] },
  { name: "CT_dataset_only", source: "CT_small.dcm", tool: "dcmconv", args: ["-F", "+ti"] },
  { name: "CT_rle", source: "CT_small.dcm", tool: "dcmcrle", args: [] },
  { name: "CT_jpeg_lossless_sv1", source: "CT_small.dcm", tool: "dcmcjpeg", args: ["+e1"] },
  { name: "CT_jpeg_lossless_p14", source: "CT_small.dcm", tool: "dcmcjpeg", args: ["+el"] },
  { name: "CT_jpeg_fragments_nobot", source: "CT_small.dcm", tool: "dcmcjpeg", args: ["+e1", "+fs", "4", "-ot"] },
  { name: "CT_jpegls", source: "CT_small.dcm", tool: "dcmcjpls", args: [] },
  { name: "CT_j2k", source: "CT_small.dcm", tool: "gdcmconv", args: ["--j2k"] },
  { name: "MR_undefined_lengths", source: "MR_small.dcm", tool: "dcmconv", args: ["-e"] },
  { name: "rtplan_undefined_lengths", source: "rtplan.dcm", tool: "dcmconv", args: ["-e"] },
  { name: "rtplan_bigendian", source: "rtplan.dcm", tool: "dcmconv", args: ["+tb"] },
  { name: "rtdose_rle", source: "rtdose.dcm", tool: "dcmcrle", args: [] },
  // Multi-frame, several fragments per frame, with and without a Basic Offset Table ("@name": an earlier variant).
  { name: "rgb2_native", source: "SC_rgb_rle_2frame.dcm", tool: "dcmdrle", args: [] },
  { name: "rgb2_jpeg_fragments_bot", source: "@rgb2_native", tool: "dcmcjpeg", args: ["+e1", "+fs", "1", "+ot"] },
  { name: "rgb2_jpeg_fragments_nobot", source: "@rgb2_native", tool: "dcmcjpeg", args: ["+e1", "+fs", "1", "-ot"] },
  { name: "rgb2_jpegls", source: "@rgb2_native", tool: "dcmcjpls", args: [] },
  { name: "rgb2_j2k", source: "@rgb2_native", tool: "gdcmconv", args: ["--j2k"] },
  { name: "chrX1_implicit", source: "../charset_files/chrX1.dcm", tool: "dcmconv", args: ["+ti"] },
];

let built: { dir: string; variants: Variant[] } | undefined;

/** Makes the DCMTK/GDCM variants (once per process) in a temporary folder. */
export function dcmtkVariants(): Variant[] {
  if (built) return built.variants;
  const dir = mkdtempSync(join(tmpdir(), "voxelgate-variants-"));
  mkdirSync(dir, { recursive: true });
  const variants: Variant[] = [];
  for (const r of RECIPES) {
    const source = r.source.startsWith("@") ? join(dir, `${r.source.slice(1)}.dcm`) : join(PYDICOM_DATA, "test_files", r.source);
    const path = join(dir, `${r.name}.dcm`);
    const args = [...r.args, source, path];
    const result = spawnSync(r.tool, args);
    if (result.status !== 0) {
      throw new Error(`making variant ${r.name} failed: ${r.tool} ${args.join(" ")}: ${result.stderr.toString()}`);
    }
    variants.push({ path, recipe: `${r.tool} ${r.args.join(" ")} ${r.source}` });
  }
  built = { dir, variants };
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return variants;
}
