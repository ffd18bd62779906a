// Bundle sizes after the build, gzipped, with the budget: the console (everything index.html
// loads up front, GraphiQL excluded) stays ≤ 250 kB gzipped. Fails the build past it.
import { readFileSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join } from "node:path";

const out = "../src/meterflow/http/console_static";
const BUDGET = 250 * 1024;
const gz = (path) => gzipSync(readFileSync(path), { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} kB`;

// What a page loads at start: its own <script>/<link> tags and their static imports.
function eager(page) {
  const html = readFileSync(join(out, page), "utf8");
  const seen = new Set();
  const queue = [...html.matchAll(/(?:src|href)="\/console\/(assets\/[^"]+)"/g)].map((m) => m[1]);
  while (queue.length) {
    const name = queue.pop();
    if (seen.has(name)) continue;
    seen.add(name);
    if (!name.endsWith(".js")) continue;
    const code = readFileSync(join(out, name), "utf8");
    for (const m of code.matchAll(/(?:^|[;\s}])import\s*(?:[\w${},*\s]+from\s*)?"\.\/([^"]+)"/g)) {
      queue.push(`assets/${m[1]}`);
    }
  }
  return [...seen];
}

const sizes = {};
for (const page of ["index.html", "portal.html", "ide.html"]) {
  sizes[page] = eager(page).reduce((sum, name) => sum + gz(join(out, name)), gz(join(out, page)));
}
const all = readdirSync(join(out, "assets")).reduce((s, n) => s + gz(join(out, "assets", n)), 0);
console.log(`console (index.html, eager):  ${kb(sizes["index.html"])} gzipped (budget ${kb(BUDGET)})`);
console.log(`portal (portal.html, eager):  ${kb(sizes["portal.html"])} gzipped`);
console.log(`GraphiQL page (ide.html):     ${kb(sizes["ide.html"])} gzipped`);
console.log(`every asset, GraphiQL incl.:  ${kb(all)} gzipped`);
if (sizes["index.html"] > BUDGET) {
  console.error(`the console is over its budget: ${kb(sizes["index.html"])} > ${kb(BUDGET)}`);
  process.exit(1);
}
