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
  await page.goto(url, { waitUntil: 'load' });
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#continue')]);
  await page.type('input[name=login]', login);
  await page.type('input[name=password]', 'any password');
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type=submit]')]);
  if (await page.$('input[name=prompt][value=consent]')) {
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type=submit]')]);
  }
  const text = await page.evaluate(() => document.body.innerText);
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ url: page.url(), text }));
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
