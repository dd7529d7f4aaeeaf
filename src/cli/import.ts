/**
 * `voxelgate import PATH…`: imports files, folders and zips into a data folder (through the
 * Archive) or into a running server (STOW-RS), with a progress bar and a summary.
 */
import { resolve } from "node:path";
import cliProgress from "cli-progress";
import type { Archive } from "../store/archive.js";
import { openArchive } from "../store/file-archive.js";
import { FailureReason, type IngestResult } from "../store/ingest-result.js";
import {
  classify,
  countSources,
  HEAD_BYTES,
  isDicomdirName,
  type ImportItem,
  type SkipReason,
  type Source,
  walkSources,
} from "./import-sources.js";
import { type BatchFile, type Outcome, sendBatch } from "./import-stow.js";

export interface ImportOptions {
  paths: string[];
  /** Data folder for a direct import. */
  dataDir?: string;
  /** DICOMweb root of a running server: import by STOW-RS instead. */
  url?: string;
  /** Files (direct) or requests (STOW) in flight at once. */
  parallel: number;
  quiet?: boolean;
  /** A STOW request carries at most this many files… */
  batchFiles?: number;
  /** …and about this many bytes (a single larger file goes alone). */
  batchBytes?: number;
}

export interface ImportIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream | NodeJS.WritableStream;
}

export const DEFAULT_DATA_DIR = "./voxelgate-data";
const MB = 1024 * 1024;
/** Without a terminal, a progress line this often. */
const PROGRESS_LINE_MS = 5000;
/** Names listed under each failure reason in the summary. */
const NAMES_PER_REASON = 10;

class Tally {
  stored = 0;
  overwritten = 0;
  identical = 0;
  ignored = 0;
  rejected = 0;
  failed = 0;
  readonly skipped: Record<SkipReason, number> = { "not-dicom": 0, dicomdir: 0, "nested-zip": 0 };
  readonly failures = new Map<string, string[]>();
  filesDone = 0;
  bytesDone = 0;

  outcome(name: string, outcome: Outcome): void {
    if (outcome.kind === "failed") {
      this.failed++;
      const names = this.failures.get(outcome.reason) ?? [];
      names.push(name);
      this.failures.set(outcome.reason, names);
    } else this[outcome.kind]++;
  }

  skip(why: SkipReason): void {
    this.skipped[why]++;
  }
}

function outcomeOf(result: IngestResult): Outcome {
  if (result.ok) return { kind: result.status };
  if (result.failureReason === FailureReason.duplicateSopInstance) return { kind: "rejected" };
  return { kind: "failed", reason: result.reason };
}

const formatMb = (bytes: number): string => (bytes / MB).toFixed(1);

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A progress bar on a terminal, a line every few seconds otherwise, nothing when quiet. */
class Progress {
  private readonly started = Date.now();
  private bar?: cliProgress.SingleBar;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly tally: Tally,
    private readonly total: { count: number; bytes: number },
    private readonly stderr: ImportIo["stderr"],
    quiet: boolean,
  ) {
    if (quiet) return;
    if ((stderr as NodeJS.WriteStream).isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: stderr as NodeJS.WriteStream,
          format: "importing [{bar}] {percentage}% | {files}/{totalFiles} files | {speed} MB/s | ETA {eta_formatted}",
          hideCursor: true,
          etaBuffer: 50,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(Math.max(1, total.bytes), 0, this.payload());
    } else {
      this.timer = setInterval(() => this.line(), PROGRESS_LINE_MS);
      this.timer.unref();
    }
  }

  private speed(): number {
    const seconds = (Date.now() - this.started) / 1000;
    return seconds > 0 ? this.tally.bytesDone / MB / seconds : 0;
  }

  private payload() {
    return { files: this.tally.filesDone, totalFiles: this.total.count, speed: this.speed().toFixed(1) };
  }

  private line(): void {
    const speed = this.speed();
    const left = this.total.bytes - this.tally.bytesDone;
    const eta = speed > 0 ? formatDuration(left / MB / speed) : "?";
    this.stderr.write(
      `import: ${this.tally.filesDone}/${this.total.count} files, ${formatMb(this.tally.bytesDone)}/${formatMb(this.total.bytes)} MB, ${speed.toFixed(1)} MB/s, ETA ${eta}\n`,
    );
  }

  update(): void {
    this.bar?.update(Math.min(this.tally.bytesDone, Math.max(1, this.total.bytes)), this.payload());
  }

  stop(): void {
    if (this.bar) {
      this.update();
      this.bar.stop();
    }
    if (this.timer) clearInterval(this.timer);
  }
}

