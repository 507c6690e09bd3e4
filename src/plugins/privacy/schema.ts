import { z } from 'zod';

/** redact: replace with a placeholder (restored in the answer); block: 400 guardrail_blocked; flag: report only. */
export const PrivacyActionSchema = z.enum(['redact', 'block', 'flag', 'off']);
export type PrivacyAction = z.infer<typeof PrivacyActionSchema>;

const Detector = z.strictObject({ action: PrivacyActionSchema.default('redact') }).prefault({});

export const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'] as const;

/** `{TYPE}` and `{N}` between delimiters that are not letters, digits, spaces, braces, quotes or backslashes: `[EMAIL_1]`. */
export const PLACEHOLDER_FORMAT =
  /^([^A-Za-z0-9\s{}"\\]{1,4})\{TYPE\}([^A-Za-z0-9\s{}"\\]{0,2})\{N\}([^A-Za-z0-9\s{}"\\]{1,4})$/;

export const PrivacyConfigSchema = z.strictObject({
  detectors: z
    .strictObject({
      email: Detector,
      /** International (+44 20 7946 0958, 0049 30 1234567) and North American ((415) 555-2671) formats. */
      phone: Detector,
      /** 13-19 digits, Luhn-valid, major networks. */
      credit_card: Detector,
      /** Country length and mod-97 check. */
      iban: Detector,
      /** IPv4 (octets 0-255) and IPv6. */
      ip: Detector,
      /** API keys and tokens of known formats, JWTs, PEM private keys, `password: ...` style assignments. */
      secret: Detector,
      /** US SSNs outside the never-issued ranges. */
      ssn: Detector,
    })
    .prefault({}),
  /** Chat messages of these roles are scanned (earlier assistant turns carry restored values too). */
  roles: z
    .array(z.enum(ROLES))
    .min(1)
    .default([...ROLES]),
  /** Scan only the last message (e.g. when earlier turns were scanned on their way in before). */
  lastMessageOnly: z.boolean().default(false),
  /** Scan tool-call arguments of assistant messages. */
  toolArguments: z.boolean().default(true),
  /** Scan `/v1/completions` prompts (and `suffix`). */
  completions: z.boolean().default(true),
  /** Put the original values back into the answer, streamed or not. */
  restore: z.boolean().default(true),
  /** How a redacted value reads upstream. Same value, same placeholder within a request. */
  placeholder: z
    .string()
    .regex(PLACEHOLDER_FORMAT, 'like "[{TYPE}_{N}]": {TYPE} then {N}, between non-alphanumeric delimiters')
    .default('[{TYPE}_{N}]'),
});

export type PrivacyConfig = z.infer<typeof PrivacyConfigSchema>;
