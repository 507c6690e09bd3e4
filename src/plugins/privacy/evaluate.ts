import { DETECTORS, type DetectorName, detect } from './detectors/index.js';

/**
 * A synthetic labelled corpus, generated deterministically (seeded), and precision/recall of the detectors on it.
 * Synthetic means optimistic: the formats are the ones the detectors were written for. To keep the numbers honest
 * the corpus also carries labelled values the detectors are known to miss (unformatted phone numbers, national
 * formats, bare SSNs without context, secrets without a recognisable format or key name) and unlabelled
 * look-alikes they are known to take (version strings shaped like IPv4, Luhn-valid order numbers).
 */

export interface LabelledSpan {
  detector: DetectorName;
  start: number;
  end: number;
}
export interface Sample {
  text: string;
  spans: LabelledSpan[];
}

/** mulberry32: small, fast, deterministic. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
  const digits = (n: number) => Array.from({ length: n }, () => String(int(0, 9))).join('');
  const chars = (n: number, alphabet: string) => Array.from({ length: n }, () => pick([...alphabet])).join('');
  return { next, int, pick, digits, chars };
}
type Rng = ReturnType<typeof rng>;

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const FIRST = ['anna', 'li', 'mohammed', 'sofia', 'kenji', 'olga', 'pierre', 'maria', 'tom', 'aisha'];
const LAST = ['smith', 'garcia', 'chen', 'mueller', 'rossi', 'kowalski', 'nguyen', 'okafor', 'silva', 'dubois'];
const DOMAINS = ['example.com', 'mail.example.org', 'uni.example.ac.uk', 'corp.example.io', 'example.de'];

function luhnComplete(prefix: string, length: number, r: Rng): string {
  const body = prefix + r.digits(length - prefix.length - 1);
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = Number(body[body.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return body + String((10 - (sum % 10)) % 10);
}

function mod97(s: string): number {
  let rem = 0;
  for (const c of s) rem = /\d/.test(c) ? (rem * 10 + Number(c)) % 97 : (rem * 100 + c.charCodeAt(0) - 55) % 97;
  return rem;
}

const IBAN_BBAN: Record<string, (r: Rng) => string> = {
  DE: (r) => r.digits(18),
  GB: (r) => r.chars(4, UPPER) + r.digits(14),
  FR: (r) => r.digits(23),
  NL: (r) => r.chars(4, UPPER) + r.digits(10),
  ES: (r) => r.digits(20),
  IT: (r) => r.chars(1, UPPER) + r.digits(22),
  CH: (r) => r.digits(17),
  NO: (r) => r.digits(11),
  BE: (r) => r.digits(12),
};

function makeIban(r: Rng, country: string, valid: boolean): string {
  const bban = (IBAN_BBAN[country] as (r: Rng) => string)(r);
  let check = 98 - mod97(`${bban + country}00`);
  if (!valid) check = ((check + r.int(1, 96) - 2) % 97) + 2;
  return `${country}${String(check).padStart(2, '0')}${bban}`;
}

const group4 = (s: string) => s.replace(/(.{4})(?=.)/g, '$1 ');

const validArea = (r: Rng) => {
  let a = r.int(1, 899);
  if (a === 666) a = 667;
  return String(a).padStart(3, '0');
};

/** Each generator returns a value and whether it is labelled (and as which detector). */
type Gen = (r: Rng) => { value: string; label: DetectorName | null; prefix?: string };

