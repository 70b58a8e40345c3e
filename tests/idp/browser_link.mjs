// Drives a real headless Chromium through jitbot's linking flow as a person
// would: open the link from Slack, press "Sign in", log in and consent at the
// identity provider, and read the page jitbot shows at the end.
//
// Usage: node browser_link.mjs LINK_URL LOGIN [SCREENSHOT.png]
// Prints {"url": ..., "text": ...} of the final page as JSON.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import puppeteer from 'puppeteer-core';

const [url, login, screenshot] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'jitbot-chromium-'));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    `--user-data-dir=${profile}`,
  ],
});
try {
  const page = await browser.newPage();
  // Each step waits for what the next page shows, polling: a redirect
  // chain can replace the page (and its JavaScript context) at any moment.
  const until = async (what, probe) => {
    const deadline = Date.now() + 30000;
    for (;;) {
      try {
        const value = await page.evaluate(probe);
        if (value) return value;
      } catch (e) {
        // The page navigated while we looked; look again.
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await page.goto(url, { waitUntil: 'load' });
  await page.click('#continue');
  await until('the login form', () => !!document.querySelector('input[name=login]'));
  await page.type('input[name=login]', login);
  await page.type('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  const next = await until('the consent form or the result', () => {
    if (document.querySelector('input[name=prompt][value=consent]')) return 'consent';
    if (location.pathname.startsWith('/oidc/callback') && document.querySelector('h1')) return 'done';
    return null;
  });
  if (next === 'consent') {
    await page.click('button[type=submit]');
    await until('the result', () => location.pathname.startsWith('/oidc/callback') && !!document.querySelector('h1'));
  }
  const text = await page.evaluate(() => document.body.innerText);
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ url: page.url(), text }));
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
