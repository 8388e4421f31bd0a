// Operator controls (issue 12) in a real browser: cancel a running job in one tab and see it
// in another, retry it to success, a filtered view that a failing job enters live, a job's
// page that follows its job, and a phone-sized screen where everything fits and every action
// can be reached.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { startServer, launchBrowser, waitHydrated, waitForSample, createDatabase, newContext, api, createJob, sql } from './support.mjs';

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

async function openPage(path = '/', options = {}) {
  const page = await (await newContext(browser, server, options)).newPage();
  await page.goto(`${server.url}${path}`);
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 10_000 });
  return page;
}

/** The ffmpeg processes working in this server's data directory (their working directory is
 * the attempt's, inside it). */
function ffmpegsOfThisServer() {
  let pids;
  try {
    pids = execFileSync('pgrep', ['-x', 'ffmpeg'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return pids.filter((pid) => {
    try {
      return readlinkSync(`/proc/${pid}/cwd`).startsWith(server.dataDir);
    } catch {
      return false; // gone meanwhile
    }
  });
}

test('a running job cancelled in tab A is cancelled in tab B within a second, its ffmpeg gone; retried, it succeeds', async () => {
  await waitForSample(server);
  const a = await openPage();
  const b = await openPage();
  await a.getByRole('button', { name: 'Try a sample clip' }).click();
  const rowA = a.locator('tr.job').first();
  await rowA.waitFor({ timeout: 10_000 });
  const id = await rowA.getAttribute('data-job-id');
  const rowB = b.locator(`tr.job[data-job-id="${id}"]`);
  await b.locator(`tr.job[data-job-id="${id}"][data-status="processing"]`).waitFor({ timeout: 60_000 });
  // "processing" is reported as the worker takes the job; ffmpeg starts after the download
  // and the probe.
  const started = Date.now() + 60_000;
  while (ffmpegsOfThisServer().length === 0 && Date.now() < started) await new Promise((r) => setTimeout(r, 100));
  assert.ok(ffmpegsOfThisServer().length > 0, 'ffmpeg runs for the job');

  await Promise.all([
    a.waitForNavigation(),
    a.locator(`tr.job[data-job-id="${id}"] button[data-action="cancel"]`).click(),
  ]);
  const cancelledAt = Date.now();
  await b.locator(`tr.job[data-job-id="${id}"][data-status="cancelled"]`).waitFor({ timeout: 1_000 });
  console.log(`tab B showed the cancel ${Date.now() - cancelledAt} ms after tab A's answer`);
  assert.match(await a.textContent('.flash-ok'), /The job is cancelled\./);
  const deadline = Date.now() + 2_000;
  while (ffmpegsOfThisServer().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(ffmpegsOfThisServer(), [], 'no ffmpeg left');
  assert.equal(await rowB.locator('button[data-action="retry"]').count(), 1, 'tab B offers a retry now');

  await waitHydrated(a);
  await Promise.all([
    a.waitForNavigation(),
    a.locator(`tr.job[data-job-id="${id}"] button[data-action="retry"]`).click(),
  ]);
  assert.match(await a.textContent('.flash-ok'), /Retried as job /);
  const retry = b.locator('tr.job').first();
  await b.locator('tr.job[data-status="succeeded"]').first().waitFor({ timeout: 180_000 });
  const retryId = await retry.getAttribute('data-job-id');
  assert.notEqual(retryId, id);
  const file = await (await api(server, `/api/jobs/${retryId}`)).json();
  assert.equal(file.retry_of, id);
  assert.equal(file.status, 'succeeded');
});

test('a filtered view takes in a job the moment it fails', async () => {
  const page = await openPage('/?status=failed');
  const job = await createJob(server, `https://example.com/will-fail-${Date.now()}.mp4`);
  // The built-in processor fetches it; make it fail the way a report would, by SQL.
  sql(database.url, `update jobs set status = 'failed', error = 'the input URL was not found (HTTP 404)' where id = '${job.id}'`);
  const row = page.locator(`tr.job[data-job-id="${job.id}"]`);
  await row.waitFor({ timeout: 10_000 });
  await row.locator('.job-error', { hasText: 'HTTP 404' }).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('tr.job[data-status="pending"]').count(), 0, 'nothing else enters');
  assert.equal(await page.locator('.status-tab[aria-current="page"]').getAttribute('data-status'), 'failed');
});

test("a job's page follows the job and tells its story", async () => {
  const job = await createJob(server, `https://example.com/story-${Date.now()}.mp4`);
  sql(database.url, `update jobs set status = 'failed', error = 'x' where id = '${job.id}'`);
  const page = await openPage(`/jobs/${job.id}`);
  assert.match(await page.textContent('.story'), /Created by admin@example\.com/);
  const response = await api(server, `/api/jobs/${job.id}/retry`, { method: 'POST' });
  assert.equal(response.status, 201);
  const { job: retry } = await response.json();
  await page.locator(`a.retried-as[href="/jobs/${retry.id}"]`).waitFor({ timeout: 10_000 });
  await page.locator('.story', { hasText: `Retried by admin@example.com as ${retry.id}` }).waitFor({ timeout: 10_000 });
});

test('on a 390 px wide phone nothing is wider than the screen and every action can be reached', async () => {
  await createJob(server, `https://example.com/${'a-very-long-path-segment/'.repeat(6)}clip-${Date.now()}.mp4`);
  const page = await openPage('/', { viewport: { width: 390, height: 844 }, isMobile: true });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `the page is ${width} px wide`);
  const buttons = page.locator('tr.job button[data-action], .submit-form button, .bulk-bar button, .filters button');
  const count = await buttons.count();
  assert.ok(count > 3, `${count} controls`);
  for (let i = 0; i < count; i++) {
    const button = buttons.nth(i);
    await button.scrollIntoViewIfNeeded();
    const box = await button.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `control ${i} fits: ${JSON.stringify(box)}`);
  }
  const select = await page.locator('#preset').boundingBox();
  assert.ok(select.x + select.width <= 390, 'the preset select stays on the card');
});
