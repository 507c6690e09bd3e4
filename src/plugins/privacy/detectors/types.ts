export const DETECTORS = ['email', 'phone', 'credit_card', 'iban', 'ip', 'secret', 'ssn'] as const;
export type DetectorName = (typeof DETECTORS)[number];

/** One detection: where it is and what kind it is. Values are read from the text by offset, never copied here. */
export interface Finding {
  detector: DetectorName;
  /** Sub-category reported to clients (e.g. `aws_access_key`, `ipv6`); never part of the value. */
  kind: string;
  start: number;
  end: number;
}

export interface Detector {
  name: DetectorName;
  /** Placeholder label: `[EMAIL_1]`. */
  label: string;
  /** Lower wins when two detections overlap (then the longer one, then the earlier one). */
  priority: number;
  find(text: string): Finding[];
}

/** Every match of a global regex, with a veto and an optional span narrowing. Regexes must be linear-time. */
export function scan(
  re: RegExp,
  text: string,
  accept: (m: RegExpExecArray) => { start: number; end: number; kind?: string } | null | false,
  detector: DetectorName,
  kind: string,
): Finding[] {
  const out: Finding[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const span = accept(m);
    if (span) {
      out.push({ detector, kind: span.kind ?? kind, start: span.start, end: span.end });
      re.lastIndex = Math.max(span.end, m.index + 1);
    } else {
      // A rejected candidate may hide a real one starting inside it.
      re.lastIndex = m.index + 1;
    }
  }
  return out;
}

export const whole = (m: RegExpExecArray) => ({ start: m.index, end: m.index + m[0].length });
