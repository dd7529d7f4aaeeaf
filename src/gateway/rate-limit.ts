/**
 * Rate limits, concurrency caps and request body sizes, separately for each DICOMweb behaviour.
 *
 * - Token buckets per authenticated principal (request.principal.subject) and per client IP
 *   (request.ip: the real client only when trustedProxies names the proxy in front). A request
 *   needs a token from every bucket that applies; a refused request takes none.
 * - Concurrency caps for heavy work (study/series retrieve, rendering): a bounded FIFO wait
 *   queue, then 503 with Retry-After. A slot is held until the response is finished or the
 *   client goes away, so a streamed 2 GB study counts for as long as it streams.
 * - STOW request bodies larger than limits.store.maxRequestBytes get 413 before being read.
 *
 * Cost per request: the hook is attached per route at start-up (classification happens once,
 * not per request; non-DICOMweb routes get no hook), then two Map lookups and some arithmetic.
 * Memory is bounded: each bucket table forgets its least recently used key beyond
 * limits.maxTrackedClients (a forgotten key starts again with a full bucket).
 *
 * Order: these are route-level onRequest hooks, so they run after every global onRequest hook,
 * in particular after identity has set request.principal.
 */
import type { FastifyInstance, FastifyReply, onRequestHookHandler, RouteOptions } from "fastify";
import type { LimitsConfig } from "../config.js";
import { type Behaviour, classifyRequest, pathBelowDicomwebRoot } from "./request-state.js";

interface Bucket {
  tokens: number;
  /** Seconds (monotonic) of the last refill. */
  at: number;
}

/** Token buckets by key with least-recently-used eviction (a Map keeps insertion order). */
export class BucketTable {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  /** The key's bucket, refilled up to now (seconds); created full when unknown. */
  refill(key: string, now: number): Bucket {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxKeys) {
        const oldest = this.buckets.keys().next();
        if (!oldest.done) this.buckets.delete(oldest.value);
      }
      bucket = { tokens: this.burst, at: now };
    } else {
      this.buckets.delete(key); // re-inserted below: most recently used last
      const tokens = bucket.tokens + (now - bucket.at) * this.rate;
      bucket.tokens = tokens > this.burst ? this.burst : tokens;
      bucket.at = now;
    }
    this.buckets.set(key, bucket);
    return bucket;
  }

  /** Whole seconds until the bucket has a token again (at least 1). */
  retryAfter(bucket: Bucket): number {
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.rate));
  }
}

type WaitOutcome = "acquired" | "timeout" | "gone";

interface Waiter {
  settle(outcome: WaitOutcome): void;
}

/** At most `limit` holders at once; up to `queueLimit` more wait in order, each up to `timeoutMs`. */
export class ConcurrencyGate {
  private active = 0;
  private readonly waiting = new Set<Waiter>();

  constructor(
    readonly name: string,
    readonly limit: number,
    readonly queueLimit: number,
    readonly timeoutMs: number,
  ) {}

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.size;
  }

  tryAcquire(): boolean {
    if (this.active >= this.limit) return false;
    this.active++;
    return true;
  }

  get queueFull(): boolean {
    return this.waiting.size >= this.queueLimit;
  }

  /** Waits for a slot; `onGone` registers the callback to call when the client disconnects. */
  wait(onGone: (cancel: () => void) => void): Promise<WaitOutcome> {
    return new Promise<WaitOutcome>((resolve) => {
      const waiter: Waiter = {
        settle: (outcome) => {
          if (!this.waiting.delete(waiter)) return;
          clearTimeout(timer);
          resolve(outcome);
        },
      };
      const timer = setTimeout(() => waiter.settle("timeout"), this.timeoutMs);
      this.waiting.add(waiter);
      onGone(() => waiter.settle("gone"));
    });
  }

  /** Gives the slot to the longest waiting request, or frees it. */
  release(): void {
    const next = this.waiting.values().next();
    if (!next.done) next.value.settle("acquired");
    else this.active--;
  }
}

