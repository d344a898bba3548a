// Runs every scenario in scenarios/ against a running hub and prints one
// line per scenario and a final "N passed, N failed" line. The scenarios
// use the official Azure IoT SDKs exactly as an application would; the
// hub is reached through IOTHUB_CONNECTION_STRING alone (and the CA in
// NODE_EXTRA_CA_CERTS), so they run unchanged against Azure IoT Hub. A
// scenario that needs something the hub at hand lacks returns why, and is
// reported as skipped.
'use strict';
const fs = require('fs');
const path = require('path');

const only = process.argv[2];
const dir = path.join(__dirname, 'scenarios');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.js')).sort();

async function main() {
  if (!process.env.IOTHUB_CONNECTION_STRING) {
    console.error('IOTHUB_CONNECTION_STRING is not set');
    process.exit(2);
  }
  let passed = 0;
  let failed = 0;
  for (const f of files) {
    const scenarios = require(path.join(dir, f));
    for (const [name, fn] of Object.entries(scenarios)) {
      const full = `${path.basename(f, '.js')}/${name}`;
      if (only && !full.includes(only)) continue;
      const start = Date.now();
      try {
        const skip = await withTimeout(fn(), 90000, full);
        if (typeof skip === 'string') {
          console.log(`SKIP ${full}: ${skip}`);
          continue;
        }
        passed++;
        console.log(`PASS ${full} (${Date.now() - start} ms)`);
      } catch (err) {
        failed++;
        console.log(`FAIL ${full} (${Date.now() - start} ms): ${err && err.stack ? err.stack.split('\n').slice(0, 3).join(' | ') : err}`);
      }
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

function withTimeout(p, ms, name) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${name} timed out after ${ms} ms`)), ms); }),
  ]);
}

main();
