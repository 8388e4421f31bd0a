// The Stats page: drawn on the server with its SVG charts, and live: a job submitted elsewhere
// shows up in the figures without a reload (re-read after the feed's change, throttled).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitHydrated, newContext, createJob } from './support.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the Stats page draws its charts and follows new jobs live', async () => {
  const context = await newContext(browser, server);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${server.url}/stats`);
  await waitHydrated(page);
  assert.equal(await page.locator('figure.chart svg').count(), 2, 'two charts, hour and day');
  assert.match(await page.textContent('.figures'), /Failure rate/);

  const bars = async () =>
    page.$$eval('figure.chart:first-of-type rect', (rects) =>
      rects.reduce((sum, r) => sum + Number(r.getAttribute('height')), 0));
  const before = await bars();
  await createJob(server, `https://example.com/stats-${Date.now()}.mp4`);
  // Within the throttle (2 s) and a read: the last hour's chart grows.
  await page.waitForFunction(
    (previous) => {
      const rects = document.querySelectorAll('figure.chart:first-of-type rect');
      let sum = 0;
      rects.forEach((r) => { sum += Number(r.getAttribute('height')); });
      return sum !== previous;
    },
    before,
    { timeout: 10_000 },
  );
  assert.notEqual(await bars(), before);
  assert.deepEqual(errors, []);
  await context.close();
});
