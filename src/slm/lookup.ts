/**
 * Prompt-lookup drafting: the tokens that followed the most recent earlier occurrence of the sequence's last n-gram
 * (longest n first, down to 1). Empty when the n-gram never occurred before.
 */
export function promptLookup(tokens: readonly number[], maxNgram: number, count: number, minNgram = 1): number[] {
  if (count <= 0) return [];
  for (let n = Math.min(maxNgram, tokens.length - 1); n >= minNgram; n--) {
    const tail = tokens.length - n;
    for (let start = tail - 1; start >= 0; start--) {
      let same = true;
      for (let i = 0; i < n && same; i++) same = tokens[start + i] === tokens[tail + i];
      if (!same) continue;
      const next = tokens.slice(start + n, Math.min(start + n + count, tokens.length));
      if (next.length) return next;
    }
  }
  return [];
}
