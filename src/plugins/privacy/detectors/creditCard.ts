import { type Detector, scan } from './types.js';

/**
 * 13 to 19 digits: contiguous, or a group of 4 then 2-5 groups of 3-6 digits with one separator (space or dash):
 * 4-4-4-4, 4-6-5 (Amex), 4-6-4 (Diners), 4-4-4-4-3. Checked below.
 */
const CANDIDATE = /(?<![\d.,-])\d{4}(?: \d{3,6}(?: \d{3,6}){1,4}|-\d{3,6}(?:-\d{3,6}){1,4}|\d{9,15})(?!\d)/g;

/** Luhn over the digits of `s` before `end`, skipping separators. */
export function luhn(s: string, end = s.length): boolean {
  let sum = 0;
  let double = false;
  for (let i = end - 1; i >= 0; i--) {
    let d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) continue;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * A card number: major networks only (first digit 2-6: Mastercard 2-series, Amex/Diners/JCB 3, Visa 4, Mastercard
 * and Maestro 5, Discover/UnionPay 6) and Luhn-valid. When a grouped run fails, shorter runs ending at a group
 * boundary are tried ("4111 1111 1111 1111 123" with a CVV after it). Returns the length of the card, or 0.
 * Allocation-free: hostile input makes a candidate of every group.
 */
function validate(s: string, sep: string | undefined): number {
  const first = s.charCodeAt(0);
  if (first < 50 || first > 54) return 0;
  if (!sep) return luhn(s) ? s.length : 0;
  let seps = 0;
  for (let i = 0; i < s.length; i++) if (s[i] === sep) seps++;
  for (let end = s.length; end > 0; end = s.lastIndexOf(sep, end - 1), seps--) {
    const digits = end - seps;
    if (digits < 13) break;
    if (digits <= 19 && luhn(s, end)) return end;
  }
  return 0;
}

export const creditCard: Detector = {
  name: 'credit_card',
  label: 'CREDIT_CARD',
  priority: 2,
  find(text) {
    return scan(
      CANDIDATE,
      text,
      (m) => {
        const s = m[0];
        const len = validate(s, s[4] === ' ' || s[4] === '-' ? s[4] : undefined);
        return len ? { start: m.index, end: m.index + len } : null;
      },
      'credit_card',
      'credit_card',
    );
  },
};
