import { isIPv6 } from 'node:net';
import { type Detector, type Finding, scan } from './types.js';

/** Dotted quads not inside a longer dotted run (so 1.2.3.4.5 and v1.2.3.4 are not addresses). */
const IPV4 = /(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)/g;
/** A run of hex digits, colons and dots with at least two colons; parsed by node:net below. */
const IPV6 = /(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]{1,44}(?![\w:])/g;

const octet = (s: string) => (s.length === 1 || s[0] !== '0') && Number(s) <= 255;

function v6(m: RegExpExecArray): { start: number; end: number } | null {
  let s = m[0].replace(/\.+$/, '');
  if (!isIPv6(s) && s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  if (!isIPv6(s)) return null;
  // "::" or "::1"-like runs with almost nothing in them are more often punctuation than addresses.
  if ((s.match(/[0-9A-Fa-f]/g)?.length ?? 0) < 2) return null;
  return { start: m.index, end: m.index + s.length };
}

export const ip: Detector = {
  name: 'ip',
  label: 'IP',
  priority: 5,
  find(text) {
    const out: Finding[] = scan(
      IPV4,
      text,
      (m) => m[0].split('.').every(octet) && { start: m.index, end: m.index + m[0].length },
      'ip',
      'ipv4',
    );
    if (text.includes(':')) out.push(...scan(IPV6, text, v6, 'ip', 'ipv6'));
    return out;
  },
};
