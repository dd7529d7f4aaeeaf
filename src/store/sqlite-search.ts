/**
 * QIDO-RS search over the SQLite schema (sqlite-schema.ts).
 *
 * How a query runs:
 * 1. Conditions on key columns become SQL (`=`, `IN`, `GLOB` for wildcards: GLOB is
 *    case-sensitive, unlike LIKE, and uses the index for a literal prefix; date ranges as string
 *    comparisons). Request Attributes Sequence item keys use the series_request_keys table.
 *    Everything else is evaluated by the same JavaScript rules as query.ts through SQL functions
 *    registered on the connection: `vg_col` (a key column whose matching SQL cannot express
 *    exactly: PN, TM), `vg_json` (the `attributes` JSON of a study or series, after an `instr()`
 *    prefilter on a literal the value must contain) and `vg_meta` (an instance's metadata chunk,
 *    inflated). They come last in the WHERE clause, so they only see rows the indexed terms let
 *    through, and LIMIT/OFFSET/COUNT apply after them: paging is exact whatever is matched in
 *    JavaScript.
 * 2. A condition on an attribute below the query level (e.g. BodyPartExamined on /studies) is
 *    relational: the candidate matches when one of its series (instances) matches every condition
 *    of that level; `IN (...)` through the index when a UID drives it, else `EXISTS` per candidate.
 * 3. Studies are walked newest first through studies_date, and their series and instances through
 *    their indexes, so a page stops early; a scope or a UID lets SQLite start from that index.
 * 4. The page is read as primary keys (LIMIT n+1 tells whether more exist); only then the rest is
 *    counted for the Warning: exactly when the count reads indexes only, else within
 *    SEARCH_TUNING.countBudgetMs (then "more exist" without a number). The attributes to return
 *    are read for the page rows only: stored values via json_extract of the wanted tags, counts
 *    and ModalitiesInStudy by correlated subqueries on covering indexes.
 *
 * Order (stable, so paging is idempotent, PS3.18 §8.3.4.4.1): studies newest first (StudyDate
 * descending, undated last, then most recently created); series by SeriesNumber (unnumbered
 * last), then creation; instances by InstanceNumber (unnumbered last), then creation; lower
 * levels of an unscoped search follow the order of their study.
 *
 * Known limits: key columns hold the first value only (the QIDO keys with columns are single-
 * valued); DA columns are compared as written (a legacy "YYYY.MM.DD" value is not normalized in
 * SQL); study and series attributes are those of the latest instance stored in them.
 */
import type Database from "better-sqlite3";
import { performance } from "node:perf_hooks";
import { cachedStatement } from "./sqlite-statements.js";
import { constants as zlibConstants, inflateRawSync } from "node:zlib";
import { type DicomJsonAttribute, type DicomJsonDataset, type JsonValue, lookupTag } from "../dicom/index.js";
import {
  type Condition,
  INSTANCE_RETURN_KEYS,
  LEVEL_DEPTH,
  type Level,
  type Matcher,
  matchDataset,
  matchValue,
  isPrivateTagHex,
  privateCreatorOf,
  type ReturnKey,
  SERIES_RETURN_KEYS,
  type SearchQuery,
  type SearchResult,
  SERVER_TAGS,
  STUDY_RETURN_KEYS,
  sortDataset,
  tagLevel,
  withoutBulkData,
} from "./query.js";
import type { AccessFilter } from "./access.js";
import { accessSql, restrictsSeries } from "./sqlite-access.js";

type Db = Database.Database;

// ---------------------------------------------------------------------------------------------
// Key columns

type ColumnKind = "text" | "pn" | "int" | "date" | "time";

interface Column {
  level: Level;
  column: string;
  kind: ColumnKind;
}

const col = (level: Level, column: string, kind: ColumnKind): Column => ({ level, column, kind });

/** Tags with their own column (the first value of the attribute; PN as "Alphabetic=Ideographic=Phonetic"). */
const COLUMNS: Readonly<Record<string, Column>> = {
  "0020000D": col("study", "study_uid", "text"),
  "00080020": col("study", "study_date", "date"),
  "00080030": col("study", "study_time", "time"),
  "00080050": col("study", "accession_number", "text"),
  "00200010": col("study", "study_id", "text"),
  "00081030": col("study", "study_description", "text"),
  "00080090": col("study", "referring_physician_name", "pn"),
  "00100010": col("study", "patient_name", "pn"),
  "00100020": col("study", "patient_id", "text"),
  "00100030": col("study", "patient_birth_date", "date"),
  "00100040": col("study", "patient_sex", "text"),
  "0020000E": col("series", "series_uid", "text"),
  "00080060": col("series", "modality", "text"),
  "00200011": col("series", "series_number", "int"),
  "0008103E": col("series", "series_description", "text"),
  "00400244": col("series", "pps_start_date", "date"),
  "00400245": col("series", "pps_start_time", "time"),
  "00080018": col("instance", "sop_uid", "text"),
  "00080016": col("instance", "sop_class_uid", "text"),
  "00200013": col("instance", "instance_number", "int"),
  "00280010": col("instance", "rows", "int"),
  "00280011": col("instance", "columns", "int"),
  "00280100": col("instance", "bits_allocated", "int"),
  "00280008": col("instance", "number_of_frames", "int"),
};

const MODALITIES_IN_STUDY = "00080061";
const SOP_CLASSES_IN_STUDY = "00080062";
const INSTANCE_AVAILABILITY = "00080056";
const N_STUDY_SERIES = "00201206";
const N_STUDY_INSTANCES = "00201208";
const N_SERIES_INSTANCES = "00201209";
const TIMEZONE_OFFSET = "00080201";

