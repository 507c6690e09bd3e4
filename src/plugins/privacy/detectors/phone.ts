import { type Detector, type Finding, scan } from './types.js';

/**
 * International: + or 00, a country code, then digits with single separators; 8 to 15 digits in all (E.164). Not
 * right after another group of digits (the tail of a card number or an account number is not a phone).
 */
const INTERNATIONAL = /(?<![\w+]|\d[ .-])(?:\+|00)[1-9][0-9 ().-]{6,24}[0-9](?![0-9])/g;
/**
 * North American: (415) 555-2671, 415-555-2671, 415.555.2671, 415 555 2671, 1-415-555-2671. The separators are
 * required and consistent, so plain 10-digit numbers, dates (2024-05-17) and SSNs (123-45-6789) do not match.
 */
const NANP =
  /(?<![\w+.-]|\d[ .-])(?:1([ .-]))?(?:\([2-9]\d{2}\) ?[2-9]\d{2}[ .-]\d{4}|[2-9]\d{2}([ .-])[2-9]\d{2}\2\d{4})(?![\w-]|\.\d)/g;

function international(m: RegExpExecArray): { start: number; end: number } | null {
  const s = m[0];
  // Single separators only, except a space next to a parenthesis: "+1 (415) 555-2671".
  if (/[ .-]{2}|\(\)|[.-][()]|[()][.-]/.test(s.replace(/\) /g, ')').replace(/ \(/g, '('))) return null;
  let open = 0;
  for (const c of s) {
    if (c === '(') open++;
    else if (c === ')' && --open < 0) return null;
  }
  if (open !== 0) return null;
  // Trailing groups beyond 15 digits belong to something else ("+44 20 7946 0958 2024").
  let end = s.length;
  const groups = [...s.matchAll(/[0-9]+/g)];
  let digits = groups.reduce((n, g) => n + g[0].length, 0);
  while (digits > 15 && groups.length > 2) {
    const g = groups.pop() as RegExpExecArray;
    digits -= g[0].length;
    const prev = groups.at(-1) as RegExpExecArray;
    end = prev.index + prev[0].length;
  }
  const prefix = s.startsWith('00') ? 2 : 1;
  if (digits - (prefix === 2 ? 2 : 0) < 8 || digits > 15) return null;
  // "00" followed by a bare digit string is more often an id than a phone: ask for grouping.
  if (prefix === 2 && !/[ ().-]/.test(s.slice(0, end))) return null;
  return { start: m.index, end: m.index + end };
}

export const phone: Detector = {
  name: 'phone',
  label: 'PHONE',
  priority: 6,
  find(text) {
    const out: Finding[] = scan(INTERNATIONAL, text, international, 'phone', 'phone');
    out.push(...scan(NANP, text, (m) => ({ start: m.index, end: m.index + m[0].length }), 'phone', 'phone'));
    return out;
  },
};
