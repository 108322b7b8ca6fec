/**
 * Benchmark entry point: `npm run bench -- <name> [--quick]`. Each benchmark prints progress on
 * stderr and one JSON object as the last line of stdout (see ../shared/BENCH.md).
 */
const benches: Record<string, () => Promise<{ run: (quick: boolean) => Promise<object> }>> = {
  fairness: () => import('./fairness.ts'),
  gateway: () => import('./gateway.ts'),
  isolation: () => import('./isolation.ts'),
  runs: () => import('./runs.ts'),
  streams: () => import('./streams.ts'),
};

const [name, ...flags] = process.argv.slice(2);
const load = name === undefined ? undefined : benches[name];
if (load === undefined) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(benches).join('|')}> [--quick]\n`);
  process.exit(2);
}
const result = await (await load()).run(flags.includes('--quick'));
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
