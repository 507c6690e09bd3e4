/** A plain-text table for the console: columns padded to their widest cell, `right(i)` columns right-aligned. */
export function textTable(head: string[], body: string[][], right: (column: number) => boolean): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right(i) ? c.padStart(w[i] as number) : c.padEnd(w[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...body.map(line)].join('\n');
}