/** Pulls sources one at a time for any number of workers; counts what is not an item at once. */
class Feed {
  private readonly sources: AsyncGenerator<Source>;
  stopped = false;

  constructor(
    paths: string[],
    private readonly tally: Tally,
    private readonly progress: Progress,
  ) {
    this.sources = walkSources(paths);
  }

  /** The next item to import, or undefined when there are none left. */
  async next(): Promise<ImportItem | undefined> {
    while (!this.stopped) {
      const r = await this.sources.next();
      if (r.done) return undefined;
      const source = r.value;
      if (source.kind === "item") return source.item;
      if (source.kind === "failed") {
        this.tally.outcome(source.name, { kind: "failed", reason: source.reason });
        this.done(0);
      } else {
        this.tally.skip(source.why);
        this.done(source.size);
      }
    }
    return undefined;
  }

  /** Reads the item's first bytes: the DICOM files to send on, the others counted here. */
  async classify(item: ImportItem): Promise<BatchFile | undefined> {
    let head: Buffer;
    try {
      head = isDicomdirName(item.baseName) ? Buffer.alloc(0) : await item.head(HEAD_BYTES);
    } catch (err) {
      this.finish(item, { kind: "failed", reason: `cannot read the file: ${(err as Error).message}` });
      return undefined;
    }
    const kind = classify(item.baseName, head);
    if (kind.kind === "dicom") return { item, sopUid: kind.sopUid };
    this.tally.skip(kind.kind);
    item.release();
    this.done(item.size);
    return undefined;
  }

  /** Records what became of an item. */
  finish(item: ImportItem, outcome: Outcome): void {
    this.tally.outcome(item.name, outcome);
    item.release();
    this.done(item.size);
  }

  private done(bytes: number): void {
    this.tally.filesDone++;
    this.tally.bytesDone += bytes;
    this.progress.update();
  }

  async close(): Promise<void> {
    this.stopped = true;
    await this.sources.return(undefined);
  }
}

