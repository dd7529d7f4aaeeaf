/**
 * What `voxelgate import` reads: files, folders (recursively) and .zip files, whose entries are
 * streamed one by one from the zip (never extracted, never held whole in memory; ZIP64 works).
 * Also decides whether an item is DICOM from its first bytes.
 */
import { createReadStream, read, type Stats } from "node:fs";
import { type FileHandle, open, readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Readable } from "node:stream";
import yauzl from "yauzl";
import { firstString, isValidUid, readDicom, Tags } from "../dicom/index.js";

/** One file to import: a file on disk or an entry of a zip. */
export interface ImportItem {
  /** What reports name: the path, or "archive.zip!folder/file.dcm" for a zip entry. */
  name: string;
  /** Last component of the name (to recognise DICOMDIR). */
  baseName: string;
  /** Size in bytes (for a zip entry, its uncompressed size). */
  size: number;
  /** The path when the item is a file on disk. */
  path?: string;
  /** Streams the item's bytes from the start; may be called more than once. */
  open(): Promise<Readable>;
  /** Reads up to `n` bytes from the start. */
  head(n: number): Promise<Buffer>;
  /** Says the item is done with (a zip is closed when all its items are). Call once. */
  release(): void;
}

export type SkipReason = "not-dicom" | "dicomdir" | "nested-zip";

/** What walking the paths yields: an item, or something counted without being read. */
export type Source =
  | { kind: "item"; item: ImportItem }
  | { kind: "failed"; name: string; reason: string }
  | { kind: "skipped"; name: string; why: SkipReason; size: number };

const isZipName = (name: string): boolean => name.toLowerCase().endsWith(".zip");

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case "ENOENT":
      return "no such file or folder";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    default:
      return e.message;
  }
}

function fileItem(path: string, size: number): ImportItem {
  return {
    name: path,
    baseName: basename(path),
    size,
    path,
    open: async () => {
      const stream = createReadStream(path);
      // Report a missing or unreadable file here rather than on the first read.
      await new Promise<void>((resolve, reject) => {
        stream.once("open", () => resolve());
        stream.once("error", reject);
      });
      return stream;
    },
    head: async (n) => {
      const handle = await open(path, "r");
      try {
        const buffer = Buffer.alloc(Math.min(n, size));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
        return buffer.subarray(0, bytesRead);
      } finally {
        await handle.close();
      }
    },
    release: () => {},
  };
}

/** Reads up to `n` bytes from the start of a stream, then stops reading it. */
export async function readHead(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= n) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/**
 * yauzl's reader for a zip on disk, with Node's own file streams. yauzl's built-in one (its vendored
 * fd-slicer, yauzl 3.4) crashes the process when an entry's stream is destroyed while a read of
 * it waits in its queue (`Cannot read properties of null (reading 'fd')`), which happens whenever
 * an import stops reading an entry early: after its first bytes, or when ingest refuses it.
 * Each entry stream opens the file itself: a Node file stream closes its descriptor when
 * destroyed, whatever autoClose says, so it cannot share the zip's.
 */
class ZipFileReader extends yauzl.RandomAccessReader {
  constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {
    super();
  }

  override _readStreamForRange(start: number, end: number): Readable {
    return createReadStream(this.path, { start, end: end - 1 });
  }

  override read(buffer: Buffer, offset: number, length: number, position: number, callback: (err: Error | null) => void): void {
    // yauzl reads the byte count from the callback's second argument to detect a short read.
    read(this.handle.fd, buffer, offset, length, position, callback as (err: Error | null, bytesRead: number) => void);
  }

  override close(callback: (err: Error | null) => void): void {
    this.handle.close().then(() => callback(null), callback);
  }
}

