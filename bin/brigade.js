#!/usr/bin/env node
// The installed `brigade` command: runs the compiled CLI (`npm run build` produces dist/).
const { main } = await import('../dist/cli/main.js');
await main();
