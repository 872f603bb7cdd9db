// Builds the client into dist/: one hashed JS bundle and one CSS file (minified), an
// index.html naming them, and gzip/brotli copies the server hands to browsers that accept
// them. Prints the compressed size of the first load (JS + CSS + HTML).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, gzipSync, constants } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const result = await esbuild.build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  write: false,
  outdir: 'out',
  legalComments: 'none',
  logLevel: 'warning',
});
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });

const files = {};
for (const out of result.outputFiles) {
  const ext = out.path.endsWith('.css') ? 'css' : 'js';
  const hash = createHash('sha256').update(out.contents).digest('hex').slice(0, 12);
  files[ext] = `app.${hash}.${ext}`;
  writeFileSync(join(dist, 'assets', files[ext]), out.contents);
}
const html = readFileSync(join(here, 'index.html'), 'utf8').replace('%JS%', files.js).replace('%CSS%', files.css);
writeFileSync(join(dist, 'index.html'), html);

let gz = 0;
let br = 0;
let raw = 0;
for (const path of [join(dist, 'index.html'), join(dist, 'assets', files.js), join(dist, 'assets', files.css)]) {
  const data = readFileSync(path);
  const g = gzipSync(data, { level: 9 });
  const b = brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
  writeFileSync(`${path}.gz`, g);
  writeFileSync(`${path}.br`, b);
  raw += data.length;
  gz += g.length;
  br += b.length;
}
writeFileSync(join(dist, 'size.json'), `${JSON.stringify({ raw_bytes: raw, gzip_bytes: gz, brotli_bytes: br })}\n`);
console.log(`web client built: first load ${raw} bytes, ${gz} gzip, ${br} brotli`);
