/** QIDO-RS search over the SQLite schema. PLACEHOLDER: written by the QIDO work. */
import type Database from "better-sqlite3";
import type { SearchQuery, SearchResult } from "./query.js";

export function searchSqlite(_db: Database.Database, _query: SearchQuery): SearchResult {
  return { matches: [], truncated: false };
}