// ---------------------------------------------------------------------------------------------
// SQL functions: the JavaScript half of matching

interface Registered {
  conditions: Condition[];
  fuzzy: boolean;
  /** Shared by the conditions of one search: past `deadline` (when set) the JSON functions give up. */
  budget: Budget;
}

interface Budget {
  deadline: number;
}

/** Thrown inside SQL functions when a search's counting budget is spent. */
class BudgetSpent extends Error {}

function checkBudget(budget: Budget): void {
  if (budget.deadline > 0 && performance.now() > budget.deadline) throw new BudgetSpent("count budget spent");
}

/** Conditions of the queries running now, by id (better-sqlite3 is synchronous: one query at a time per thread). */
const registry = new Map<number, Registered>();
let nextId = 1;
const withFunctions = new WeakSet<Db>();

/** Conditions registered by searches still running (0 between searches): for tests. */
export const registeredConditionCount = (): number => registry.size;

const registered = (id: number): Registered => {
  const r = registry.get(id);
  if (!r) throw new Error(`search condition ${id} is not registered`);
  return r;
};

export const inflateMetadata = (chunk: Buffer): string =>
  inflateRawSync(chunk, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString("utf8");

function ensureFunctions(db: Db): void {
  if (withFunctions.has(db)) return;
  db.function("vg_col", { deterministic: false }, (value: unknown, id: unknown) => {
    const r = registered(Number(id));
    const c = r.conditions[0];
    if (!c || value === null || value === undefined || value === "") return 0;
    return matchValue(value as JsonValue, c.vr ?? "", c.matcher, r.fuzzy) ? 1 : 0;
  });
  db.function("vg_tick", { deterministic: false }, (id: unknown) => {
    checkBudget(registered(Number(id)).budget);
    return 1;
  });
  db.function("vg_json", { deterministic: false }, (text: unknown, id: unknown) => {
    const r = registered(Number(id));
    checkBudget(r.budget);
    if (typeof text !== "string") return 0;
    return matchDataset(JSON.parse(text) as DicomJsonDataset, r.conditions, r.fuzzy) ? 1 : 0;
  });
  db.function("vg_meta", { deterministic: false }, (chunk: unknown, id: unknown) => {
    const r = registered(Number(id));
    checkBudget(r.budget);
    if (!Buffer.isBuffer(chunk)) return 0;
    return matchDataset(JSON.parse(inflateMetadata(chunk)) as DicomJsonDataset, r.conditions, r.fuzzy) ? 1 : 0;
  });
  withFunctions.add(db);
}

// ---------------------------------------------------------------------------------------------
// WHERE clause

class SqlBuilder {
  readonly clauses: string[] = [];
  readonly params: unknown[] = [];
  readonly ids: number[] = [];
  /** True once a condition needs vg_json or vg_meta (a JSON document parsed per row). */
  parsesJson = false;
  readonly budget: Budget = { deadline: 0 };

  /** @param access the caller's grant (undefined: everything), AND-ed into the query. */
  constructor(
    readonly fuzzy: boolean,
    readonly access?: AccessFilter,
  ) {}

  register(conditions: Condition[]): number {
    const id = nextId++;
    if (nextId > Number.MAX_SAFE_INTEGER - 1) nextId = 1;
    registry.set(id, { conditions, fuzzy: this.fuzzy, budget: this.budget });
    this.ids.push(id);
    return id;
  }

  release(): void {
    for (const id of this.ids) registry.delete(id);
  }
}

/** `[` is GLOB's only special character besides `*` and `?`, which mean what DICOM's wildcards mean. */
const toGlob = (pattern: string): string => pattern.replace(/\[/g, "[[]");

/** SQL for one matcher on a key column, or undefined when only JavaScript can say (then vg_col). */
function columnSql(expr: string, kind: ColumnKind, matcher: Matcher, params: unknown[]): string | undefined {
  switch (matcher.kind) {
    case "single":
      if (kind !== "text") return undefined;
      params.push(matcher.value);
      return `${expr} = ?`;
    case "wildcard":
      if (kind !== "text") return undefined;
      params.push(toGlob(matcher.pattern));
      return `${expr} GLOB ?`;
    case "number":
      if (kind !== "int") return undefined;
      params.push(matcher.value);
      return `${expr} = ?`;
    case "range": {
      if (kind !== "date") return undefined;
      const parts: string[] = [];
      if (matcher.low !== undefined) {
        parts.push(`${expr} >= ?`);
        params.push(matcher.low);
      }
      if (matcher.high !== undefined) {
        parts.push(`${expr} <= ?`);
        params.push(matcher.high);
      }
      return parts.length > 0 ? `(${parts.join(" AND ")})` : `${expr} IS NOT NULL`;
    }
    case "any": {
      const simple = matcher.of.every((m) => (m.kind === "single" && kind === "text") || (m.kind === "number" && kind === "int"));
      if (simple && matcher.of.length > 0) {
        for (const m of matcher.of) params.push(m.kind === "single" ? m.value : m.kind === "number" ? m.value : null);
        return `${expr} IN (${matcher.of.map(() => "?").join(", ")})`;
      }
      const local: unknown[] = [];
      const parts: string[] = [];
      for (const m of matcher.of) {
        const sql = columnSql(expr, kind, m, local);
        if (sql === undefined) return undefined;
        parts.push(sql);
      }
      params.push(...local);
      return parts.length > 0 ? `(${parts.join(" OR ")})` : "0";
    }
    default:
      return undefined;
  }
}

const ALIAS: Readonly<Record<Level, string>> = { study: "st", series: "se", instance: "i" };

/**
 * Clauses for conditions on one table alias of the given level: key columns first, then one
 * JavaScript call for the rest (so the JSON is parsed once per row).
 */
function levelClauses(alias: string, level: Level, conditions: Condition[], b: SqlBuilder, params: unknown[], noIndex = false): string[] {
  const sql: string[] = [];
  const inJs: Condition[] = [];
  for (const c of conditions) {
    if (c.matcher.kind === "universal") continue;
    if (c.tag === INSTANCE_AVAILABILITY) {
      // Everything stored here is ONLINE.
      if (!matchValue("ONLINE", "CS", c.matcher, false)) sql.push("0");
      continue;
    }
    // Computed study keys: ModalitiesInStudy checks the few series of each candidate study (walked
    // newest first, so a page stops early); SOPClassesInStudy builds the set of studies once from
    // the SOP Class index (a study has many instances).
    if (level === "study" && c.tag === MODALITIES_IN_STUDY) {
      const m = columnSql("+x.modality", "text", c.matcher, params);
      const visible = seriesVisibility(b.access, alias, "x.series_uid", params);
      sql.push(`EXISTS (SELECT 1 FROM series x WHERE x.study_pk = ${alias}.pk AND ${m ?? "0"}${visible})`);
      continue;
    }
    if (level === "study" && c.tag === SOP_CLASSES_IN_STUDY) {
      const m = columnSql("x.sop_class_uid", "text", c.matcher, params);
      const visible = seriesVisibility(b.access, alias, "(SELECT xs.series_uid FROM series xs WHERE xs.pk = x.series_pk)", params);
      sql.push(`${alias}.pk IN (SELECT x.study_pk FROM instances x WHERE ${m ?? "0"}${visible})`);
      continue;
    }
    if (level === "series" && c.tag === REQUEST_ATTRIBUTES_SEQUENCE && c.matcher.kind === "sequence") {
      const keys = requestKeyClauses(c.matcher.items, params);
      // A UID-like exact value finds its few series through the index; a pattern is checked per
      // series (the key table is thin: no wide series row is read for a series that fails).
      if (keys.sql.length > 0) {
        sql.push(
          drives(c)
            ? `${alias}.pk IN (SELECT r.series_pk FROM series_request_keys r WHERE ${keys.sql.join(" AND ")})`
            : `EXISTS (SELECT 1 FROM series_request_keys r WHERE r.series_pk = ${alias}.pk AND ${keys.sql.join(" AND ")})`,
        );
      }
      if (keys.exact) continue;
      // Other item keys: the index narrowed the rows, JavaScript decides.
    }
    const column = COLUMNS[c.tag];
    if (column && column.level === level) {
      // `+` keeps SQLite from driving a correlated subquery by this column's index (the link is better).
      const expr = `${noIndex ? "+" : ""}${alias}.${column.column}`;
      const direct = columnSql(expr, column.kind, c.matcher, params);
      if (direct !== undefined) sql.push(direct);
      else {
        params.push(
          b.register([{ ...c, vr: column.kind === "pn" ? "PN" : column.kind === "time" ? "TM" : column.kind === "date" ? "DA" : c.vr }]),
        );
        sql.push(`vg_col(${expr}, ?)`);
      }
      continue;
    }
    inJs.push(c);
  }
  if (inJs.length > 0) {
    b.parsesJson = true;
    if (level === "instance") {
      params.push(b.register(inJs));
      sql.push(`vg_meta(${alias}.metadata, ?)`);
    } else {
      // A value that must appear literally in the JSON text rules rows out before any parsing.
      const literals = inJs.map(requiredLiteral).filter((l): l is string => l !== undefined);
      params.push(...literals, b.register(inJs));
      sql.push([...literals.map(() => `instr(${alias}.attributes, ?) > 0`), `vg_json(${alias}.attributes, ?)`].join(" AND "));
    }
  }
  return sql;
}

/**
 * " AND <the series is visible>" when the caller's grant limits series (a series share token),
 * else "": what a study shows of its series (matching, counts) must not reveal hidden series.
 */
function seriesVisibility(access: AccessFilter | undefined, studyAlias: string, seriesUidExpr: string, params: unknown[]): string {
  if (!restrictsSeries(access)) return "";
  const part = accessSql(access, studyAlias, seriesUidExpr);
  params.push(...part.params);
  return ` AND ${part.sql}`;
}

const REQUEST_ATTRIBUTES_SEQUENCE = "00400275";
const REQUEST_KEY_COLUMNS: Readonly<Record<string, string>> = {
  "00400009": "r.scheduled_procedure_step_id",
  "00401001": "r.requested_procedure_id",
};

/**
 * SQL on series_request_keys (one row per Request Attributes Sequence item) for the item keys it
 * holds; exact when every item key is one of them (one row = one item: same semantics as
 * sequence matching), else a necessary condition only.
 */
function requestKeyClauses(items: Condition[], params: unknown[]): { sql: string[]; exact: boolean } {
  const sql: string[] = [];
  let exact = true;
  for (const item of items) {
    if (item.matcher.kind === "universal") continue;
    const column = REQUEST_KEY_COLUMNS[item.tag];
    const clause = column === undefined ? undefined : columnSql(column, "text", item.matcher, params);
    if (clause === undefined) exact = false;
    else sql.push(clause);
  }
  return { sql, exact };
}

const TEXT_LITERAL_VRS = new Set(["AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UI", "UR", "UT"]);

/**
 * Text every matching row's JSON must contain (as JSON.stringify writes it), or undefined: a
 * single value or the longest literal run of a wildcard, for case-sensitive text VRs (and
 * private tags), recursing into sequence items. PN (case-insensitive), numbers, dates: none.
 */
function requiredLiteral(c: Condition): string | undefined {
  const m = c.matcher;
  if (m.kind === "sequence") {
    for (const item of m.items) {
      const literal = requiredLiteral(item);
      if (literal !== undefined) return literal;
    }
    return undefined;
  }
  if (c.vr !== undefined && !TEXT_LITERAL_VRS.has(c.vr)) return undefined;
  let literal: string | undefined;
  if (m.kind === "single") literal = m.value;
  else if (m.kind === "wildcard") literal = m.pattern.split(/[*?]/).reduce((a, b) => (b.length > a.length ? b : a), "");
  if (!literal || /["\\\u0000-\u001F\uD800-\uDFFF]/.test(literal)) return undefined;
  return literal;
}

/**
 * Indexed key columns selective enough to drive a query from their table: the UIDs. Modality and
 * SOP Class UID are indexed but shared by many rows: walking studies newest first and checking
 * their few series stops as soon as a page is full.
 */
const DRIVING_TAGS = new Set(["0020000E", "00080018"]);

/** True when the condition can start a search from its own table's index (a UID, a request key). */
function drives(c: Condition): boolean {
  if (DRIVING_TAGS.has(c.tag)) return c.matcher.kind === "single" || c.matcher.kind === "any";
  if (c.tag === REQUEST_ATTRIBUTES_SEQUENCE && c.matcher.kind === "sequence") {
    return c.matcher.items.some(
      (i) => REQUEST_KEY_COLUMNS[i.tag] !== undefined && (i.matcher.kind === "single" || i.matcher.kind === "any"),
    );
  }
  return false;
}

/** Joins where SQLite picks the order (a scope or a selective key of the lower table drives). */
const FROM: Readonly<Record<Level, string>> = {
  study: "studies st",
  series: "series se JOIN studies st ON st.pk = se.study_pk",
  instance: "instances i JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk",
};

/**
 * Joins in study order (CROSS JOIN fixes the order in SQLite): studies walked newest first by the
 * studies_date index, then their series and instances by index, so a page is found without
 * sorting the whole table; only each study's rows are sorted.
 */
const FROM_STUDY_ORDER: Readonly<Record<Level, string>> = {
  study: "studies st",
  series: "studies st CROSS JOIN series se ON se.study_pk = st.pk",
  instance: "studies st CROSS JOIN series se ON se.study_pk = st.pk CROSS JOIN instances i ON i.series_pk = se.pk",
};

const ORDER: Readonly<Record<Level, string>> = {
  study: "st.study_date DESC, st.pk DESC",
  series: "st.study_date DESC, st.pk DESC, se.series_number IS NULL, se.series_number, se.pk",
  instance:
    "st.study_date DESC, st.pk DESC, se.series_number IS NULL, se.series_number, se.pk, i.instance_number IS NULL, i.instance_number, i.pk",
};

/** Scoped series and instance searches need no study order: they stay in one study (or series). */
const SCOPED_ORDER: Readonly<Record<"series" | "instance", string>> = {
  series: "se.series_number IS NULL, se.series_number, se.pk",
  instance: "se.series_number IS NULL, se.series_number, se.pk, i.instance_number IS NULL, i.instance_number, i.pk",
};

function buildWhere(query: SearchQuery, b: SqlBuilder): void {
  const depth = LEVEL_DEPTH[query.level];
  if (query.studyUid !== undefined) {
    b.clauses.push("st.study_uid = ?");
    b.params.push(query.studyUid);
  }
  if (query.seriesUid !== undefined && depth >= 1) {
    b.clauses.push("se.series_uid = ?");
    b.params.push(query.seriesUid);
  }
  const byLevel: Record<Level, Condition[]> = { study: [], series: [], instance: [] };
  for (const c of query.conditions) byLevel[c.level].push(c);
  const deferred: string[] = [];
  const deferredParams: unknown[] = [];
  for (const level of ["study", "series", "instance"] as const) {
    const conditions = byLevel[level].filter((c) => c.matcher.kind !== "universal");
    if (conditions.length === 0) continue;
    if (LEVEL_DEPTH[level] <= depth) {
      const params: unknown[] = [];
      const clauses = levelClauses(ALIAS[level], level, conditions, b, params);
      // Column terms first in the SQL text (cheap, indexed), JavaScript terms after all of them.
      for (const clause of clauses) {
        const js = /vg_(json|meta)\(/.test(clause);
        (js ? deferred : b.clauses).push(clause);
      }
      // Parameters follow the textual order of their clauses.
      const split = splitParams(clauses, params);
      b.params.push(...split.direct);
      deferredParams.push(...split.js);
    } else {
      // Relational: some series (instance) of the candidate satisfies every condition of that level.
      // With a selective indexed key (a UID, Modality, SOP Class) the matching parents are found
      // once through that index; otherwise each candidate's own series (instances) are checked.
      const a = level === "series" ? "s2" : "i2";
      const table = level === "series" ? "series" : "instances";
      const parent = query.level === "study" ? "st" : "se";
      const linkColumn = query.level === "study" ? "study_pk" : "series_pk";
      const driven = conditions.some(drives);
      const params: unknown[] = [];
      const clauses = levelClauses(a, level, conditions, b, params, !driven);
      const isJs = (c: string): boolean => /vg_(json|meta)\(/.test(c);
      const ordered = [...clauses.filter((c) => !isJs(c)), ...clauses.filter(isJs)];
      const split = splitParams(clauses, params);
      // A study must not match through a series the caller may not see.
      const visibleParams: unknown[] = [];
      if (query.level === "study") {
        const uid = level === "series" ? `${a}.series_uid` : `(SELECT xs.series_uid FROM series xs WHERE xs.pk = ${a}.series_pk)`;
        const visible = seriesVisibility(b.access, "st", uid, visibleParams);
        if (visible !== "") ordered.push(visible.slice(" AND ".length));
      }
      deferred.push(
        driven
          ? `${parent}.pk IN (SELECT ${a}.${linkColumn} FROM ${table} ${a} WHERE ${ordered.join(" AND ")})`
          : `EXISTS (SELECT 1 FROM ${table} ${a} WHERE ${[`${a}.${linkColumn} = ${parent}.pk`, ...ordered].join(" AND ")})`,
      );
      deferredParams.push(...split.direct, ...split.js, ...visibleParams);
    }
  }
  if (b.access !== undefined) {
    // The grant: indexed study columns (and the series UID), AND-ed before the JavaScript terms.
    const part = accessSql(b.access, "st", depth >= 1 ? "se.series_uid" : undefined);
    b.clauses.push(part.sql);
    b.params.push(...part.params);
  }
  b.clauses.push(...deferred);
  b.params.push(...deferredParams);
}

/** Separates the parameters of column clauses from those of JavaScript clauses (each JS clause has one). */
function splitParams(clauses: string[], params: unknown[]): { direct: unknown[]; js: unknown[] } {
  const direct: unknown[] = [];
  const js: unknown[] = [];
  let p = 0;
  for (const clause of clauses) {
    const n = (clause.match(/\?/g) ?? []).length;
    const target = /vg_(json|meta)\(/.test(clause) ? js : direct;
    for (let k = 0; k < n; k++) target.push(params[p++]);
  }
  return { direct, js };
}

// ---------------------------------------------------------------------------------------------
// Statements

const prepare = (db: Db, sql: string): Database.Statement => cachedStatement(db, sql);

export interface SearchSql {
  /** Keys of the page, in order; parameters: ...params, limit, offset (LIMIT -1: no limit). */
  sql: string;
  /** Number of matches (joins only the tables the conditions use). */
  countSql: string;
  /** countSql that throws BudgetSpent past the budget's deadline; parameters: ...params, tickId. */
  tickingCountSql: string;
  tickId: number;
  params: unknown[];
  /** True when rows are matched in JavaScript (a JSON document parsed per candidate row). */
  parsesJson: boolean;
  /** Set its deadline (performance.now() time) to make the JavaScript matching throw BudgetSpent past it. */
  budget: Budget;
  release(): void;
}

/** The SQL of a search (exported for EXPLAIN QUERY PLAN in tests). */
export function searchSql(query: SearchQuery): SearchSql {
  const b = new SqlBuilder(query.fuzzy, query.access);
  buildWhere(query, b);
  const where = b.clauses.length > 0 ? `WHERE ${b.clauses.join(" AND ")}` : "";
  const keys =
    query.level === "study" ? "st.pk AS st" : query.level === "series" ? "se.pk AS se, st.pk AS st" : "i.pk AS i, se.pk AS se, st.pk AS st";
  const scoped =
    (query.level === "series" && query.studyUid !== undefined) ||
    (query.level === "instance" && (query.studyUid !== undefined || query.seriesUid !== undefined));
  const order = scoped && query.level !== "study" ? SCOPED_ORDER[query.level] : ORDER[query.level];
  const depth = LEVEL_DEPTH[query.level];
  const lowerDriven = query.conditions.some((c) => LEVEL_DEPTH[c.level] >= 1 && LEVEL_DEPTH[c.level] <= depth && drives(c));
  const from = scoped || lowerDriven ? FROM[query.level] : FROM_STUDY_ORDER[query.level];
  // Counting needs no join the conditions do not use (every series has its study, every instance its series).
  const usesStudy = /\bst\./.test(where);
  const usesSeries = usesStudy || /\bse\./.test(where);
  const countFrom =
    query.level === "study" || usesStudy
      ? FROM[query.level]
      : query.level === "series"
        ? "series se"
        : usesSeries
          ? "instances i JOIN series se ON se.pk = i.series_pk"
          : "instances i";
  const tickId = b.register([]);
  return {
    sql: `SELECT ${keys} FROM ${from} ${where} ORDER BY ${order} LIMIT ? OFFSET ?`,
    countSql: `SELECT count(*) AS n FROM ${countFrom} ${where}`,
    tickingCountSql: `SELECT count(*) AS n FROM ${countFrom} ${where ? `${where} AND` : "WHERE"} vg_tick(?)`,
    tickId,
    params: b.params,
    parsesJson: b.parsesJson,
    budget: b.budget,
    release: () => b.release(),
  };
}

// ---------------------------------------------------------------------------------------------
// Attributes to return

interface LevelPlan {
  /** The required return keys of the level (Tables 10.6.3-3/4/5). */
  required: boolean;
  /** includefield=all for this level. */
  all: boolean;
  /** Further stored tags: matching keys and includefields of this level. */
  tags: Set<string>;
}

function planFor(query: SearchQuery): Record<Level, LevelPlan> {
  const depth = LEVEL_DEPTH[query.level];
  const scoped: Record<Level, boolean> = {
    study: query.level !== "study" && query.studyUid !== undefined,
    series: query.level === "instance" && query.seriesUid !== undefined,
    instance: false,
  };
  const plan = {} as Record<Level, LevelPlan>;
  for (const level of ["study", "series", "instance"] as const) {
    plan[level] = { required: !scoped[level], all: query.includeAll && !scoped[level], tags: new Set() };
  }
  const levelOf = (tag: string): Level => tagLevel(tag) ?? query.level;
  for (const c of query.conditions) {
    if (LEVEL_DEPTH[c.level] <= depth) plan[c.level].tags.add(c.tag);
  }
  for (const tag of query.includeTags) {
    const level = levelOf(tag);
    if (LEVEL_DEPTH[level] <= depth) plan[level].tags.add(tag);
  }
  return plan;
}

const HEX8 = /^[0-9A-F]{8}$/;

function dictionaryVr(tag: string): string {
  const entry = lookupTag(Number.parseInt(tag, 16) >>> 0);
  if (!entry) return "UN";
  return entry.vr.split(" ")[0] ?? "UN";
}

/** SQL reading the stored attributes a plan needs: the whole JSON for `all`, else json_extract of each tag. */
function pickSql(expr: string, tags: string[]): string {
  if (tags.length === 0) return "NULL";
  for (const t of tags) if (!HEX8.test(t)) throw new Error(`not a tag: ${t}`);
  return `json_extract(${expr}, ${tags.map((t) => `'$."${t}"'`).join(", ")})`;
}

function readPicked(text: string | null, tags: string[]): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  if (text === null || tags.length === 0) return out;
  const values = tags.length === 1 ? [JSON.parse(text) as unknown] : (JSON.parse(text) as unknown[]);
  tags.forEach((t, i) => {
    const v = values[i];
    if (v !== null && typeof v === "object") out[t] = v as DicomJsonAttribute;
  });
  return out;
}

/** Stored tags a plan asks for, beyond server-made ones. */
function storedTags(plan: LevelPlan, keys: readonly ReturnKey[]): string[] {
  const tags = new Set<string>();
  if (plan.required) for (const k of keys) tags.add(k.tag);
  for (const t of plan.tags) {
    if (SERVER_TAGS.has(t)) continue;
    tags.add(t);
    const creator = privateCreatorOf(t);
    if (creator) tags.add(creator);
  }
  return [...tags].sort();
}

function put(out: DicomJsonDataset, tag: string, attribute: DicomJsonAttribute | undefined): void {
  if (attribute) out[tag] = attribute;
}

/** Level dataset: required keys (empty when absent and always), asked tags, or everything of the level for `all`. */
function levelDataset(
  level: Level,
  plan: LevelPlan,
  stored: DicomJsonDataset,
  keys: readonly ReturnKey[],
  queryLevel: Level,
): DicomJsonDataset {
  const out: DicomJsonDataset = {};
  if (plan.all) {
    for (const [tag, attribute] of Object.entries(stored)) {
      if (SERVER_TAGS.has(tag)) continue;
      const l = tagLevel(tag);
      // Private elements of a study or series are those of its latest instance: only returned when named.
      if (l === level || (l === undefined && level === queryLevel && !isPrivateTagHex(tag))) out[tag] = attribute;
    }
  }
  if (plan.required) {
    for (const k of keys) put(out, k.tag, stored[k.tag] ?? (k.always ? ({ vr: k.vr } as DicomJsonAttribute) : undefined));
  }
  for (const t of plan.tags) {
    if (SERVER_TAGS.has(t)) continue;
    put(out, t, stored[t] ?? ({ vr: dictionaryVr(t) } as DicomJsonAttribute));
    const creator = privateCreatorOf(t);
    if (creator && stored[creator]) out[creator] = stored[creator];
  }
  return out;
}

const countAttribute = (n: number): DicomJsonAttribute => ({ vr: "IS", Value: [n] });
const listAttribute = (vr: "CS" | "UI", json: string | null): DicomJsonAttribute => {
  const values = json ? (JSON.parse(json) as string[]).filter((v) => typeof v === "string" && v !== "") : [];
  return values.length > 0 ? { vr, Value: values } : { vr };
};

interface StudyRow {
  pk: number;
  uid: string;
  picked: string | null;
  attributes?: string;
  n_series?: number;
  n_instances?: number;
  modalities?: string | null;
  sop_classes?: string | null;
}

function readStudies(db: Db, pks: number[], plan: LevelPlan, queryLevel: Level, access?: AccessFilter): Map<number, DicomJsonDataset> {
  const out = new Map<number, DicomJsonDataset>();
  if (pks.length === 0) return out;
  const tags = plan.all ? [] : storedTags(plan, STUDY_RETURN_KEYS);
  const counts = plan.required || plan.tags.has(N_STUDY_SERIES) || plan.tags.has(N_STUDY_INSTANCES) || plan.tags.has(MODALITIES_IN_STUDY);
  const sopClasses = plan.all || plan.tags.has(SOP_CLASSES_IN_STUDY);
  // Counts and lists over the series the caller may see (all of them unless a grant limits series).
  const params: unknown[] = [];
  const seriesVisible = (alias: string) => seriesVisibility(access, "st", `${alias}.series_uid`, params);
  const instanceVisible = () => seriesVisibility(access, "st", "(SELECT xs.series_uid FROM series xs WHERE xs.pk = x.series_pk)", params);
  const sql = `SELECT st.pk AS pk, st.study_uid AS uid, ${plan.all ? "NULL AS picked, st.attributes AS attributes" : `${pickSql("st.attributes", tags)} AS picked`}
    ${
      counts || plan.all
        ? `, (SELECT count(*) FROM series x WHERE x.study_pk = st.pk${seriesVisible("x")}) AS n_series,
      (SELECT count(*) FROM instances x WHERE x.study_pk = st.pk${instanceVisible()}) AS n_instances,
      (SELECT json_group_array(m) FROM (SELECT DISTINCT x.modality AS m FROM series x WHERE x.study_pk = st.pk AND x.modality IS NOT NULL${seriesVisible("x")} ORDER BY m)) AS modalities`
        : ""
    }
    ${sopClasses ? `, (SELECT json_group_array(c) FROM (SELECT DISTINCT x.sop_class_uid AS c FROM instances x WHERE x.study_pk = st.pk${instanceVisible()} ORDER BY c)) AS sop_classes` : ""}
    FROM studies st WHERE st.pk IN (SELECT value FROM json_each(?))`;
  for (const row of prepare(db, sql).all(...params, JSON.stringify(pks)) as StudyRow[]) {
    const stored = plan.all ? (JSON.parse(row.attributes ?? "{}") as DicomJsonDataset) : readPicked(row.picked, tags);
    const ds = levelDataset("study", plan, stored, STUDY_RETURN_KEYS, queryLevel);
    ds["0020000D"] = { vr: "UI", Value: [row.uid] };
    if (row.n_series !== undefined && (plan.required || plan.all || plan.tags.has(N_STUDY_SERIES)))
      ds[N_STUDY_SERIES] = countAttribute(row.n_series);
    if (row.n_instances !== undefined && (plan.required || plan.all || plan.tags.has(N_STUDY_INSTANCES)))
      ds[N_STUDY_INSTANCES] = countAttribute(row.n_instances);
    if (row.modalities !== undefined && (plan.required || plan.all || plan.tags.has(MODALITIES_IN_STUDY)))
      ds[MODALITIES_IN_STUDY] = listAttribute("CS", row.modalities);
    if (row.sop_classes !== undefined) ds[SOP_CLASSES_IN_STUDY] = listAttribute("UI", row.sop_classes);
    out.set(row.pk, ds);
  }
  return out;
}

interface SeriesRow {
  pk: number;
  uid: string;
  picked: string | null;
  attributes?: string;
  n_instances?: number;
}

function readSeries(db: Db, pks: number[], plan: LevelPlan, queryLevel: Level): Map<number, DicomJsonDataset> {
  const out = new Map<number, DicomJsonDataset>();
  if (pks.length === 0) return out;
  const tags = plan.all ? [] : storedTags(plan, SERIES_RETURN_KEYS);
  const count = plan.required || plan.all || plan.tags.has(N_SERIES_INSTANCES);
  const sql = `SELECT se.pk AS pk, se.series_uid AS uid, ${plan.all ? "NULL AS picked, se.attributes AS attributes" : `${pickSql("se.attributes", tags)} AS picked`}
    ${count ? ", (SELECT count(*) FROM instances x WHERE x.series_pk = se.pk) AS n_instances" : ""}
    FROM series se WHERE se.pk IN (SELECT value FROM json_each(?))`;
  for (const row of prepare(db, sql).all(JSON.stringify(pks)) as SeriesRow[]) {
    const stored = plan.all ? (JSON.parse(row.attributes ?? "{}") as DicomJsonDataset) : readPicked(row.picked, tags);
    const ds = levelDataset("series", plan, stored, SERIES_RETURN_KEYS, queryLevel);
    ds["0020000E"] = { vr: "UI", Value: [row.uid] };
    if (row.n_instances !== undefined) ds[N_SERIES_INSTANCES] = countAttribute(row.n_instances);
    out.set(row.pk, ds);
  }
  return out;
}

interface InstanceDbRow {
  pk: number;
  sop_uid: string;
  sop_class_uid: string;
  instance_number: number | null;
  rows: number | null;
  columns: number | null;
  bits_allocated: number | null;
  number_of_frames: number | null;
  metadata?: Buffer;
}

const INSTANCE_COLUMN_TAGS = new Set(INSTANCE_RETURN_KEYS.map((k) => k.tag));

function instanceColumnAttribute(row: InstanceDbRow, tag: string): DicomJsonAttribute | undefined {
  const num = (vr: "IS" | "US", v: number | null): DicomJsonAttribute => (v === null ? { vr } : { vr, Value: [v] });
  switch (tag) {
    case "00080016":
      return { vr: "UI", Value: [row.sop_class_uid] };
    case "00080018":
      return { vr: "UI", Value: [row.sop_uid] };
    case "00200013":
      return num("IS", row.instance_number);
    case "00280010":
      return row.rows === null ? undefined : num("US", row.rows);
    case "00280011":
      return row.columns === null ? undefined : num("US", row.columns);
    case "00280100":
      return row.bits_allocated === null ? undefined : num("US", row.bits_allocated);
    case "00280008":
      return row.number_of_frames === null ? undefined : num("IS", row.number_of_frames);
    default:
      return undefined;
  }
}

interface InstanceParts {
  /** The whole instance (includefield=all), overlaid by the rest. */
  full?: DicomJsonDataset;
  /** Required instance keys and the instance-level tags asked for. */
  own: DicomJsonDataset;
}

function readInstances(db: Db, pks: number[], plan: LevelPlan): Map<number, InstanceParts> {
  const out = new Map<number, InstanceParts>();
  if (pks.length === 0) return out;
  const needMetadata = plan.all || [...plan.tags].some((t) => !SERVER_TAGS.has(t) && !INSTANCE_COLUMN_TAGS.has(t));
  const sql = `SELECT i.pk, i.sop_uid, i.sop_class_uid, i.instance_number, i.rows, i.columns, i.bits_allocated, i.number_of_frames,
    i.metadata FROM instances i WHERE i.pk IN (SELECT value FROM json_each(?))`;
  for (const row of prepare(db, sql).all(JSON.stringify(pks)) as InstanceDbRow[]) {
    // Timezone Offset From UTC is returned "if known" (Table 10.6.3-5): the instance's own JSON is
    // parsed only when it has one, or when other instance attributes were asked for.
    const text = row.metadata ? inflateMetadata(row.metadata) : "";
    const metadata = needMetadata || text.includes(`"${TIMEZONE_OFFSET}"`) ? (JSON.parse(text || "{}") as DicomJsonDataset) : undefined;
    let full: DicomJsonDataset | undefined;
    if (plan.all && metadata) {
      full = {};
      for (const [tag, attribute] of Object.entries(metadata)) if (!SERVER_TAGS.has(tag)) full[tag] = attribute;
    }
    const own: DicomJsonDataset = {};
    for (const k of INSTANCE_RETURN_KEYS) put(own, k.tag, instanceColumnAttribute(row, k.tag));
    put(own, TIMEZONE_OFFSET, metadata?.[TIMEZONE_OFFSET]);
    for (const t of plan.tags) {
      if (SERVER_TAGS.has(t)) continue;
      if (INSTANCE_COLUMN_TAGS.has(t)) put(own, t, instanceColumnAttribute(row, t) ?? ({ vr: dictionaryVr(t) } as DicomJsonAttribute));
      else put(own, t, metadata?.[t] ?? ({ vr: dictionaryVr(t) } as DicomJsonAttribute));
      const creator = privateCreatorOf(t);
      if (creator && metadata?.[creator]) own[creator] = metadata[creator];
    }
    out.set(row.pk, { full, own });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface KeyRow {
  st: number;
  se?: number;
  i?: number;
}

const ONLINE: DicomJsonAttribute = { vr: "CS", Value: ["ONLINE"] };

const countPlans = new WeakMap<Db, Map<string, boolean>>();

/** True when the count's query plan touches indexes only (no wide study/series/instance row is read). */
function countReadsOnlyIndexes(db: Db, countSql: string, params: unknown[]): boolean {
  let plans = countPlans.get(db);
  if (!plans) {
    plans = new Map();
    countPlans.set(db, plans);
  }
  let cheap = plans.get(countSql);
  if (cheap === undefined) {
    const lines = (prepare(db, `EXPLAIN QUERY PLAN ${countSql}`).all(...params) as Array<{ detail: string }>).map((l) => l.detail);
    cheap = lines.every((l) => !/^(SCAN|SEARCH) (st|se|i|s2|i2|x|studies|series|instances)\b/.test(l) || l.includes("COVERING INDEX"));
    if (plans.size >= 256) plans.clear();
    plans.set(countSql, cheap);
  }
  return cheap;
}

/**
 * After a full page, how long counting the rest for the Warning may take when it has to read
 * table rows or parse JSON; past it the result says more exist without saying how many.
 */
export const SEARCH_TUNING = { countBudgetMs: 10 };

export function searchSqlite(db: Db, query: SearchQuery): SearchResult {
  ensureFunctions(db);
  const { sql, countSql, tickingCountSql, tickId, params, parsesJson, budget, release } = searchSql(query);
  try {
    const limit = Math.max(0, Math.floor(query.limit));
    const offset = Math.max(0, Math.floor(query.offset));
    let rows: KeyRow[];
    let remaining: number | undefined = 0;
    if (!parsesJson) {
      // SQL only: one more row says whether more exist; then an exact COUNT on indexes.
      rows = prepare(db, sql).all(...params, limit + 1, offset) as KeyRow[];
      if (rows.length > limit) {
        rows.length = limit;
        let total: number | undefined;
        if (countReadsOnlyIndexes(db, countSql, params)) {
          total = (prepare(db, countSql).get(...params) as { n: number }).n;
        } else {
          // The count reads table rows: give it the budget (vg_tick stops it when spent).
          budget.deadline = performance.now() + SEARCH_TUNING.countBudgetMs;
          try {
            total = (prepare(db, tickingCountSql).get(...params, tickId) as { n: number }).n;
          } catch (err) {
            if (!(err instanceof BudgetSpent)) throw err;
          }
        }
        remaining = total === undefined ? undefined : Math.max(1, total - offset - limit);
      }
    } else {
      // Rows matched in JavaScript: one pass gives the page and, within a time budget, the count of the rest.
      rows = [];
      let extra = 0;
      try {
        for (const row of prepare(db, sql).iterate(...params, -1, offset) as IterableIterator<KeyRow>) {
          if (rows.length < limit) {
            rows.push(row);
            continue;
          }
          if (extra === 0) budget.deadline = performance.now() + SEARCH_TUNING.countBudgetMs;
          extra++;
          checkBudget(budget);
        }
      } catch (err) {
        if (!(err instanceof BudgetSpent)) throw err;
        remaining = undefined;
      }
      if (remaining !== undefined) remaining = extra;
    }
    const plan = planFor(query);
    const unique = (values: Array<number | undefined>): number[] => [...new Set(values.filter((v): v is number => v !== undefined))];
    const studies = readStudies(db, unique(rows.map((r) => r.st)), plan.study, query.level, query.access);
    const series =
      query.level === "study"
        ? new Map<number, DicomJsonDataset>()
        : readSeries(db, unique(rows.map((r) => r.se)), plan.series, query.level);
    const instances =
      query.level === "instance" ? readInstances(db, unique(rows.map((r) => r.i)), plan.instance) : new Map<number, InstanceParts>();
    const matches = rows.map((r) => {
      const instance = r.i === undefined ? undefined : instances.get(r.i);
      const merged: DicomJsonDataset = {
        ...instance?.full,
        ...studies.get(r.st),
        ...(r.se === undefined ? undefined : series.get(r.se)),
        ...instance?.own,
        [INSTANCE_AVAILABILITY]: ONLINE,
      };
      return sortDataset(withoutBulkData(merged));
    });
    return { matches, remaining, truncated: remaining === undefined || remaining > 0 };
  } finally {
    release();
  }
}
