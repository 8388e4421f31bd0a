// Uploads from the dashboard: the sample clip dropped on the drop zone goes up with a progress
// bar, becomes a job with the form's preset, is processed, and its output plays. A file that
// is not media is refused in the browser before a byte is sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitHydrated, waitForSample, createDatabase, newContext } from './support.mjs';

let database;
let server;
let browser;

before(async () => {
  database = createDatabase();
  server = await startServer({
    databaseUrl: database.url,
    env: { REELTIME_PROCESSOR: 'on', REELTIME_SAMPLE_CLIP: 'on' },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  database?.drop();
});

async function openDashboard() {
  const page = await (await newContext(browser, server)).newPage();
  await page.goto(server.url);
  await waitHydrated(page);
  // Every text the upload status shows, in order.
  await page.evaluate(() => {
    window.statusSeen = [];
    const status = document.querySelector('.drop-zone .upload-status');
    new MutationObserver(() => window.statusSeen.push(status.textContent)).observe(status, {
      childList: true, characterData: true, subtree: true,
    });
  });
  return page;
}

/** Drop a file made in the page by `make` (which returns a File) on the drop zone. */
async function drop(page, make) {
  const transfer = await page.evaluateHandle(async (source) => {
    const file = await (0, eval)(source)();
    const transfer = new DataTransfer();
    transfer.items.add(file);
    return transfer;
  }, make.toString());
  await page.dispatchEvent('.drop-zone', 'dragover', { dataTransfer: transfer });
  await page.dispatchEvent('.drop-zone', 'drop', { dataTransfer: transfer });
}

test('the sample clip dropped on the dashboard uploads with progress, becomes a job, and plays', async () => {
  await waitForSample(server);
  const page = await openDashboard();
  const zone = page.locator('.drop-zone');
  assert.equal(await zone.isVisible(), true, 'the drop zone shows once hydrated');

  await drop(page, async () => {
    const blob = await (await fetch('/samples/sample-1080p.mp4')).blob();
    return new File([blob], 'sample-1080p.mp4', { type: 'video/mp4' });
  });
  await page.waitForFunction(
    () => document.querySelector('.drop-zone .upload-status')?.textContent === 'Uploaded sample-1080p.mp4; the job is below.',
    null,
    { timeout: 60_000 },
  );
  const seen = await page.evaluate(() => window.statusSeen);
  assert.ok(seen.some((text) => /^Uploading sample-1080p\.mp4: \d+ %$/.test(text)), `status seen: ${seen.join(' | ')}`);

  // The job: its input is the upload, served by the app.
  const row = page.locator('tr.job').first();
  await row.waitFor({ timeout: 10_000 });
  const input = await row.locator('.job-input a').getAttribute('href');
  assert.match(input, /\/uploads\/[0-9a-f-]{36}\/sample-1080p\.mp4$/);
  const id = await row.getAttribute('data-job-id');
  await page.waitForFunction(
    (id) => document.querySelector(`tr[data-job-id="${id}"] .badge`)?.textContent === 'succeeded',
    id,
    { timeout: 180_000, polling: 100 },
  );

  // The output plays: 1280 wide (the form's default preset), and the clock moves.
  const video = page.locator(`tr[data-job-id="${id}"] video.preview`);
  await video.waitFor({ timeout: 5_000 });
  await page.waitForFunction(
    (id) => document.querySelector(`tr[data-job-id="${id}"] video.preview`)?.readyState >= 1,
    id,
    { timeout: 15_000 },
  );
  assert.equal(await video.evaluate((v) => v.videoWidth), 1280);
  await video.evaluate((v) => { v.muted = true; return v.play(); });
  await page.waitForFunction((id) => document.querySelector(`tr[data-job-id="${id}"] video.preview`).currentTime > 0.5, id, { timeout: 15_000 });
});

test('a file that is not media is refused in the browser, before anything is sent', async () => {
  const page = await openDashboard();
  const uploads = [];
  page.on('request', (request) => {
    if (request.url().includes('/api/uploads')) uploads.push(request.url());
  });
  const jobsBefore = await page.locator('tr.job').count();
  await drop(page, async () => new File(['eggs, milk'], 'notes.txt', { type: 'text/plain' }));
  const error = page.locator('.drop-zone .field-error');
  await page.waitForFunction(() => document.querySelector('.drop-zone .field-error')?.textContent !== '', null, { timeout: 5_000 });
  assert.equal(await error.textContent(), 'notes.txt is not a video, audio or image file (its type is text/plain).');
  assert.equal(await page.locator('.drop-zone').getAttribute('data-state'), 'failed');
  assert.deepEqual(uploads, []);
  assert.equal(await page.locator('tr.job').count(), jobsBefore);
});

test('a part whose connection drops is sent again, and the upload completes', async () => {
  await waitForSample(server);
  const page = await openDashboard();
  const attempts = [];
  await page.route('**/api/uploads/*/parts/*', async (route) => {
    attempts.push(route.request().url());
    if (attempts.length === 1) await route.abort('connectionreset');
    else await route.continue();
  });
  await drop(page, async () => {
    const blob = await (await fetch('/samples/sample-1080p.mp4')).blob();
    return new File([blob], 'again.mp4', { type: 'video/mp4' });
  });
  await page.waitForFunction(
    () => document.querySelector('.drop-zone .upload-status')?.textContent === 'Uploaded again.mp4; the job is below.',
    null,
    { timeout: 60_000 },
  );
  assert.equal(attempts.length, 2, `part requests: ${attempts.join(', ')}`);
  assert.equal(attempts[0], attempts[1], 'the same part, sent again');
  assert.equal(await page.locator('.drop-zone .field-error').textContent(), '');
});
