'use strict';
// Submits N external jobs with the Node client (clients/node), as the agreed API has it:
//   new Client({addrs, token}).submit({queue, payload}) -> id
// Usage: node node_submit.js <clients/node dir> <queue> <count>
// Env: RAFTLINE_ADDRS (comma-separated), RAFTLINE_TOKEN. Prints one JSON line at the end:
//   {"ids": [...]}; progress lines "submitted N" go to stderr.
const path = require('node:path');

function loadClient(dir) {
  try {
    return require(path.resolve(dir));
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
    return require(path.resolve(dir, 'lib', 'client.js'));
  }
}

async function main() {
  const [dir, queue, countText] = process.argv.slice(2);
  const count = Number(countText);
  const { Client } = loadClient(dir);
  const addrs = process.env.RAFTLINE_ADDRS.split(',');
  const client = new Client({ addrs, token: process.env.RAFTLINE_TOKEN });
  const ids = new Array(count);
  let next = 0;
  let done = 0;
  // A few submits in flight at once, each with its own index and payload.
  async function lane() {
    while (next < count) {
      const i = next++;
      ids[i] = String(await client.submit({ queue, payload: `job-${i}` }));
      done++;
      if (done % 100 === 0) process.stderr.write(`submitted ${done}\n`);
    }
  }
  await Promise.all(Array.from({ length: 4 }, lane));
  if (typeof client.close === 'function') client.close();
  process.stdout.write(JSON.stringify({ ids }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`node submitter failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