export type LimitKey = "principal" | "ip" | "concurrency";

export interface RateLimitOptions {
  limits: LimitsConfig;
  dicomwebPath: string;
  /** Called for every refused request (the metrics counter). */
  onLimited?: (behaviour: Behaviour, key: LimitKey) => void;
}

type KeyKind = "principal" | "ip";

interface BehaviourTables {
  principal?: BucketTable;
  ip?: BucketTable;
}

const LIMIT_SETTING: Record<KeyKind, string> = { principal: "perPrincipal", ip: "perIp" };
const WHOSE: Record<KeyKind, string> = { principal: "per user", ip: "per client address" };

/** Study- or series-level instance retrieve below the root: many files in one response. */
const BULK_RETRIEVE = /^\/studies\/[^/]+(\/series\/[^/]+)?$/;

const HOOK = Symbol("voxelgate-limits");

function sendError(reply: FastifyReply, status: number, retryAfter: number | undefined, reason: string): void {
  if (retryAfter !== undefined) void reply.header("Retry-After", String(retryAfter));
  void reply.code(status).type("application/json; charset=utf-8").send({ error: reason });
}

/** Seconds on a monotonic clock. */
const nowSeconds = (): number => performance.now() / 1000;

/**
 * Installs the limits: an onRoute hook that gives every DICOMweb route registered afterwards its
 * own onRequest hook. Call before the routes are registered.
 */
