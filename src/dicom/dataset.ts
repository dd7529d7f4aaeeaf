/**
 * The in-memory dataset: elements keep views of their encoded value bytes (never copies), so
 * parsing is cheap and values are decoded only when asked for (values.ts).
 */
import { isPrivateTag, privateCreatorTagOf, type Tag, Tags, tagElement } from "./tag.js";
import type { Vr } from "./vr.js";

/** One fragment of encapsulated pixel data (PS3.5 A.4). */
export interface Fragment {
  /** Offset of the fragment's bytes in the source buffer (-1 when built in memory). */
  position: number;
  bytes: Uint8Array;
}

export interface EncapsulatedPixelData {
  /** Basic Offset Table entries (empty when the table is empty). */
  basicOffsetTable: number[];
  fragments: Fragment[];
  /** The encoded value as read: items and all, without the sequence delimiter. */
  encoded?: Uint8Array;
}

export interface Element {
  tag: Tag;
  vr: Vr;
  /** Encoded value, in the owning dataset's byte order (absent for SQ and encapsulated pixel data). */
  bytes?: Uint8Array;
  /** Sequence items (SQ). */
  items?: Dataset[];
  /** Encapsulated pixel data. */
  encapsulated?: EncapsulatedPixelData;
  /** Offset of the value in the source buffer; -1 when built in memory. */
  position: number;
}

export class Dataset {
  private readonly map = new Map<Tag, Element>();
  private ordered = true;
  private lastTag = -1;

  constructor(
    /** Byte order of the values held in this dataset. */
    readonly littleEndian = true,
    /** The dataset that holds the sequence this item is in: character set is inherited from it. */
    readonly parent?: Dataset,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get(tag: Tag): Element | undefined {
    return this.map.get(tag);
  }

  has(tag: Tag): boolean {
    return this.map.has(tag);
  }

  set(element: Element): void {
    if (element.tag < this.lastTag && !this.map.has(element.tag)) this.ordered = false;
    this.lastTag = Math.max(this.lastTag, element.tag);
    this.map.set(element.tag, element);
  }

  delete(tag: Tag): boolean {
    return this.map.delete(tag);
  }

  /** Elements in ascending tag order (the order DICOM requires). */
  elements(): Element[] {
    const list = [...this.map.values()];
    if (!this.ordered) {
      list.sort((a, b) => a.tag - b.tag);
      this.map.clear();
      for (const el of list) this.map.set(el.tag, el);
      this.ordered = true;
    }
    return list;
  }

  /** The private creator that reserved the block of a private element, e.g. "GEMS_ACQU_01". */
  privateCreatorOf(tag: Tag): string | undefined {
    if (!isPrivateTag(tag) || tagElement(tag) < 0x1000) return undefined;
    const creator = this.map.get(privateCreatorTagOf(tag));
    if (!creator?.bytes) return undefined;
    return latin1Trim(creator.bytes);
  }

  /** Raw values of Specific Character Set in force for this dataset (its own, else its parent's). */
  characterSetValues(): string[] {
    const el = this.map.get(Tags.SpecificCharacterSet);
    if (el?.bytes) return latin1Trim(el.bytes).split("\\");
    return this.parent ? this.parent.characterSetValues() : [];
  }
}

/** ASCII/latin1 text without trailing spaces and NULs; for values that are ASCII by definition. */
export function latin1Trim(bytes: Uint8Array): string {
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x20 || bytes[end - 1] === 0x00)) end--;
  let start = 0;
  while (start < end && bytes[start] === 0x20) start++;
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString("latin1");
}
