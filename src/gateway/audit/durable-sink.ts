/**
 * Puts a sink behind an in-memory queue and an on-disk spool so that recording never waits for
 * the sink and nothing is lost silently: a batch the sink refuses goes to the spool, later
 * batches follow it there (order kept), and a retry with exponential backoff drains the spool
 * oldest first before new records go straight to the sink again. Only a full spool drops
 * records, and that is counted, logged and reported by readiness.
 */
import type { AuditRecord } from "./record.js";
import type { AuditSink } from "./sink.js";
import { type Spool, SpoolFullError } from "./spool.js";

export interface DurableSinkOptions {
  spool: Spool;
  /** First retry delay after a failure; doubles up to retryMaxMs. */
  retryMinMs: number;
  retryMaxMs: number;
  /** Records handed to the sink per write. */
  maxBatch?: number;
  /**
   * How long a first record waits for others before the batch is written (default 10 ms): under
   * load, one write and one disk flush for many requests instead of one each. flush() and a full
   * batch do not wait.
   */
  lingerMs?: number;
  /** Counts outcomes: "written" (delivered), "spooled", "dropped" (lost: the spool was full or failing). */
  count(outcome: "written" | "spooled" | "dropped", n: number): void;
  warn(message: string): void;
}

export interface SinkHealth {
  name: string;
  description: string;
  up: boolean;
  spooled: number;
  dropped: number;
  /** Why the last delivery failed, while failing. */
  lastError?: string;
  downSince?: string;
}

export class DurableSink {
  readonly #queue: AuditRecord[] = [];
  #pumping: Promise<void> | undefined;
  #failures = 0;
  #retryAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #linger: NodeJS.Timeout | undefined;
  #lastError: string | undefined;
  #downSince: Date | undefined;
  #dropped = 0;
  #closed = false;

  constructor(
    readonly sink: AuditSink,
    private readonly options: DurableSinkOptions,
  ) {
    // Records an earlier run spooled are delivered first.
    if (options.spool.count > 0) this.#kick();
  }

  get name(): string {
    return this.sink.name;
  }

  /** Queues a record; returns at once. */
  enqueue(record: AuditRecord): void {
    this.#queue.push(record);
    const linger = this.options.lingerMs ?? 10;
    if (linger <= 0 || this.#queue.length >= (this.options.maxBatch ?? 500)) this.#kick();
    else this.#linger ??= setTimeout(() => this.#kick(), linger).unref();
  }

  health(): SinkHealth {
    return {
      name: this.sink.name,
      description: this.sink.description,
      up: this.up,
      spooled: this.options.spool.count,
      dropped: this.#dropped,
      lastError: this.#failures > 0 ? this.#lastError : undefined,
      downSince: this.#failures > 0 ? this.#downSince?.toISOString() : undefined,
    };
  }

  get up(): boolean {
    return this.#failures === 0 && (this.sink.connected?.() ?? true);
  }

  /** Waits until the queue is empty (delivered or spooled). */
  async flush(): Promise<void> {
    if (this.#linger) this.#kick();
    while (this.#pumping) await this.#pumping;
  }

  /** Delivers or spools what is queued, then closes the sink. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.flush();
    await this.sink.close().catch(() => undefined);
  }

  #kick(): void {
    if (this.#linger) clearTimeout(this.#linger);
    this.#linger = undefined;
    if (this.#pumping) return;
    this.#pumping = this.#pump().finally(() => {
      this.#pumping = undefined;
      // Records queued while the last step finished, or a retry timer that fired while the pump ran.
      const retryDue = this.options.spool.count > 0 && !this.#inBackoff() && !this.#closed;
      if (this.#queue.length > 0 || retryDue) this.#kick();
    });
  }

  #inBackoff(): boolean {
    return this.#failures > 0 && Date.now() < this.#retryAt;
  }

  async #pump(): Promise<void> {
    const spool = this.options.spool;
    const maxBatch = this.options.maxBatch ?? 500;
    for (;;) {
      if (spool.count > 0 && !this.#inBackoff() && !this.#closed) {
        const segment = await spool.oldest();
        if (segment) {
          if (await this.#deliver(segment.records)) await spool.remove(segment.seq);
          continue;
        }
      }
      if (this.#queue.length === 0) return;
      const batch = this.#queue.splice(0, maxBatch);
      // While anything is spooled, new records queue behind it (order kept).
      if (spool.count > 0 || this.#inBackoff() || (this.#closed && this.#failures > 0)) {
        await this.#spool(batch);
        continue;
      }
      if (!(await this.#deliver(batch))) await this.#spool(batch);
    }
  }

  async #deliver(records: AuditRecord[]): Promise<boolean> {
    try {
      await this.sink.write(records);
    } catch (err) {
      this.#failed(err as Error);
      return false;
    }
    if (this.#failures > 0) this.options.warn(`audit sink ${this.sink.description} is back; delivering spooled records`);
    this.#failures = 0;
    this.#lastError = undefined;
    this.#downSince = undefined;
    this.options.count("written", records.length);
    return true;
  }

  #failed(err: Error): void {
    if (this.#failures === 0) {
      this.#downSince = new Date();
      this.options.warn(`audit sink ${this.sink.description} failed (${err.message}); spooling records in ${this.options.spool.dir}`);
    }
    this.#failures++;
    this.#lastError = err.message;
    const delay = Math.min(this.options.retryMaxMs, this.options.retryMinMs * 2 ** Math.min(this.#failures - 1, 20));
    this.#retryAt = Date.now() + delay;
    if (this.#timer) clearTimeout(this.#timer);
    if (!this.#closed) {
      this.#timer = setTimeout(() => {
        // The backoff is over when its timer fires, whatever Date.now() says: timers run on the
        // event loop's clock, which can be a millisecond behind, and a pump that still saw the
        // backoff would skip the spool and leave no timer behind (stuck until the next record).
        this.#retryAt = 0;
        this.#kick();
      }, delay);
      this.#timer.unref();
    }
  }

  async #spool(records: AuditRecord[]): Promise<void> {
    try {
      await this.options.spool.append(records);
      this.options.count("spooled", records.length);
    } catch (err) {
      this.#dropped += records.length;
      this.options.count("dropped", records.length);
      const why = err instanceof SpoolFullError ? err.message : `the audit spool cannot be written: ${(err as Error).message}`;
      this.options.warn(`${records.length} audit record(s) for ${this.sink.description} are lost: ${why}`);
    }
  }
}