async function openZip(path: string): Promise<yauzl.ZipFile> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    return await yauzl.fromRandomAccessReaderPromise(new ZipFileReader(path, handle), size, { lazyEntries: true, autoClose: false });
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** A zip's entries as items. The zip stays open until its last item is released. */
async function* zipSources(path: string): AsyncGenerator<Source> {
  let zip: yauzl.ZipFile;
  try {
    zip = await openZip(path);
  } catch (err) {
    yield { kind: "failed", name: path, reason: `cannot read the zip: ${describe(err)}` };
    return;
  }
  // One reference for the walk itself, one per item handed out.
  let refs = 1;
  const unref = () => {
    if (--refs === 0) zip.close();
  };
  try {
    for await (const entry of zip.eachEntry()) {
      if (entry.fileName.endsWith("/")) continue;
      const name = `${path}!${entry.fileName}`;
      if (isZipName(entry.fileName)) {
        yield { kind: "skipped", name, why: "nested-zip", size: entry.uncompressedSize };
        continue;
      }
      if (entry.isEncrypted()) {
        yield { kind: "failed", name, reason: "the zip entry is encrypted" };
        continue;
      }
      if (!entry.canDecodeFileData()) {
        yield { kind: "failed", name, reason: `the zip entry uses compression method ${entry.compressionMethod}, which cannot be read` };
        continue;
      }
      refs++;
      let released = false;
      const item: ImportItem = {
        name,
        baseName: entry.fileName.slice(entry.fileName.lastIndexOf("/") + 1),
        size: entry.uncompressedSize,
        open: () => zip.openReadStreamPromise(entry),
        head: async (n) => readHead(await zip.openReadStreamPromise(entry), n),
        release: () => {
          if (released) return;
          released = true;
          unref();
        },
      };
      yield { kind: "item", item };
    }
  } catch (err) {
    yield { kind: "failed", name: path, reason: `the zip is damaged: ${describe(err)}` };
  } finally {
    unref();
  }
}

/**
 * Walks the paths in order: files, folders depth-first in name order, zip entries in zip order.
 * Folders reached twice (through symbolic links) are walked once.
 */
export async function* walkSources(paths: string[]): AsyncGenerator<Source> {
  const seenDirs = new Set<string>();
  async function* walk(path: string): AsyncGenerator<Source> {
    let info: Stats;
    try {
      info = await stat(path);
    } catch (err) {
      yield { kind: "failed", name: path, reason: describe(err) };
      return;
    }
    if (info.isDirectory()) {
      const id = `${info.dev}:${info.ino}`;
      if (seenDirs.has(id)) return;
      seenDirs.add(id);
      let names: string[];
      try {
        names = await readdir(path);
      } catch (err) {
        yield { kind: "failed", name: path, reason: `cannot list the folder: ${describe(err)}` };
        return;
      }
      names.sort();
      for (const name of names) yield* walk(join(path, name));
    } else if (info.isFile()) {
      if (isZipName(path)) yield* zipSources(path);
      else yield { kind: "item", item: fileItem(path, info.size) };
    }
    // Sockets, devices and FIFOs are not files to import: passed over silently.
  }
  for (const path of paths) yield* walk(path);
}

/** How many things the walk will yield, and their bytes: for the progress bar's total. Reads zip directories only. */
export async function countSources(paths: string[]): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for await (const source of walkSources(paths)) {
    count++;
    if (source.kind === "item") {
      bytes += source.item.size;
      source.item.release();
    } else if (source.kind === "skipped") bytes += source.size;
  }
  return { count, bytes };
}

/** Enough of the start of a file to read its header up to (usually well past) the SOP Instance UID. */
export const HEAD_BYTES = 64 * 1024;

const MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10";

/** A file named DICOMDIR is passed over without being read. */
export const isDicomdirName = (baseName: string): boolean => baseName.toUpperCase() === "DICOMDIR";

export type Classification = { kind: "dicom"; sopUid?: string } | { kind: "dicomdir" } | { kind: "not-dicom" };

/**
 * DICOM or not, from the first bytes: "DICM" at offset 128 (or 0), or else a dataset whose header
 * parses and names a valid SOP Class or Instance UID. A DICOMDIR (by name or by its Media Storage
 * SOP Class) is recognised so it can be passed over. A damaged DICOM file is still "dicom": the
 * archive then says what is wrong with it.
 */
export function classify(baseName: string, head: Buffer): Classification {
  if (isDicomdirName(baseName)) return { kind: "dicomdir" };
  const marked = (head.length >= 132 && head.toString("latin1", 128, 132) === "DICM") || head.toString("latin1", 0, 4) === "DICM";
  const read = readDicom(head, { untilTag: Tags.PixelData });
  if (firstString(read.meta, Tags.MediaStorageSOPClassUID) === MEDIA_STORAGE_DIRECTORY) return { kind: "dicomdir" };
  const sopUid = firstString(read.dataset, Tags.SOPInstanceUID) ?? firstString(read.meta, Tags.MediaStorageSOPInstanceUID);
  const validSop = sopUid !== undefined && isValidUid(sopUid);
  if (marked) return validSop ? { kind: "dicom", sopUid } : { kind: "dicom" };
  const sopClass = firstString(read.dataset, Tags.SOPClassUID);
  if (validSop || (sopClass !== undefined && isValidUid(sopClass))) return validSop ? { kind: "dicom", sopUid } : { kind: "dicom" };
  return { kind: "not-dicom" };
}
