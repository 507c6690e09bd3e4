import type { WindowRequest } from './scorer.js';

const PUNCT: Record<string, string> = {
  '\u2018': "'",
  '\u2019': "'",
  '\u201a': "'",
  '\u201b': "'",
  '\u2032': "'",
  '\u201c': '"',
  '\u201d': '"',
  '\u201e': '"',
  '\u201f': '"',
  '\u2033': '"',
  '\u00ab': '"',
  '\u00bb': '"',
  '\u2039': "'",
  '\u203a': "'",
  '\u2010': '-',
  '\u2011': '-',
  '\u2012': '-',
  '\u2013': '-',
  '\u2014': '-',
  '\u2015': '-',
  '\u2212': '-',
  '\u2022': '*',
  '\u00b7': '*',
};
const PUNCT_RE = new RegExp(`[${Object.keys(PUNCT).join('')}]`, 'g');

/**
 * Folds text towards the ASCII the tandem models were trained on: compatibility forms (NFKD: ligatures, full-width
 * letters, no-break spaces, the ellipsis), accents dropped, typographic quotes and dashes made plain, zero-width
 * characters removed. Curly apostrophes alone made ordinary prose look like an attack to a model that never saw them;
 * letters of other scripts stay as they are.
 */
export function fold(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .replace(/[\u200b-\u200d\u2060\ufeff]/g, '')
    .replace(PUNCT_RE, (c) => PUNCT[c] ?? c);
}

const EMOJI =
  /[\p{Extended_Pictographic}\u{1F1E6}-\u{1F1FF}\u{1F3FB}-\u{1F3FF}\u{FE0E}\u{FE0F}\u{20E3}\u{E0020}-\u{E007F}]/gu;
const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"'`)\]]+/giu;

/**
 * What the perplexity checks score: `fold`, emoji removed, URLs replaced by the word `URL`. A model that learned from
 * dictionaries and the Bible finds a query string or an emoji as surprising as an adversarial suffix; neither is one.
 */
export function normalize(text: string): string {
  return fold(text).replace(EMOJI, '').replace(URL_RE, 'URL');
}

/** Share of a text's characters outside ASCII (after normalising). The checks do not judge windows above a limit. */
export function nonAsciiShare(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) n++;
  return text.length ? n / text.length : 0;
}

/**
 * Share of characters that no text contains: C0 controls other than tab, newline and carriage return, DEL and C1
 * controls, U+FFFD (what invalid UTF-8 decodes to) and the non-characters U+FFFE/U+FFFF. One linear pass.
 */
export function nonPrintableRatio(text: string): { ratio: number; count: number } {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 9 && c !== 10 && c !== 13) || (c >= 0x7f && c <= 0x9f) || c >= 0xfffd) count++;
  }
  return { ratio: text.length ? count / text.length : 0, count };
}

export interface PromptWindows {
  /** The start of the text, for length/perplexity: at most `bound` characters, then at most the model's context. */
  full: WindowRequest;
  /** The first `words` words, scored on their own. */
  prefix: WindowRequest;
  /** The last `words` words, scored on their own. */
  suffix: WindowRequest;
  /** Whitespace-separated words; a lower bound when the text is longer than the two slices looked at. */
  words: number;
}

const WS = /\s+/;

/**
 * The three windows NeMo Guardrails' heuristics score, cut from a text of any size without reading all of it: only
 * the first and last `bound` characters are split into words and normalised (a 1 MB prompt costs what a 4 kB one does).
 */
export function promptWindows(text: string, words: number, bound: number, norm: boolean): PromptWindows {
  const f = norm ? normalize : (s: string) => s;
  const head = f(text.length > bound ? text.slice(0, bound) : text);
  const tail = text.length > bound ? f(text.slice(-bound)) : head;
  const headWords = head.trim().split(WS).filter(Boolean);
  const tailWords = tail === head ? headWords : tail.trim().split(WS).filter(Boolean);
  const counted = text.length > 2 * bound ? headWords.length + tailWords.length : headWords.length;
  return {
    full: { text: head, keep: 'head' },
    prefix: { text: headWords.slice(0, words).join(' '), keep: 'head' },
    suffix: { text: tailWords.slice(-words).join(' '), keep: 'tail' },
    words: counted,
  };
}
