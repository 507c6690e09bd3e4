import { type Detector, type Finding, scan } from './types.js';

/** AAA-GG-SSSS with one consistent separator (dash or space). */
const GROUPED = /(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])/g;
/** Nine bare digits only count next to a word saying what they are. */
const BARE = /(?<![\w-])(\d{3})(\d{2})(\d{4})(?![\w-])/g;
const CONTEXT = /(?:\bssn|social[ -]security|\bss#|\bSSN#?)[^\n]{0,30}$/i;

/** Never issued: area 000, 666 or 900-999, group 00, serial 0000. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  if (area === '000' || area === '666' || area[0] === '9') return false;
  return group !== '00' && serial !== '0000';
}

export const ssn: Detector = {
  name: 'ssn',
  label: 'SSN',
  priority: 4,
  find(text) {
    const ok = (m: RegExpExecArray) =>
      ssnValid(m[1] as string, m[3] as string, m[4] as string) && { start: m.index, end: m.index + m[0].length };
    const out: Finding[] = scan(GROUPED, text, ok, 'ssn', 'ssn');
    out.push(
      ...scan(
        BARE,
        text,
        (m) =>
          ssnValid(m[1] as string, m[2] as string, m[3] as string) &&
          CONTEXT.test(text.slice(Math.max(0, m.index - 40), m.index)) && { start: m.index, end: m.index + 9 },
        'ssn',
        'ssn',
      ),
    );
    return out;
  },
};
