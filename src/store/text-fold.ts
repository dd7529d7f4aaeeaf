/** Text folding for case- and accent-insensitive matching (QIDO fuzzymatching, PN matching). */

/** Upper case without diacritics: "Müller^Zoë" → "MULLER^ZOE". Same on index and query sides. */
export function foldText(text: string): string {
  return text.normalize("NFD").replace(/\p{M}/gu, "").toUpperCase();
}