const POSITIVES: Record<DetectorName, Gen[]> = {
  email: [
    (r) => ({ value: `${r.pick(FIRST)}.${r.pick(LAST)}@${r.pick(DOMAINS)}`, label: 'email' }),
    (r) => ({ value: `${r.pick(FIRST)}_${r.pick(LAST)}+${r.pick(['news', 'x1'])}@${r.pick(DOMAINS)}`, label: 'email' }),
    (r) => ({
      value: `${r.pick(FIRST).toUpperCase()}${r.int(1, 99)}@${r.pick(DOMAINS).toUpperCase()}`,
      label: 'email',
    }),
    (r) => ({ value: `${r.pick(FIRST)}@[10.${r.int(0, 255)}.${r.int(0, 255)}.${r.int(1, 254)}]`, label: 'email' }),
    // Missed: addresses spelt out to dodge scrapers.
    (r) => ({ value: `${r.pick(FIRST)} [at] ${r.pick(DOMAINS).replace(/\./g, ' [dot] ')}`, label: 'email' }),
  ],
  phone: [
    (r) => ({ value: `+44 20 ${r.digits(4)} ${r.digits(4)}`, label: 'phone' }),
    (r) => ({ value: `+49 30 ${r.digits(7)}`, label: 'phone' }),
    (r) => ({
      value: `+33 ${r.int(1, 9)} ${r.digits(2)} ${r.digits(2)} ${r.digits(2)} ${r.digits(2)}`,
      label: 'phone',
    }),
    (r) => ({ value: `+1 (${r.int(200, 999)}) ${r.int(200, 999)}-${r.digits(4)}`, label: 'phone' }),
    (r) => ({ value: `(${r.int(200, 999)}) ${r.int(200, 999)}-${r.digits(4)}`, label: 'phone' }),
    (r) => {
      const s = r.pick(['-', '.', ' ']);
      return { value: `${r.int(200, 999)}${s}${r.int(200, 999)}${s}${r.digits(4)}`, label: 'phone' };
    },
    (r) => ({ value: `0049 ${r.int(30, 89)} ${r.digits(7)}`, label: 'phone' }),
    (r) => ({ value: `+${r.int(2, 9)}${r.digits(10)}`, label: 'phone' }),
    // Missed: unformatted North American numbers and national formats without a country code.
    (r) => ({ value: `${r.int(200, 999)}${r.int(200, 999)}${r.digits(4)}`, label: 'phone' }),
    (r) => ({ value: `020 ${r.digits(4)} ${r.digits(4)}`, label: 'phone' }),
  ],
  credit_card: [
    (r) => ({ value: group4(luhnComplete('4', 16, r)), label: 'credit_card' }),
    (r) => ({ value: luhnComplete(String(r.int(51, 55)), 16, r), label: 'credit_card' }),
    (r) => ({ value: group4(luhnComplete(String(r.int(2221, 2720)), 16, r)).replace(/ /g, '-'), label: 'credit_card' }),
    (r) => {
      const n = luhnComplete(r.pick(['34', '37']), 15, r);
      return { value: `${n.slice(0, 4)} ${n.slice(4, 10)} ${n.slice(10)}`, label: 'credit_card' };
    },
    (r) => ({ value: luhnComplete('6011', 16, r), label: 'credit_card' }),
    (r) => ({ value: group4(luhnComplete('4', 19, r)), label: 'credit_card' }),
  ],
  iban: [
    (r) => ({ value: makeIban(r, r.pick(Object.keys(IBAN_BBAN)), true), label: 'iban' }),
    (r) => ({ value: group4(makeIban(r, r.pick(Object.keys(IBAN_BBAN)), true)), label: 'iban' }),
    (r) => ({ value: makeIban(r, r.pick(Object.keys(IBAN_BBAN)), true).toLowerCase(), label: 'iban' }),
  ],
  ip: [
    (r) => ({ value: `${r.int(1, 223)}.${r.int(0, 255)}.${r.int(0, 255)}.${r.int(1, 254)}`, label: 'ip' }),
    (r) => ({
      value: Array.from({ length: 8 }, () => r.int(0, 0xffff).toString(16)).join(':'),
      label: 'ip',
    }),
    (r) => ({ value: `2001:db8::${r.int(1, 0xffff).toString(16)}:${r.int(1, 0xffff).toString(16)}`, label: 'ip' }),
    (r) => ({ value: `::ffff:192.0.2.${r.int(1, 254)}`, label: 'ip' }),
    (r) => ({ value: `fe80::${r.int(1, 0xffff).toString(16)}`, label: 'ip' }),
  ],
  secret: [
    (r) => ({ value: `sk-proj-${r.chars(40, ALNUM)}`, label: 'secret' }),
    (r) => ({ value: `AKIA${r.chars(16, `${UPPER}234567`)}`, label: 'secret' }),
    (r) => ({ value: `ghp_${r.chars(36, ALNUM)}`, label: 'secret' }),
    (r) => ({ value: `xoxb-${r.digits(12)}-${r.digits(12)}-${r.chars(24, ALNUM)}`, label: 'secret' }),
    (r) => ({ value: `AIza${r.chars(35, ALNUM)}`, label: 'secret' }),
    (r) => ({ value: `sk_live_${r.chars(24, ALNUM)}`, label: 'secret' }),
    (r) => ({
      value: `eyJhbGciOiJIUzI1NiJ9.eyJ${r.chars(30, ALNUM)}.${r.chars(43, `${ALNUM}_-`)}`,
      label: 'secret',
    }),
    (r) => ({
      value: `-----BEGIN RSA PRIVATE KEY-----\n${r.chars(64, ALNUM)}\n${r.chars(40, ALNUM)}==\n-----END RSA PRIVATE KEY-----`,
      label: 'secret',
    }),
    (r) => ({ value: `${r.chars(12, ALNUM)}!${r.digits(2)}`, label: 'secret', prefix: 'password: ' }),
    (r) => ({ value: r.chars(32, '0123456789abcdef'), label: 'secret', prefix: 'OPENAI_API_KEY=' }),
    // Missed: a secret with neither a known format nor a key name in front of it.
    (r) => ({ value: r.chars(40, `${ALNUM}+/`), label: 'secret', prefix: 'and the other one is ' }),
  ],
  ssn: [
    (r) => ({
      value: `${validArea(r)}-${String(r.int(1, 99)).padStart(2, '0')}-${String(r.int(1, 9999)).padStart(4, '0')}`,
      label: 'ssn',
    }),
    (r) => ({
      value: `${validArea(r)} ${String(r.int(1, 99)).padStart(2, '0')} ${String(r.int(1, 9999)).padStart(4, '0')}`,
      label: 'ssn',
    }),
    (r) => ({
      value: `${validArea(r)}${String(r.int(1, 99)).padStart(2, '0')}${String(r.int(1, 9999)).padStart(4, '0')}`,
      label: 'ssn',
      prefix: 'SSN: ',
    }),
    // Missed: nine bare digits with no word saying they are an SSN.
    (r) => ({
      value: `${validArea(r)}${String(r.int(10, 99))}${String(r.int(1000, 9999))}`,
      label: 'ssn',
      prefix: 'number ',
    }),
  ],
};

