/** `voxelgate dump FILE…`: prints each file as DICOM JSON (or PS3.19 XML with --xml). */
import { readFile } from "node:fs/promises";
import { datasetToJson, datasetToXml, readDicom, thresholdBulkDataPolicy } from "../dicom/index.js";

export interface DumpOptions {
  xml?: boolean;
  /** Binary values above this many bytes are shown as a BulkDataURI pointing into the file. */
  bulkThreshold?: number;
}

/** Returns the process exit code: 0 when every file was read completely. */
export async function dumpFiles(
  files: string[],
  options: DumpOptions,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  let status = 0;
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (e) {
      err.write(`${file}: cannot read: ${(e as Error).message}\n`);
      status = 1;
      continue;
    }
    const result = readDicom(bytes);
    for (const w of result.warnings) err.write(`${file}: warning: ${w}\n`);
    const threshold = options.bulkThreshold ?? 1024;
    // A URI a person can act on: the file and the byte range of the value in it.
    const bulkData = thresholdBulkDataPolicy(threshold, (c) => `file://${file}#offset=${c.element.position},length=${c.length}`);
    const json = datasetToJson(result.dataset, { bulkData });
    out.write(options.xml ? datasetToXml(json) : `${JSON.stringify(json, null, 2)}\n`);
    if (result.error) {
      err.write(`${file}: error: ${result.error.message} [${result.error.code}]; the output above holds what was read before it\n`);
      status = 1;
    }
  }
  return status;
}
