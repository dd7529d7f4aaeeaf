/**
 * The DICOM data dictionary (PS3.6), taken from dcmjs's packed copy of the standard rather than
 * typed by hand, plus its private dictionary for well-known private creators.
 */
import dcmjs from "dcmjs";
import { makeTag, type Tag, tagElement, tagGroup, tagToHex } from "./tag.js";
import { isVr, type Vr } from "./vr.js";

/**
 * The VR column of PS3.6. Ambiguous entries keep every possibility ("OB or OW", "US or SS") and
 * are resolved against the dataset where the encoding does not say (see resolveAmbiguousVr).
 */
export type DictionaryVr = Vr | "OB or OW" | "US or SS" | "US or OW";

export interface DictionaryEntry {
  tag: Tag;
  keyword: string;
  vr: DictionaryVr;
  vm: string;
  retired: boolean;
}

interface DcmjsEntry {
  tag: string;
  vr: string;
  vm: string;
  name: string;
}

interface DcmjsDictionary {
  dictionary: Record<string, DcmjsEntry | undefined>;
  nameMap: Record<string, DcmjsEntry | undefined>;
}

const source = (dcmjs as unknown as { data: { DicomMetaDictionary: DcmjsDictionary } }).data.DicomMetaDictionary;

function toDictionaryVr(vr: string): DictionaryVr | undefined {
  switch (vr) {
    case "ox":
      return "OB or OW";
    case "xs":
      return "US or SS";
    case "lt":
      return "US or OW";
    case "up":
      return "UL";
    default:
      return isVr(vr) ? vr : undefined;
  }
}

function toEntry(tag: Tag, e: DcmjsEntry): DictionaryEntry | undefined {
  const vr = toDictionaryVr(e.vr);
  if (!vr) return undefined;
  const retired = e.name.startsWith("RETIRED_");
  return { tag, keyword: retired ? e.name.slice(8) : e.name, vr, vm: e.vm, retired };
}

const byTag = new Map<Tag, DictionaryEntry | null>();

/** The standard dictionary entry of a tag, including repeating groups such as (60xx,3000). */
export function lookupTag(tag: Tag): DictionaryEntry | undefined {
  const cached = byTag.get(tag);
  if (cached !== undefined) return cached ?? undefined;
  let entry: DictionaryEntry | undefined;
  if (tagElement(tag) === 0 && tagGroup(tag) !== 0xfffe) {
    // Group lengths (gggg,0000) are UL in every group (PS3.5 §7.2), though PS3.6 lists few.
    entry = {
      tag,
      keyword: tag === 0x00020000 ? "FileMetaInformationGroupLength" : "GroupLength",
      vr: "UL",
      vm: "1",
      retired: tag !== 0x00020000,
    };
  } else {
    const e = source.dictionary[tagToHex(tag)];
    entry = e ? toEntry(tag, e) : undefined;
  }
  byTag.set(tag, entry ?? null);
  return entry;
}

let byKeyword: Map<string, Tag> | undefined;

/** Tag of a standard keyword ("StudyInstanceUID" → 0x0020000D), retired keywords included. */
export function tagForKeyword(keyword: string): Tag | undefined {
  if (!byKeyword) {
    byKeyword = new Map();
    for (const [name, e] of Object.entries(source.nameMap)) {
      if (!e) continue;
      const hex = e.tag.replace(/[(),]/g, "");
      if (!/^[0-9A-Fa-f]{8}$/.test(hex)) continue;
      const tag = Number.parseInt(hex, 16) >>> 0;
      byKeyword.set(name.startsWith("RETIRED_") ? name.slice(8) : name, tag);
    }
  }
  return byKeyword.get(keyword);
}

export const keywordOf = (tag: Tag): string | undefined => lookupTag(tag)?.keyword;

const privateCache = new Map<string, DictionaryEntry | null>();

/**
 * Entry of a private data element from its creator, e.g. (0019,"GEMS_ACQU_01",24).
 * `tag` is the element as found in the dataset; only its group and low byte matter.
 */
export function lookupPrivateTag(tag: Tag, creator: string): DictionaryEntry | undefined {
  const group = tagGroup(tag).toString(16).toUpperCase().padStart(4, "0");
  const low = (tagElement(tag) & 0xff).toString(16).padStart(2, "0");
  const key = `${group},"${creator}",${low}`;
  const cached = privateCache.get(key);
  if (cached !== undefined) return cached ?? undefined;
  // dcmjs's private dictionary mixes upper- and lower-case element hex and group hex.
  const candidates = [
    `(${group},"${creator}",${low})`,
    `(${group},"${creator}",${low.toUpperCase()})`,
    `(${group.toLowerCase()},"${creator}",${low})`,
    `(${group.toLowerCase()},"${creator}",${low.toUpperCase()})`,
  ];
  let entry: DictionaryEntry | undefined;
  for (const c of candidates) {
    const e = source.dictionary[c];
    if (e) {
      entry = toEntry(makeTag(tagGroup(tag), tagElement(tag)), e);
      break;
    }
  }
  privateCache.set(key, entry ?? null);
  return entry;
}
