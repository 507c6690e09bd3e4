import { expect, test } from 'vitest';
import { rawJson, toJson } from '../src/proxy/rawJson.js';

test('toJson reuses arrival text and splices extra fields in valid JSON', () => {
  const cases = ['{"a":1}', '{ "a" : [1, {"b": "}"}] }\n', '{}', '  {  }  ', '{"x":"\\u00e9"}'];
  for (const text of cases) {
    const value = JSON.parse(text) as object;
    rawJson.set(value, text);
    expect(toJson(value)).toBe(text);
    expect(JSON.parse(toJson(value, { tandem: { ok: true } }))).toEqual({ ...value, tandem: { ok: true } });
  }
  expect(toJson({ fresh: 1 }, { t: 2 })).toBe('{"fresh":1,"t":2}');
});
