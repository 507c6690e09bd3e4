import { type Detector, scan, whole } from './types.js';

/**
 * local@domain.tld or local@[192.0.2.1]. Starts only where the local part's run starts (the lookbehind), so a megabyte without `@` costs
 * one bounded attempt per run, not per character. Labels cannot contain dots, so the domain never backtracks.
 */
const EMAIL =
  /(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])|\[(?:\d{1,3}\.){3}\d{1,3}\])/g;

export const email: Detector = {
  name: 'email',
  label: 'EMAIL',
  priority: 3,
  find(text) {
    if (!text.includes('@')) return [];
    return scan(EMAIL, text, whole, 'email', 'email');
  },
};
