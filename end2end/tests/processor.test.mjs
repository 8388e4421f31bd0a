// The whole pipeline with no Ittybit account: the sample clip, submitted from the empty
// dashboard, runs through the built-in processor (real ffmpeg) while two tabs watch.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitHydrated, waitForSample, createDatabase, newContext, api } from './support.mjs';

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

/** A tab on the dashboard that records every progress value each job row shows. */
async function openDashboard() {
  const page = await (await newContext(browser, server)).newPage();
  await page.goto(server.url);
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 10_000 });
  await page.evaluate(() => {
    window.progressSeen = {};
    setInterval(() => {
      for (const row of document.querySelectorAll('tr.job')) {
        const bar = row.querySelector('progress.job-progress');
        if (bar && !bar.hidden) (window.progressSeen[row.dataset.jobId] ??= []).push(Number(bar.value));
      }
    }, 50);
  });
  return page;
}

test('the sample clip, submitted in two tabs, goes queued → processing → succeeded in both, with a playable 1280-wide MP4', async () => {
  await waitForSample(server);
  const a = await openDashboard();
  const b = await openDashboard();

  // Tab A: the empty dashboard offers the sample clip; one click submits it.
  const sample = a.getByRole('button', { name: 'Try a sample clip' });
  await sample.waitFor({ timeout: 5_000 });
  await sample.click();
  const first = a.locator('tr.job');
  await first.waitFor({ timeout: 10_000 });
  const sampleUrl = await first.locator('.job-input a').getAttribute('href');
  assert.match(sampleUrl, /\/samples\/sample-1080p\.mp4$/);

  // Tab B: the job appeared there live; submit the clip again through the form.
  await b.locator(`tr[data-job-id="${await first.getAttribute('data-job-id')}"]`).waitFor({ timeout: 10_000 });
  await b.fill('#input_url', sampleUrl);
  await b.click('button[type="submit"]:has-text("Process")');
  await b.locator('tr.job').nth(1).waitFor({ timeout: 10_000 });
  const ids = await b.locator('tr.job').evaluateAll((rows) => rows.map((r) => r.dataset.jobId));
  assert.equal(ids.length, 2);

  for (const page of [a, b]) {
    for (const id of ids) {
      await page.waitForFunction(
        (id) => document.querySelector(`tr[data-job-id="${id}"] .badge`)?.textContent === 'succeeded',
        id,
        { timeout: 180_000, polling: 100 },
      );
    }
  }

  for (const page of [a, b]) {
    const seenByJob = await page.evaluate(() => window.progressSeen);
    for (const id of ids) {
      // The bar moved: several values between 0 and 100 were on screen while processing.
      const seen = seenByJob[id] ?? [];
      const moving = new Set(seen.filter((v) => v > 0 && v < 100));
      assert.ok(moving.size >= 2, `job ${id}: progress values seen: ${[...new Set(seen)].join(', ')}`);
      assert.ok(seen.every((v, i) => i === 0 || v >= seen[i - 1]), 'progress never went back');

      // The output plays: a <video> that loads a 1280-wide picture.
      const video = page.locator(`tr[data-job-id="${id}"] video.preview`);
      await video.waitFor({ timeout: 5_000 });
      await page.waitForFunction(
        (id) => document.querySelector(`tr[data-job-id="${id}"] video.preview`)?.readyState >= 1,
        id,
        { timeout: 15_000 },
      );
      assert.equal(await video.evaluate((v) => v.videoWidth), 1280);
      assert.equal(await video.evaluate((v) => v.videoHeight), 720);
      assert.ok(Math.abs((await video.evaluate((v) => v.duration)) - 10) < 0.2);

      // It plays: the clock moves. Then a seek lands where asked and plays on from there.
      await video.evaluate((v) => { v.muted = true; return v.play(); });
      await page.waitForFunction((id) => document.querySelector(`tr[data-job-id="${id}"] video.preview`).currentTime > 0.5, id, { timeout: 15_000 });
      assert.equal(await video.evaluate((v) => v.paused), false);
      const landed = await video.evaluate((v) => new Promise((resolve) => {
        v.addEventListener('seeked', () => resolve(v.currentTime), { once: true });
        v.currentTime = 7;
      }));
      assert.ok(Math.abs(landed - 7) < 0.5, `seeked to ${landed}`);
      await page.waitForFunction((id) => document.querySelector(`tr[data-job-id="${id}"] video.preview`).currentTime > 7.3, id, { timeout: 15_000 });
      await video.evaluate((v) => v.pause());

      // Download link, duration and size beside it.
      const meta = page.locator(`tr[data-job-id="${id}"] .output-meta`);
      assert.equal(await meta.locator('a.output-link').getAttribute('href'), await video.getAttribute('src'));
      assert.match(await meta.locator('.output-facts').textContent(), /^1280×720 · 0:10 · [\d.]+ (kB|MB)$/);
    }
  }
});
