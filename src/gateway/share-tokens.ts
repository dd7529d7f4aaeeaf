/**
 * Share tokens: signed, expiring capabilities that open exactly one study (optionally one series
 * of it) for search, retrieve and render — a viewer launched from a report gets one instead of the
 * user's own token. Format `vgs1.<payload>.<signature>`: the payload is base64url JSON
 * `{ st, se?, exp, iat, sub }`, the signature HMAC-SHA256 over `vgs1.<payload>` with a key kept in
 * a file (default `<data>/gateway/share-token.key`, created on first use; give every node the same
 * file). A token cannot be widened: the study and series are inside the signed payload.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

const PREFIX = "vgs1.";

export interface ShareGrant {
  studyUid: string;
  seriesUid?: string;
  /** Expiry, seconds since the epoch. */
  expiresAt: number;
  /** Who minted it (audit). */
  issuedBy: string;
}

export interface MintRequest {
  studyUid: string;
  seriesUid?: string;
  ttlSeconds: number;
  issuedBy: string;
}

export class InvalidShareToken extends Error {}

export const isShareToken = (token: string): boolean => token.startsWith(PREFIX);

export class ShareTokens {
  private key: Buffer | undefined;

  constructor(private readonly secretFile: string) {}

  /** The HMAC key: read from the file, or made and written (0600) when the file does not exist. */
  private secret(): Buffer {
    if (this.key) return this.key;
    try {
      this.key = Buffer.from(readFileSync(this.secretFile, "utf8").trim(), "hex");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      mkdirSync(dirname(this.secretFile), { recursive: true });
      const made = randomBytes(32);
      try {
        writeFileSync(this.secretFile, `${made.toString("hex")}\n`, { mode: 0o600, flag: "wx" });
        this.key = made;
      } catch (raceErr) {
        // Another node (or process) made it first: use theirs.
        if ((raceErr as NodeJS.ErrnoException).code !== "EEXIST") throw raceErr;
        this.key = Buffer.from(readFileSync(this.secretFile, "utf8").trim(), "hex");
      }
    }
    if (this.key.length < 32) throw new Error(`share token key file ${this.secretFile} must hold at least 32 bytes as hex`);
    return this.key;
  }

  private sign(body: string): string {
    return createHmac("sha256", this.secret()).update(body).digest("base64url");
  }

  /** Mints a token (for POST /api/share-tokens, viewer launch and FHIR endpoints); the caller checked the right to share. */
  mint(request: MintRequest, now = Date.now()): { token: string; grant: ShareGrant } {
    const iat = Math.floor(now / 1000);
    const grant: ShareGrant = {
      studyUid: request.studyUid,
      ...(request.seriesUid !== undefined ? { seriesUid: request.seriesUid } : {}),
      expiresAt: iat + Math.max(1, Math.floor(request.ttlSeconds)),
      issuedBy: request.issuedBy,
    };
    const payload = { st: grant.studyUid, se: grant.seriesUid, exp: grant.expiresAt, iat, sub: grant.issuedBy };
    const body = `${PREFIX}${Buffer.from(JSON.stringify(payload)).toString("base64url")}`;
    return { token: `${body}.${this.sign(body)}`, grant };
  }

  /** The grant of a valid token; throws InvalidShareToken with the reason otherwise. */
  verify(token: string, now = Date.now()): ShareGrant {
    const dot = token.lastIndexOf(".");
    const body = token.slice(0, dot);
    if (!isShareToken(token) || dot <= PREFIX.length) throw new InvalidShareToken("the share token is malformed");
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const expected = Buffer.from(this.sign(body), "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new InvalidShareToken("the share token's signature does not verify (altered, or made with another key)");
    }
    let payload: { st?: unknown; se?: unknown; exp?: unknown; sub?: unknown };
    try {
      payload = JSON.parse(Buffer.from(body.slice(PREFIX.length), "base64url").toString("utf8")) as typeof payload;
    } catch {
      throw new InvalidShareToken("the share token is malformed");
    }
    if (typeof payload.st !== "string" || typeof payload.exp !== "number") throw new InvalidShareToken("the share token is malformed");
    if (payload.exp * 1000 <= now) throw new InvalidShareToken(`the share token expired at ${new Date(payload.exp * 1000).toISOString()}`);
    return {
      studyUid: payload.st,
      ...(typeof payload.se === "string" ? { seriesUid: payload.se } : {}),
      expiresAt: payload.exp,
      issuedBy: typeof payload.sub === "string" ? payload.sub : "unknown",
    };
  }
}