export function installRateLimits(app: FastifyInstance, options: RateLimitOptions): void {
  const { limits } = options;
  if (!limits.enabled) return;
  const root = options.dicomwebPath;
  const recordRateLimited = options.onLimited ?? (() => undefined);
  const max = limits.maxTrackedClients;
  const tables = new Map<Behaviour, BehaviourTables>();
  for (const behaviour of ["search", "retrieve", "render", "store", "delete"] as const) {
    const l = limits[behaviour];
    tables.set(behaviour, {
      principal: l.perPrincipal === false ? undefined : new BucketTable(l.perPrincipal.rate, l.perPrincipal.burst, max),
      ip: l.perIp === false ? undefined : new BucketTable(l.perIp.rate, l.perIp.burst, max),
    });
  }
  const c = limits.concurrency;
  const timeoutMs = c.queueTimeoutSeconds * 1000;
  const gates = {
    studyRetrieve: new ConcurrencyGate("studyRetrieve", c.studyRetrieve, c.queue, timeoutMs),
    render: new ConcurrencyGate("render", c.render, c.queue, timeoutMs),
  };
  const retryBusy = Math.max(1, Math.min(30, Math.ceil(c.queueTimeoutSeconds / 10)));

  const hookFor = (behaviour: Behaviour, gate: ConcurrencyGate | undefined): onRequestHookHandler => {
    const { principal: byPrincipal, ip: byIp } = tables.get(behaviour) as BehaviourTables;
    const maxBody = behaviour === "store" ? limits.store.maxRequestBytes : undefined;

    const refuse = (reply: FastifyReply, kind: KeyKind, table: BucketTable, bucket: Bucket): void => {
      recordRateLimited(behaviour, kind);
      const retry = table.retryAfter(bucket);
      sendError(
        reply,
        429,
        retry,
        `too many ${behaviour} requests ${WHOSE[kind]}: the limit is ${table.rate}/s with bursts of ${table.burst} ` +
          `(limits.${behaviour}.${LIMIT_SETTING[kind]}); retry after ${retry} s`,
      );
    };

    const busy = (reply: FastifyReply, reason: string): void => {
      recordRateLimited(behaviour, "concurrency");
      sendError(reply, 503, retryBusy, `server busy: ${reason}; retry after ${retryBusy} s`);
    };

    /** Holds the gate's slot until the response is over: sent, failed or abandoned by the client. */
    const hold = (reply: FastifyReply, g: ConcurrencyGate): void => {
      const res = reply.raw;
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        g.release();
      };
      // 'close' comes after the last byte is sent, or when the client goes away: either way the work is over.
      if (res.destroyed) release();
      else res.once("close", release);
    };

    // Callback-style (no promise per request); answering early = send without calling done().
    const hook: onRequestHookHandler = function (request, reply, done) {
      if (maxBody !== undefined) {
        const length = Number(request.headers["content-length"]);
        if (length > maxBody) {
          void reply.header("Connection", "close"); // the body is not read
          return sendError(
            reply,
            413,
            undefined,
            `request body of ${length} bytes is larger than the ${maxBody}-byte limit (limits.store.maxRequestBytes); send the instances in several requests`,
          );
        }
      }
      const now = nowSeconds();
      const principal = request.principal;
      const p =
        byPrincipal !== undefined && principal != null && principal.kind !== "anonymous"
          ? byPrincipal.refill(principal.subject, now)
          : undefined;
      const i = byIp?.refill(request.ip, now);
      // Both checked before either is charged: a refused request costs no token.
      if (p !== undefined && p.tokens < 1) return refuse(reply, "principal", byPrincipal as BucketTable, p);
      if (i !== undefined && i.tokens < 1) return refuse(reply, "ip", byIp as BucketTable, i);
      if (p !== undefined) p.tokens -= 1;
      if (i !== undefined) i.tokens -= 1;

      if (gate === undefined || gate.tryAcquire()) {
        if (gate !== undefined) hold(reply, gate);
        return done();
      }
      if (gate.queueFull) {
        return busy(
          reply,
          `${gate.running} ${gate.name} requests running and ${gate.queued} waiting (limits.concurrency.${gate.name}, limits.concurrency.queue)`,
        );
      }
      const res = reply.raw;
      let onClose: (() => void) | undefined;
      void gate
        .wait((cancel) => {
          onClose = cancel;
          res.once("close", cancel);
        })
        .then((outcome) => {
          if (onClose !== undefined) res.removeListener("close", onClose);
          if (outcome !== "acquired") {
            return busy(
              reply,
              `waited ${c.queueTimeoutSeconds} s for one of ${gate.limit} ${gate.name} slots (limits.concurrency.${gate.name})`,
            );
          }
          hold(reply, gate);
          done();
        });
    };
    return Object.assign(hook, { [HOOK]: true });
  };

  const gateFor = (behaviour: Behaviour, below: string): ConcurrencyGate | undefined =>
    behaviour === "render" ? gates.render : behaviour === "retrieve" && BULK_RETRIEVE.test(below) ? gates.studyRetrieve : undefined;

  /** For wildcard routes (proxy mode's pass-through): classified per request, one hook per behaviour and gate. */
  const perRequestHook = (): onRequestHookHandler => {
    const made = new Map<string, onRequestHookHandler>();
    const hook: onRequestHookHandler = function (this: FastifyInstance, request, reply, done) {
      const below = pathBelowDicomwebRoot(request.url, root);
      const target = below === undefined ? undefined : classifyRequest(request.method, below);
      if (below === undefined || target === undefined) return done();
      const gate = gateFor(target.behaviour, below);
      const key = `${target.behaviour}/${gate?.name ?? ""}`;
      let handler = made.get(key);
      if (handler === undefined) {
        handler = hookFor(target.behaviour, gate);
        made.set(key, handler);
      }
      return handler.call(this, request, reply, done);
    };
    return Object.assign(hook, { [HOOK]: true });
  };

  app.addHook("onRoute", (route: RouteOptions) => {
    // /dicomweb/… and, in proxy mode, /upstreams/<name>/dicomweb/…
    const below = pathBelowDicomwebRoot(route.url, root);
    if (below === undefined) return;
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    if (existing.some((h) => HOOK in h)) return;
    if (below.includes("*")) {
      route.onRequest = [...existing, perRequestHook()];
      return;
    }
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const target = methods.map((m) => classifyRequest(m, below)).find((t) => t !== undefined);
    if (target === undefined) return;
    route.onRequest = [...existing, hookFor(target.behaviour, gateFor(target.behaviour, below))];
  });
}
