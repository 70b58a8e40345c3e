// Opens jitbot's access report page in a real headless Chromium at a
// laptop's and a phone's width, with a bearer token, and says what it
// shows: each chart's size on screen and the smallest font in it, whether
// the page scrolls sideways, and a full-page screenshot per width.
//
// Usage: node report_page.mjs URL TOKEN OUT_DIR
// Prints [{"width": ..., "status": ..., "charts": [...], ...}] as JSON.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import puppeteer from 'puppeteer-core';

const [url, token, outDir] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'jitbot-chromium-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    `--user-data-dir=${profile}`,
  ],
});
const results = [];
try {
  for (const width of [1280, 390]) {
    const page = await browser.newPage();
    await page.setViewport({ width, height: 900 });
    await page.setJavaScriptEnabled(false);
    await page.setExtraHTTPHeaders({ Authorization: `Bearer ${token}` });
    const response = await page.goto(url, { waitUntil: 'load' });
    const shown = await page.evaluate(() => {
      const charts = [...document.querySelectorAll('svg')].map((svg) => {
        const box = svg.getBoundingClientRect();
        const scale = box.width / svg.viewBox.baseVal.width;
        const fonts = [...svg.querySelectorAll('text')].map(
          (t) => parseFloat(getComputedStyle(t).fontSize) * scale,
        );
        return {
          id: svg.id,
          width: box.width,
          height: box.height,
          marks: svg.querySelectorAll('rect').length,
          smallest_font_px: fonts.length ? Math.min(...fonts) : null,
        };
      });
      return {
        charts,
        sideways: document.documentElement.scrollWidth > window.innerWidth,
        heading: document.querySelector('h1')?.textContent ?? '',
        form: !!document.querySelector('form[action="/report"] select[name=role]'),
      };
    });
    const shot = path.join(outDir, `report-${width}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    results.push({ width, status: response.status(), screenshot: shot, ...shown });
    await page.close();
  }
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(results));
