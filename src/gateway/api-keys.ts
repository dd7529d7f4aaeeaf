/**
 * API keys for service accounts. The configuration keeps only each key's SHA-256; a presented key
 * is hashed and compared with every entry in constant time (no early exit that would time which
 * entry, or which byte, differed). Keys are 32 random bytes, base64url, prefixed `vgk_`.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { AuthConfig } from "../config.js";
import type { Principal } from "./request-state.js";

export type ApiKeyEntry = AuthConfig["apiKeys"][number];

export const hashApiKey = (key: string): string => createHash("sha256").update(key, "utf8").digest("hex");

/** A fresh key and the config entry that accepts it (the key itself is not in the entry). */
export function createApiKey(id: string, scopes: string[], roles: string[] = []): { key: string; entry: ApiKeyEntry } {
  const key = `vgk_${randomBytes(32).toString("base64url")}`;
  return { key, entry: { id, sha256: hashApiKey(key), scopes, roles } };
}

/** The principal of a presented key, or undefined when no entry matches. */
export function verifyApiKey(entries: readonly ApiKeyEntry[], key: string): Principal | undefined {
  const presented = Buffer.from(hashApiKey(key), "hex");
  let found: ApiKeyEntry | undefined;
  for (const entry of entries) {
    const equal = timingSafeEqual(presented, Buffer.from(entry.sha256, "hex"));
    if (equal && found === undefined) found = entry;
  }
  if (!found) return undefined;
  return { kind: "service", subject: found.id, clientId: found.id, roles: [...found.roles], scopes: [...found.scopes] };
}
