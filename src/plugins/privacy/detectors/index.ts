import { creditCard } from './creditCard.js';
import { email } from './email.js';
import { iban } from './iban.js';
import { ip } from './ip.js';
import { phone } from './phone.js';
import { secret } from './secret.js';
import { ssn } from './ssn.js';
import type { Detector, DetectorName, Finding } from './types.js';

export type { Detector, DetectorName, Finding } from './types.js';
export { DETECTORS } from './types.js';

export const DETECTOR_LIST: readonly Detector[] = [secret, iban, creditCard, email, ssn, ip, phone];
export const DETECTOR_BY_NAME: ReadonlyMap<DetectorName, Detector> = new Map(DETECTOR_LIST.map((d) => [d.name, d]));

/**
 * Every detection of the given detectors in `text`, sorted by position and without overlaps: where two overlap
 * (an IBAN whose digits also look like a phone number, an IPv4 tail inside an IPv6 address) the more specific
 * detector wins, then the longer span, then the earlier one.
 */
export function detect(
  text: string,
  enabled: ReadonlySet<DetectorName> | null = null,
  /** Adds each detector's time (ms) here, for per-check latency reports. */
  times?: Map<DetectorName, number>,
): Finding[] {
  const all: Finding[] = [];
  for (const d of DETECTOR_LIST) {
    if (enabled && !enabled.has(d.name)) continue;
    const start = times ? performance.now() : 0;
    all.push(...d.find(text));
    if (times) times.set(d.name, (times.get(d.name) ?? 0) + performance.now() - start);
  }
  if (all.length < 2) return all;
  const rank = (f: Finding) => DETECTOR_BY_NAME.get(f.detector)?.priority ?? 99;
  all.sort((a, b) => rank(a) - rank(b) || b.end - b.start - (a.end - a.start) || a.start - b.start);
  // Spans are short and accepted ones never overlap, so marking their characters keeps this linear.
  const taken = new Uint8Array(text.length);
  const kept: Finding[] = [];
  for (const f of all) {
    let free = true;
    for (let i = f.start; i < f.end; i++)
      if (taken[i]) {
        free = false;
        break;
      }
    if (!free) continue;
    taken.fill(1, f.start, f.end);
    kept.push(f);
  }
  return kept.sort((a, b) => a.start - b.start);
}
