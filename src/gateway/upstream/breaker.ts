/**
 * A circuit breaker per upstream: after `failures` consecutive failures (connection refused,
 * timeout, 502/503/504) the circuit opens and requests fail at once instead of piling up on a
 * dead upstream; after `resetMs` one request is let through (half-open): success closes the
 * circuit, failure opens it again.
 */
export type CircuitState = "closed" | "open" | "half-open";

export interface CircuitStatus {
  state: CircuitState;
  consecutiveFailures: number;
  /** When the circuit last opened (ISO time). */
  openedAt?: string;
  /** The failure that opened it. */
  lastError?: string;
}

export class CircuitBreaker {
  private failures = 0;
  private openedAt: number | undefined;
  private trial = false;
  private lastError: string | undefined;

  constructor(
    private readonly threshold: number,
    private readonly resetMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): CircuitState {
    if (this.openedAt === undefined) return "closed";
    return this.now() - this.openedAt >= this.resetMs ? "half-open" : "open";
  }

  /** May a request go out now? In half-open state only one at a time (the trial). */
  allow(): boolean {
    const state = this.state;
    if (state === "closed") return true;
    if (state === "open" || this.trial) return false;
    this.trial = true;
    return true;
  }

  /** Milliseconds until a trial request will be let through (0 when closed or half-open). */
  retryInMs(): number {
    return this.openedAt === undefined ? 0 : Math.max(0, this.resetMs - (this.now() - this.openedAt));
  }

  success(): void {
    this.failures = 0;
    this.openedAt = undefined;
    this.trial = false;
    this.lastError = undefined;
  }

  failure(reason: string): void {
    this.failures++;
    this.lastError = reason;
    if (this.trial || this.failures >= this.threshold) this.openedAt = this.now();
    this.trial = false;
  }

  /** A request let through that ended without telling (e.g. cancelled by the client). */
  release(): void {
    this.trial = false;
  }

  status(): CircuitStatus {
    return {
      state: this.state,
      consecutiveFailures: this.failures,
      ...(this.openedAt !== undefined ? { openedAt: new Date(this.openedAt).toISOString() } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }
}
