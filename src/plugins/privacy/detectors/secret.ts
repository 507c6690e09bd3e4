import { type Detector, type Finding, scan, whole } from './types.js';

interface Pattern {
  kind: string;
  re: RegExp;
  /** Capture group holding the secret when the match carries context around it (e.g. the key name). */
  group?: number;
  /** Cheap substring every match contains, to skip the regex on texts without it. */
  hint?: string;
  valid?: (value: string) => boolean;
}

const mixed = (v: string) => /\d/.test(v) && /[A-Za-z]/.test(v);
/** Values an assignment names but that are not secrets: templates, references, masks, words. */
const NOT_A_VALUE =
  /^(?:[$<{[%*]|x{4,}$|\*{4,}$|(?:null|none|undefined|true|false|string|required|optional|redacted|changeme|example|placeholder|your[-_]?\w*|process\.env\.\w*|os\.environ\w*)$)/i;

/**
 * Specific token formats first: on equal spans the earlier pattern names the kind. Every quantifier is bounded and
 * every pattern starts where a run starts (lookbehind), so scanning stays linear.
 */
const PATTERNS: Pattern[] = [
  {
    kind: 'openai_key',
    hint: 'sk-',
    re: /(?<![\w-])sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,200}(?![\w-])/g,
    valid: mixed,
  },
  { kind: 'aws_access_key', re: /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])/g },
  { kind: 'github_token', hint: 'gh', re: /(?<!\w)gh[pousr]_[A-Za-z0-9]{36,255}(?!\w)/g },
  { kind: 'github_token', hint: 'github_pat_', re: /(?<!\w)github_pat_[A-Za-z0-9_]{22,255}(?!\w)/g },
  { kind: 'slack_token', hint: 'xox', re: /(?<![\w-])xox[abposre]-[A-Za-z0-9-]{10,250}(?![\w-])/g },
  { kind: 'google_api_key', hint: 'AIza', re: /(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])/g },
  { kind: 'stripe_key', hint: '_live_', re: /(?<!\w)[sr]k_live_[0-9A-Za-z]{16,247}(?!\w)/g },
  { kind: 'stripe_key', hint: '_test_', re: /(?<!\w)[sr]k_test_[0-9A-Za-z]{16,247}(?!\w)/g },
  {
    kind: 'jwt',
    hint: 'eyJ',
    re: /(?<![\w-])eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{0,4096}(?![\w-])/g,
  },
  { kind: 'bearer_token', hint: 'earer', re: /(?<!\w)[Bb]earer[ \t]+([A-Za-z0-9._~+/-]{20,2048}=*)/g, group: 1 },
  {
    kind: 'credential',
    re: /(?<![A-Za-z0-9])(?:api[_-]?key|apikey|api[_-]?secret|secret[_-]?key|client[_-]?secret|access[_-]?key(?:[_-]?id)?|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|secret|password|passwd|pwd|passphrase|private[_-]?key)["']?[ \t]*[:=][ \t]*["']?([^\s"'`,;<>\\]{6,256})/gi,
    group: 1,
    valid: (v) => !NOT_A_VALUE.test(v),
  },
];

/** "(password: hunter2)." - a closing bracket or full stop without its opener ends the sentence, not the value. */
function trimClosers(v: string): string {
  let s = v;
  for (;;) {
    const last = s.at(-1);
    const opener = last === ')' ? '(' : last === ']' ? '[' : last === '}' ? '{' : undefined;
    if (last === '.' || (opener && !s.includes(opener))) s = s.slice(0, -1);
    else return s;
  }
}

const PEM_BEGIN = /-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----/g;
const PEM_BODY = /[A-Za-z0-9+/=\r\n \t:-]{0,20000}/y;

/** PEM private key blocks, END line included; a block cut short runs to the end of its base64 body. */
function pem(text: string): Finding[] {
  if (!text.includes('PRIVATE KEY')) return [];
  return scan(
    PEM_BEGIN,
    text,
    (m) => {
      const from = m.index + m[0].length;
      const endAt = text.indexOf('-----END ', from);
      if (endAt !== -1 && endAt - from < 20000) {
        const close = text.indexOf('-----', endAt + 9);
        if (close !== -1 && close - endAt < 80) return { start: m.index, end: close + 5 };
      }
      PEM_BODY.lastIndex = from;
      const body = PEM_BODY.exec(text);
      return { start: m.index, end: from + (body ? body[0].trimEnd().length : 0) };
    },
    'secret',
    'private_key',
  );
}

export const secret: Detector = {
  name: 'secret',
  label: 'SECRET',
  priority: 0,
  find(text) {
    const out = pem(text);
    for (const p of PATTERNS) {
      if (p.hint && !text.includes(p.hint)) continue;
      out.push(
        ...scan(
          p.re,
          text,
          (m) => {
            if (!p.group) return p.valid && !p.valid(m[0]) ? null : whole(m);
            const value = trimClosers(m[p.group] as string);
            if (p.valid && !p.valid(value)) return null;
            const end = m.index + m[0].length - ((m[p.group] as string).length - value.length);
            // The value ends the match, so its start is measured back from the end.
            return { start: end - value.length, end };
          },
          'secret',
          p.kind,
        ),
      );
    }
    return out;
  },
};
