/**
 * A small list of well-known jailbreak and prompt-injection phrasings, each matched case-insensitively. The rules are
 * ASCII and use flag `i` alone: V8 runs them 5-30x faster than with `iu` (all six scan a 1 MB prompt in ~5 ms), and
 * gaps between key words are bounded (`[^\n]{0,30}?`), so no rule backtracks far. Text is matched raw and folded
 * (text.ts `fold`), so full-width letters and zero-width splits do not hide a phrase. What a rule cannot see
 * (paraphrases, other languages) is left to the perplexity checks and, better, a trained classifier.
 */
export interface JailbreakPattern {
  label: string;
  why: string;
  re: RegExp;
}

const rx = (source: string) => new RegExp(source, 'i');
/** Up to n characters on one line: the words of a rule must be near each other. */
const near = (n: number) => `[^\\n]{0,${n}}?`;

export const PATTERNS: readonly JailbreakPattern[] = [
  {
    label: 'ignore_previous_instructions',
    why: 'asks the model to drop the instructions it was given',
    re: rx(
      `\\b(?:ignore|disregard|forget|override|bypass|skip)\\b${near(30)}\\b(?:all|any|your|previous|prior|above|earlier|preceding|initial|original|system)\\b${near(30)}\\b(?:instructions?|prompts?|rules|directions|guidelines|guardrails|constraints)\\b`,
    ),
  },
  {
    label: 'dan_developer_mode',
    why: 'DAN ("do anything now"), developer mode and other persona jailbreaks',
    re: rx(
      `\\bdo anything now\\b|\\bDAN mode\\b|\\b(?:act|pretend|behave|roleplay|role-play)\\b${near(20)}\\bas (?:a |an )?DAN\\b|\\bdeveloper mode\\b${near(20)}\\b(?:enabled|on|activated|output)\\b|\\b(?:enable|activate|enter)\\b${near(15)}\\bdeveloper mode\\b|\\bjailbr(?:oken|eak mode)\\b|\\bstay in character\\b`,
    ),
  },
  {
    label: 'you_are_now',
    why: 'rewrites who the model is ("you are now ...", "from now on you will ...")',
    re: rx(
      `\\byou are now\\b|\\bfrom now on,? you(?:'ll| are| will| must| shall)\\b|\\bpretend (?:that )?you (?:are|have) no\\b`,
    ),
  },
  {
    label: 'system_prompt_extraction',
    why: 'asks for the hidden system prompt or the text above the conversation',
    re: rx(
      `\\b(?:reveal|show|print|repeat|output|display|tell me|give me|leak|what (?:is|are|was|were))\\b${near(30)}\\b(?:your|the)\\s+(?:system|initial|hidden|original|secret|developer)\\s+(?:prompt|instructions?|message)\\b|\\brepeat\\b${near(20)}\\b(?:words|text|everything)\\s+above\\b`,
    ),
  },
  {
    label: 'encoding_smuggling',
    why: 'instructions hidden in base64, rot13 or hex for the model to decode and follow',
    re: rx(
      `\\b(?:decode|decipher|decrypt|translate)\\b${near(30)}\\b(?:base64|base-64|rot13|rot-13|hex)\\b${near(60)}\\b(?:follow|execute|obey|do|answer|respond)\\b|\\b(?:respond|reply|answer|write)\\b${near(20)}\\b(?:only )?in (?:base64|rot13|rot-13)\\b`,
    ),
  },
  {
    label: 'chat_template_injection',
    why: 'chat-template control tokens in user text, to forge a system or assistant turn',
    re: rx(
      `<\\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|start_header_id|end_header_id|eot_id)\\|>|\\[/?INST\\]|<</?SYS>>|(?:^|\\n)[ \\t]*#{2,3} ?system:`,
    ),
  },
];

export const PATTERN_LABELS = PATTERNS.map((p) => p.label) as [string, ...string[]];

/** Labels of the patterns that match any of the texts. */
export function matchPatterns(patterns: readonly JailbreakPattern[], texts: string[]): string[] {
  return patterns.filter((p) => texts.some((t) => p.re.test(t))).map((p) => p.label);
}