/** Unlabelled look-alikes: invalid checksums, never-issued ranges, dates, versions, ids. */
const NEGATIVES: Gen[] = [
  (r) => {
    const n = luhnComplete('4', 16, r);
    return { value: group4(n.slice(0, 15) + String((Number(n[15]) + r.int(1, 9)) % 10)), label: null };
  },
  (r) => ({ value: makeIban(r, r.pick(Object.keys(IBAN_BBAN)), false), label: null }),
  (r) => ({ value: `${r.pick(['000', '666', String(r.int(900, 999))])}-${r.digits(2)}-${r.digits(4)}`, label: null }),
  (r) => ({ value: `${validArea(r)}-00-${r.digits(4)}`, label: null }),
  (r) => ({
    value: `${r.int(1990, 2030)}-${String(r.int(1, 12)).padStart(2, '0')}-${String(r.int(1, 28)).padStart(2, '0')}`,
    label: null,
  }),
  (r) => ({ value: `${r.int(1, 12)}/${r.int(1, 28)}/${r.int(1990, 2030)}`, label: null }),
  (r) => ({
    value: `${r.int(0, 23)}:${String(r.int(0, 59)).padStart(2, '0')}:${String(r.int(0, 59)).padStart(2, '0')}`,
    label: null,
  }),
  (r) => ({ value: `v${r.int(0, 9)}.${r.int(0, 20)}.${r.int(0, 99)}`, label: null }),
  (r) => ({ value: `${r.int(256, 999)}.${r.int(0, 255)}.${r.int(0, 255)}.${r.int(0, 255)}`, label: null }),
  (r) => ({ value: `$${r.int(1, 999)},${r.digits(3)}.${r.digits(2)}`, label: null }),
  (r) => ({ value: `${r.int(10000, 99999)}-${r.digits(4)}`, label: null }),
  (r) => ({ value: `${r.int(1, 9)}${r.digits(9)}`, label: null, prefix: 'order #' }),
  (r) => ({
    value: `${r.chars(8, '0123456789abcdef')}-${r.chars(4, '0123456789abcdef')}-4${r.chars(3, '0123456789abcdef')}-a${r.chars(3, '0123456789abcdef')}-${r.chars(12, '0123456789abcdef')}`,
    label: null,
  }),
  (r) => ({ value: Array.from({ length: 6 }, () => r.chars(2, '0123456789ABCDEF')).join(':'), label: null }),
  (r) => ({ value: r.chars(40, '0123456789abcdef'), label: null, prefix: 'commit ' }),
  (r) => ({ value: `978-${r.int(0, 9)}-${r.digits(2)}-${r.digits(6)}-${r.int(0, 9)}`, label: null, prefix: 'ISBN ' }),
  (r) => ({ value: r.pick(['required', 'optional']), label: null, prefix: 'password: ' }),
  (r) => ({ value: r.pick(['$API_KEY', '<your key>', '********']), label: null, prefix: 'api_key=' }),
  (r) => ({ value: `sk-learn-${r.pick(['pipeline', 'model'])}`, label: null }),
  (r) => ({ value: `${r.int(1, 99)} ${r.pick(['apples', 'km', 'items'])} in ${r.int(1900, 2024)}`, label: null }),
  // Taken though unlabelled: four-part version numbers read as IPv4, Luhn-valid 16-digit order numbers as cards.
  (r) => ({ value: `${r.int(1, 9)}.${r.int(0, 20)}.${r.int(0, 20)}.${r.int(0, 200)}`, label: null, prefix: 'build ' }),
  (r) => ({ value: luhnComplete(String(r.int(2, 6)), 16, r), label: null, prefix: 'tracking ' }),
];

