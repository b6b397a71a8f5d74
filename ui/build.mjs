// Bundles src/ into the Python package (operator/headwater/lineage/ui_static/), which serves it at /ui/.
// One minified script, the page and the style sheet; no CDN, nothing fetched at run time.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "operator", "headwater", "lineage", "ui_static");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "linked",
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
for (const file of ["index.html", "app.css"]) copyFileSync(join(here, "src", file), join(out, file));
console.log(`built the web UI into ${out}`);
