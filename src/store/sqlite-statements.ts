/**
 * Prepared statements cached per database and SQL text. better-sqlite3 compiles the SQL on every
 * `prepare` (~0.1 ms): statements whose text depends on a request's shape (scope level, list
 * lengths, QIDO plans) are prepared once each, in a bounded cache.
 */
import type Database from "better-sqlite3";

const LIMIT = 256;
const caches = new WeakMap<Database.Database, Map<string, Database.Statement>>();

export function cachedStatement<P extends unknown[] = unknown[], R = unknown>(
  db: Database.Database,
  sql: string,
): Database.Statement<P, R> {
  let cache = caches.get(db);
  if (!cache) {
    cache = new Map();
    caches.set(db, cache);
  }
  let statement = cache.get(sql);
  if (!statement) {
    statement = db.prepare(sql);
    if (cache.size >= LIMIT) cache.delete(cache.keys().next().value as string);
    cache.set(sql, statement);
  }
  return statement as unknown as Database.Statement<P, R>;
}
