import { type Detector, scan } from './types.js';

/** IBAN length per country (SWIFT IBAN registry), as country code and length. */
const REGISTRY =
  'AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 ' +
  'EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 ' +
  'KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 ' +
  'PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 ' +
  'UA29 VA22 VG24 XK20 YE30';
export const IBAN_LENGTHS: Readonly<Record<string, number>> = Object.fromEntries(
  REGISTRY.split(' ').map((e) => [e.slice(0, 2), Number(e.slice(2))]),
);

/** Country code, check digits, then a run of letters, digits and spaces; cut to the country's length below. */
const CANDIDATE = /(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}[ A-Za-z0-9]{11,44}/g;

/** ISO 13616 check: move the first four characters to the end, letters to numbers, the result mod 97 is 1. */
export function ibanValid(iban: string): boolean {
  const s = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) rem = (rem * 10 + (c - 48)) % 97;
    else if (c >= 65 && c <= 90) rem = (rem * 100 + (c - 55)) % 97;
    else return false;
  }
  return rem === 1;
}

export const iban: Detector = {
  name: 'iban',
  label: 'IBAN',
  priority: 1,
  find(text) {
    return scan(
      CANDIDATE,
      text,
      (m) => {
        const s = m[0];
        const want = IBAN_LENGTHS[s.slice(0, 2).toUpperCase()];
        if (!want) return null;
        // Take exactly the country's length of characters; the rest of the run belongs to the sentence.
        let n = 0;
        let end = 0;
        let upper = false;
        let lower = false;
        while (end < s.length && n < want) {
          const c = s.charCodeAt(end++);
          if (c === 32) {
            // Single spaces between groups only.
            if (s.charCodeAt(end) === 32 || end === s.length) return null;
            continue;
          }
          n++;
          if (c >= 97) lower = true;
          else if (c >= 65) upper = true;
        }
        // Mixed case is not how anyone writes an IBAN: all upper or all lower.
        if (n < want || (upper && lower)) return null;
        const next = text[m.index + end];
        if (next !== undefined && /[A-Za-z0-9]/.test(next)) return null;
        const norm = s.slice(0, end).replace(/ /g, '').toUpperCase();
        return ibanValid(norm) ? { start: m.index, end: m.index + end } : null;
      },
      'iban',
      'iban',
    );
  },
};