const TEMPLATES = [
  (v: string) => `Please reach me at ${v} tomorrow.`,
  (v: string) => `${v}`,
  (v: string) => `My details (${v}) are attached`,
  (v: string) => `{"field": "${v}", "note": "x"}`,
  (v: string) => `Noted: ${v}; more later`,
  (v: string) => `- item ${v}\n- next item`,
];

/** The corpus: every generator many times, in shuffled sentences, some samples mixing two values. */
export function labelledCorpus(seed = 20260101, perGenerator = 24): Sample[] {
  const r = rng(seed);
  const gens: Gen[] = [...Object.values(POSITIVES).flat(), ...NEGATIVES];
  const samples: Sample[] = [];
  const render = (g: Gen, text: string, spans: LabelledSpan[]) => {
    const { value, label, prefix = '' } = g(r);
    const tpl = r.pick(TEMPLATES)(`${prefix}\u0000`);
    const at = text.length + tpl.indexOf('\u0000');
    if (label) spans.push({ detector: label, start: at, end: at + value.length });
    return text + tpl.replace('\u0000', value);
  };
  for (const g of gens)
    for (let i = 0; i < perGenerator; i++) {
      const spans: LabelledSpan[] = [];
      let text = render(g, '', spans);
      if (r.next() < 0.3) text = render(r.pick(gens), `${text} `, spans);
      samples.push({ text, spans });
    }
  return samples;
}

export interface DetectorScore {
  detector: DetectorName;
  labelled: number;
  tp: number;
  fp: number;
  fn: number;
  precision: number;
  recall: number;
  f1: number;
}

/** Exact-span scoring: a detection counts only if it has the labelled detector, start and end. */
export function evaluateDetectors(samples: Sample[] = labelledCorpus()): DetectorScore[] {
  const counts = new Map(DETECTORS.map((d) => [d, { labelled: 0, tp: 0, fp: 0, fn: 0 }]));
  for (const s of samples) {
    const found = detect(s.text);
    const key = (x: { detector: string; start: number; end: number }) => `${x.detector}:${x.start}:${x.end}`;
    const want = new Set(s.spans.map(key));
    const got = new Set(found.map(key));
    for (const l of s.spans) {
      const c = counts.get(l.detector)!;
      c.labelled++;
      if (got.has(key(l))) c.tp++;
      else c.fn++;
    }
    for (const f of found) if (!want.has(key(f))) counts.get(f.detector)!.fp++;
  }
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return DETECTORS.map((detector) => {
    const c = counts.get(detector)!;
    const precision = c.tp + c.fp ? c.tp / (c.tp + c.fp) : 1;
    const recall = c.tp + c.fn ? c.tp / (c.tp + c.fn) : 1;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { detector, ...c, precision: round(precision), recall: round(recall), f1: round(f1) };
  });
}

/** The evaluation as the Markdown table the README carries. */
export function evaluationMarkdown(scores: DetectorScore[] = evaluateDetectors()): string {
  const samples = labelledCorpus();
  const rows = scores.map(
    (s) => `| ${s.detector} | ${s.labelled} | ${s.tp} | ${s.fp} | ${s.fn} | ${s.precision} | ${s.recall} | ${s.f1} |`,
  );
  return [
    `Synthetic corpus from \`labelledCorpus()\` (seed 20260101): ${samples.length} texts, ${samples.reduce((n, s) => n + s.spans.length, 0)} labelled values. Exact-span match.`,
    '',
    '| detector | labelled | TP | FP | FN | precision | recall | F1 |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
    ...rows,
  ].join('\n');
}
