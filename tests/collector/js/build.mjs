// Bundles the npm build of @segment/analytics-next into one local script for the browser
// test page (build/analytics-next.js): nothing is fetched from a CDN when the page runs.
// esbuild inlines the SDK's lazily imported modules, so the page needs no other file.
import { build } from 'esbuild'

await build({
  entryPoints: ['browser/entry.js'],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2019',
  outfile: 'build/analytics-next.js',
  logLevel: 'warning',
})