async function importDirect(feed: Feed, archive: Archive, parallel: number): Promise<void> {
  const worker = async () => {
    for (let item = await feed.next(); item; item = await feed.next()) {
      const file = await feed.classify(item);
      if (!file) continue;
      let result: IngestResult;
      try {
        result = item.path !== undefined ? await archive.ingestFile(item.path) : await archive.ingestStream(await item.open());
      } catch (err) {
        feed.finish(item, { kind: "failed", reason: `cannot read the file: ${(err as Error).message}` });
        continue;
      }
      feed.finish(item, outcomeOf(result));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

async function importStow(
  feed: Feed,
  url: string,
  parallel: number,
  batchFiles: number,
  batchBytes: number,
  tally: Tally,
  progress: Progress,
) {
  const worker = async () => {
    let carry: BatchFile | undefined;
    for (;;) {
      const batch: BatchFile[] = carry ? [carry] : [];
      let bytes = carry?.item.size ?? 0;
      carry = undefined;
      while (batch.length < batchFiles && bytes < batchBytes) {
        const item = await feed.next();
        if (!item) break;
        const file = await feed.classify(item);
        if (!file) continue;
        if (batch.length > 0 && bytes + item.size > batchBytes) {
          carry = file;
          break;
        }
        batch.push(file);
        bytes += item.size;
      }
      if (batch.length === 0) return;
      // Bytes count as they are sent; then each file counts its size once, whether sent once, twice or not at all.
      let sent = 0;
      let sending = true;
      const outcomes = await sendBatch(batch, {
        url,
        onBytes: (n) => {
          if (!sending) return;
          sent += n;
          tally.bytesDone += n;
          progress.update();
        },
      });
      sending = false;
      tally.bytesDone -= sent;
      batch.forEach((f, i) => feed.finish(f.item, outcomes[i] ?? { kind: "failed", reason: "no outcome" }));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

function summary(tally: Tally, target: string, seconds: number, interrupted: boolean): string {
  const lines: string[] = [];
  const rate = seconds > 0 ? `, ${(tally.bytesDone / MB / seconds).toFixed(1)} MB/s` : "";
  const what = `${tally.filesDone} files (${formatMb(tally.bytesDone)} MB) in ${seconds.toFixed(1)} s${rate}`;
  lines.push(`${interrupted ? "Interrupted after" : "Processed"} ${what}, into ${target}`);
  const row = (label: string, n: number) => lines.push(`  ${`${label}:`.padEnd(28)}${String(n).padStart(8)}`);
  row("stored", tally.stored);
  if (tally.overwritten > 0) row("overwritten", tally.overwritten);
  row("identical duplicates", tally.identical);
  row("duplicates rejected", tally.rejected);
  row("duplicates ignored", tally.ignored);
  row("failed", tally.failed);
  row("skipped (not DICOM)", tally.skipped["not-dicom"]);
  row("skipped (DICOMDIR)", tally.skipped.dicomdir);
  if (tally.skipped["nested-zip"] > 0) row("skipped (zip inside a zip)", tally.skipped["nested-zip"]);
  if (tally.failures.size > 0) {
    lines.push("Failures:");
    const groups = [...tally.failures].sort((a, b) => b[1].length - a[1].length);
    for (const [reason, names] of groups) {
      lines.push(`  ${names.length} × ${reason}`);
      for (const name of names.slice(0, NAMES_PER_REASON)) lines.push(`      ${name}`);
      if (names.length > NAMES_PER_REASON) lines.push(`      … and ${names.length - NAMES_PER_REASON} more`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** Runs an import; returns the exit code: 0 when nothing failed, 1 otherwise. */
export async function runImport(options: ImportOptions, io: ImportIo): Promise<number> {
  if (!Number.isInteger(options.parallel) || options.parallel < 1) {
    io.stderr.write("voxelgate import: --parallel must be at least 1\n");
    return 2;
  }
  if (options.url !== undefined && options.dataDir !== undefined) {
    io.stderr.write("voxelgate import: give either --data (import into a data folder) or --url (send to a server), not both\n");
    return 2;
  }
  let url: string | undefined;
  if (options.url !== undefined) {
    try {
      url = new URL(options.url).href.replace(/\/+$/, "");
    } catch {
      io.stderr.write(
        `voxelgate import: --url ${options.url} is not a URL (expected the DICOMweb root, e.g. http://127.0.0.1:8042/dicomweb)\n`,
      );
      return 2;
    }
  }
  const quiet = options.quiet ?? false;
  const dataDir = resolve(options.dataDir ?? process.env.VOXELGATE_DATA ?? DEFAULT_DATA_DIR);
  const target = url ?? dataDir;

  const total = await countSources(options.paths);
  if (!quiet) io.stderr.write(`Found ${total.count} files (${formatMb(total.bytes)} MB) to import into ${target}\n`);

  let archive: Archive | undefined;
  if (url === undefined) {
    try {
      archive = await openArchive({ dataDir });
    } catch (err) {
      io.stderr.write(`voxelgate import: cannot open the data folder ${dataDir}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const tally = new Tally();
  const progress = new Progress(tally, total, io.stderr, quiet);
  const feed = new Feed(options.paths, tally, progress);
  // Ctrl-C once: finish the files in flight, then print the summary. Twice: stop at once.
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    feed.stopped = true;
    io.stderr.write("\nStopping after the files in flight (Ctrl-C again to quit now)…\n");
  };
  process.on("SIGINT", onSignal);
  const started = Date.now();
  try {
    if (archive) await importDirect(feed, archive, options.parallel);
    else if (url) {
      await importStow(feed, url, options.parallel, options.batchFiles ?? 16, options.batchBytes ?? 64 * MB, tally, progress);
    }
  } finally {
    process.off("SIGINT", onSignal);
    progress.stop();
    await feed.close();
    await archive?.close();
  }
  io.stdout.write(summary(tally, target, (Date.now() - started) / 1000, interrupted));
  return tally.failed > 0 || interrupted ? 1 : 0;
}
