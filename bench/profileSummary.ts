/** `node --import tsx bench/profileSummary.ts <file.cpuprofile> [top]`: self/inclusive time summary of a V8 CPU profile. */
import { resolve } from 'node:path';
import { formatProfile, summariseProfile } from './lib/cpuprofile.js';

const [file, top] = process.argv.slice(2);
if (!file) {
  console.error('usage: node --import tsx bench/profileSummary.ts <file.cpuprofile> [top]');
  process.exit(2);
}
console.log(formatProfile(summariseProfile(resolve(file), resolve(import.meta.dirname, '..'), top ? Number(top) : 30)));
